"""The OpenAPI document as the API behaves: every error status with the envelope it sends.

FastAPI documents validation errors as ``{"detail": [...]}`` (``HTTPValidationError``)
while the API sends ``{"code": 2, "errors": [...]}``, and documents no 401/403/404/503 at
all. Here, once per app, every operation gets:

- 422 (validation) and 503 (database unreachable, with ``Retry-After``);
- 401 and 403 when it wants a bearer token (it has ``security``);
- 404 when it names a resource (path, query or body: no such resource, or not yours);
- 400 when it takes a body (one that is not JSON at all);
- the statuses its route declares (``responses=error_responses(409, 402)``);
- ``default``: any other error, in the same envelope (a 500 is a bug, still enveloped);

each with the :class:`~kickstand.cloud.api.errors.ErrorBody` schema. The code table is in
``info.x-error-codes`` and in the description (and served at ``GET /v1/errors``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from kickstand.cloud.api.errors import CODES, ErrorBody

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}

DESCRIPTIONS: dict[int, str] = {
    400: "The request cannot be read (a body that is not JSON) or a refused token (code 2, 31)",
    401: "Not authenticated: missing, invalid or expired token (codes 3, 4, 5, 18)",
    402: "Payment needed: the wallet cannot pay (code 19)",
    403: "Not allowed: role, network or account state (code 6, 7)",
    404: "No such resource, or not one of yours (code 10)",
    409: "Conflicts with the current state (codes 11, 12, 15, 17)",
    422: "Invalid request: `errors[]` names each field (code 2)",
    429: "Too many attempts: retry after `Retry-After` (code 30)",
    502: "An upstream store refused the query (code 21)",
    503: "Unavailable: database or telemetry unreachable, device offline; see `Retry-After`",
    504: "The device did not answer in time; it may still act (code 14)",
}

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route that can answer these error statuses itself."""
    return {s: {"model": ErrorBody, "description": DESCRIPTIONS.get(s, "Error")} for s in statuses}


def code_table() -> str:
    rows = "\n".join(
        f"| {int(code)} | `{code.name}` | {', '.join(map(str, statuses))} | {text} |"
        for code, (statuses, text) in sorted(CODES.items())
    )
    return "| code | name | HTTP | meaning |\n| --- | --- | --- | --- |\n" + rows


def _error_response(description: str, status: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": ERROR_REF}},
    }
    if status in ("429", "503"):
        response["headers"] = _RETRY_AFTER
    return response


def _document_errors(path: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    wanted = {422, 503}
    if operation.get("security"):
        wanted |= {401, 403}
    if "{" in path or operation.get("parameters") or "requestBody" in operation:
        wanted.add(404)  # a resource it names (path, query or body) may not exist
    if "requestBody" in operation:
        wanted.add(400)  # a body that is not JSON at all
    for number in sorted(wanted):
        responses.setdefault(str(number), {"description": DESCRIPTIONS[number]})
    for key, response in list(responses.items()):
        if key.isdigit() and int(key) >= 400:
            description = response.get("description") or DESCRIPTIONS.get(int(key), "Error")
            if key == "422":
                description = DESCRIPTIONS[422]
            responses[key] = _error_response(description, key)
    responses["default"] = _error_response(
        "Any other error, in the same envelope (500: a bug on our side, logged)", "default"
    )


def build(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=f"{app.description}\n\n## Error codes\n\n{code_table()}",
        routes=app.routes,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorBody"] = error_schema
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            _document_errors(path, operation)
    # FastAPI's own validation schemas describe a body the API never sends.
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    schema["info"]["x-error-codes"] = [
        {"code": int(code), "name": code.name, "http_status": list(statuses), "meaning": text}
        for code, (statuses, text) in sorted(CODES.items())
    ]
    return schema


def install(app: FastAPI) -> None:
    """Replace ``app.openapi`` with :func:`build` (computed once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def rendercode_table_doc(path: str = "docs/errors.md") -> bool:
    """Rewrite the code table of ``docs/errors.md``; True when it changed."""
    from pathlib import Path

    doc = Path(path)
    text = doc.read_text()
    start = text.index("| code | name | HTTP | meaning |")
    end = text.index("\n\n", start)
    new = text[:start] + code_table() + text[end:]
    doc.write_text(new)
    return new != text


if __name__ == "__main__":
    print("docs/errors.md", "rewritten" if rendercode_table_doc() else "up to date")
