"""OpenAPI says what is sent: every error status with the envelope (never FastAPI's
``{"detail": [...]}``), the code table, and Swagger UI / ReDoc without any CDN."""

from __future__ import annotations

import json
import re
from typing import Any

from kickstand.cloud.api.errors import ErrorCode
from tests.cloud.api.support import Api

ERROR_REF = "#/components/schemas/ErrorBody"


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, item in spec["paths"].items() for m, op in item.items()]


async def test_every_operation_documents_its_errors_with_the_envelope(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    assert "HTTPValidationError" not in json.dumps(spec)
    assert spec["components"]["schemas"]["ErrorBody"]["required"] == ["code", "message"]
    ops = operations(spec)
    assert len(ops) > 60
    for method, path, op in ops:
        responses = op["responses"]
        must = {"422", "503", "default"}
        if op.get("security"):
            must |= {"401", "403"}
        if "{" in path:
            must.add("404")
        assert must <= set(responses), (method, path, sorted(responses))
        for status, response in responses.items():
            if status == "default" or int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, (method, path, status)
        assert "Retry-After" in responses["503"]["headers"]
    codes = {row["code"] for row in spec["info"]["x-error-codes"]}
    assert codes == {int(c) for c in ErrorCode}
    assert "| 22 | `UNAVAILABLE` | 503 |" in spec["info"]["description"]


async def test_a_validation_error_matches_its_documented_schema(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    required = set(spec["components"]["schemas"]["ErrorBody"]["required"])
    r = await api.client.get("/v1/networks", params={"lat": "north"})
    assert r.status_code == 422 and required <= set(r.json())
    assert {"field", "message"} <= set(r.json()["errors"][0])


async def test_docs_and_redoc_load_nothing_from_outside(api: Api) -> None:
    for page in ("/docs", "/redoc"):
        r = await api.client.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        urls = re.findall(r"""(?:src|href|url)\s*[=:(]\s*['"]?([^'")\s>]+)""", r.text)
        assert urls, page
        assert not re.search(r"https?://|//cdn|googleapis", r.text), page
        for url in urls:
            if url.startswith("/docs-assets/"):
                asset = await api.client.get(url)
                assert asset.status_code == 200 and len(asset.content) > 1000, url
    r = await api.client.get("/docs")
    assert "/docs-assets/swagger-ui-bundle.js" in r.text and "/openapi.json" in r.text
    assert "/docs-assets/redoc.standalone.js" in (await api.client.get("/redoc")).text


def test_docs_errors_md_has_the_currentcode_table() -> None:
    from pathlib import Path

    from kickstand.cloud.api.openapi import code_table

    doc = Path(__file__).parents[3] / "docs" / "errors.md"
    assert code_table() in doc.read_text(), "run: python -m kickstand.cloud.api.openapi"


#: The schema of a success that is a file, not JSON.
BINARY = {"type": "string", "format": "binary"}


async def test_every_operation_documents_a_typed_success_body(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    untyped = []
    for method, path, op in operations(spec):
        successes = {s: r for s, r in op["responses"].items() if s.startswith("2")}
        assert successes, (method, path)
        for status, response in successes.items():
            content = response.get("content", {})
            if "application/json" not in content and any(
                media.get("schema") == BINARY for media in content.values()
            ):
                continue  # a file (a QR code PNG, a PDF), declared with its media type
            schema = content.get("application/json", {}).get("schema", {})
            if "$ref" not in schema:
                untyped.append(f"{method} {path} {status}: {json.dumps(schema)[:60]}")
    assert not untyped, "\n".join(untyped)


#: Keys that are not an integer id: a device command's issue time in ms (a bigint column).
BIGINT_KEYS = {("GET", "/v1/dashboard/devices/{device_id}/commands", "last_primary_key"): 2**63 - 1}


async def test_every_id_parameter_is_bounded_to_the_integer_range(api: Api) -> None:
    """Path, query and body ids are ``ids.Id``: documented 1 … 2**31 - 1 (else the
    database's overflow is the answer)."""
    spec = (await api.client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]

    def integer_bounds(schema: dict[str, Any]) -> list[dict[str, Any]]:
        """The integer schemas a value (or each item of a list) may take."""
        options = [o.get("items", o) for o in schema.get("anyOf", [schema])]
        return [o for o in options if o.get("type") == "integer"]

    unbounded = []
    for method, path, op in operations(spec):
        for param in op.get("parameters", []):
            if param["name"].endswith(("_id", "_key")) or param["name"] == "id":
                bound = BIGINT_KEYS.get((method, path, param["name"]), 2**31 - 1)
                for option in integer_bounds(param["schema"]):
                    if option.get("maximum") != bound:
                        unbounded.append(f"{method} {path} {param['name']}")

    def request_schemas(schema: dict[str, Any], seen: set[str]) -> None:
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str):
                name = value.rsplit("/", 1)[-1]
                if name not in seen:
                    seen.add(name)
                    request_schemas(schemas[name], seen)
            elif isinstance(value, dict):
                request_schemas(value, seen)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        request_schemas(item, seen)

    bodies: set[str] = set()
    for _method, _path, op in operations(spec):
        request_schemas(op.get("requestBody", {}), bodies)
    assert bodies
    for name in sorted(bodies):
        for field, prop in schemas[name].get("properties", {}).items():
            if field.endswith("_id") or field.endswith("_ids"):
                for option in integer_bounds(prop):
                    if option.get("maximum") != 2**31 - 1:
                        unbounded.append(f"{name}.{field}")
    assert not unbounded, unbounded
