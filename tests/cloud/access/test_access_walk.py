"""The access walk: every operator operation of the served OpenAPI, five callers.

Anonymous is refused (401), a rider (403), an operator of another network (403, or 404 for
an object it cannot see — never the other network's object), a read-only operator on every
operation that writes (403 ``read-only``); the operator of the network is not refused.
A route under ``/v1/dashboard`` without the one access check
(``kickstand.cloud.api.access.Operator``) fails ``test_every_operator_route_has_the_check``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from kickstand.cloud.api import create_app
from kickstand.cloud.api.access import Operator
from kickstand.cloud.config import Settings
from tests.cloud.access.conftest import JWT, Walk

OPERATOR_PREFIXES = ("/v1/dashboard",)
READS = {"get", "head"}
#: Public to any operator: the same answer whoever asks (no network's data in it).
UNSCOPED = {
    ("get", "/v1/dashboard/webhooks/topics"),
    ("get", "/v1/dashboard/fleet-alerts/types"),
    # Installation-wide catalogues (seed 002): permissions, roles.
    ("get", "/v1/dashboard/permissions"),
    ("get", "/v1/dashboard/roles"),
    # Vehicle QR codes of a given serial / prefix (stickers printed before registration).
    ("get", "/v1/dashboard/vehicles/qr-code"),
    ("get", "/v1/dashboard/vehicles/qr-code-sheet"),
    # Seed 002 "Get global user count": one number for the installation.
    ("get", "/v1/dashboard/users/global-count"),
}


#: Listings of the caller's own records (its requests), whatever the network.
OWN_RECORDS = {("get", "/v1/dashboard/access-logs")}
#: Inside the demo network's border (seed list of [lon, lat] points).
SQUARE = [[4.83, 45.75], [4.84, 45.75], [4.84, 45.76], [4.83, 45.76], [4.83, 45.75]]
#: Collections whose objects the fixture creates as network A's operator (id by path).
CREATED = (
    "/speed-zones",
    "/virtual-parkings",
    "/forbidden-zones",
    "/webhooks/endpoints",
    "/organizations",
)


def _operator_paths(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    spec = app.openapi()
    return [
        (method, path, op)
        for path, item in spec["paths"].items()
        if path.startswith(OPERATOR_PREFIXES)
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete", "head"}
    ]


def _has_operator_check(dependant: Dependant) -> bool:
    return any(
        isinstance(d.call, Operator) or _has_operator_check(d) for d in dependant.dependencies
    )


# ── requests built from the OpenAPI ───────────────────────────────────────────────────


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def _value(spec: dict[str, Any], schema: dict[str, Any], name: str, walk: Walk) -> Any:
    """A value the schema accepts, naming network A's objects where a field names one."""
    schema = _resolve(spec, schema)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if _resolve(spec, s).get("type") != "null"]
            return _value(spec, options[0], name, walk) if options else None
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if name == "shape":
        return SQUARE
    if name == "topics":
        return ["*"]
    if name == "max_speed":
        return 20
    if name in ("network_id", "networks", "network_ids"):
        return [walk.network_a] if kind == "array" else walk.network_a
    if kind == "integer":
        return walk.ids.get(name, max(1, int(schema.get("minimum", 1))))
    if kind == "number":
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    if kind == "array":
        item = _value(spec, schema.get("items", {}), name, walk)
        return [item] * int(schema.get("minItems", 0))
    if kind == "object":
        props = schema.get("properties", {})
        return {
            key: _value(spec, props[key], key, walk)
            for key in props
            # Optional network fields too: the request names network A wherever it can.
            if key in schema.get("required", []) or key in ("network_id", "network_ids")
        }
    fmt = schema.get("format")
    if fmt == "date-time":
        return (datetime.now(UTC) - timedelta(days=1)).isoformat()
    if fmt == "date":
        return (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    if name == "url":
        return "http://127.0.0.1:9/hook"  # development: internal targets allowed
    if name == "timezone":
        return "Europe/Paris"
    return "x" * max(8, int(schema.get("minLength", 1)))


async def _create_objects(walk: Walk) -> None:
    """One object of network A in each collection, made by its operator."""
    for method, path, op in _operator_paths(walk.app):
        collection = next((c for c in CREATED if path.endswith(c)), None)
        if method != "post" or collection is None:
            continue
        r = await walk.client.request(
            **_request(walk, method, path, op), headers=walk.headers["operator"]
        )
        assert r.status_code in (200, 201), f"{path}: {r.text}"
        data = r.json()["data"]
        walk.objects[collection] = data.get("id") or next(
            v
            for k, v in data.items()
            if k.endswith("_id") and k not in ("network_id", "cluster_id")
        )


def _request(walk: Walk, method: str, path: str, op: dict[str, Any]) -> dict[str, Any]:
    spec = walk.app.openapi()
    params: dict[str, Any] = {}
    url = path
    for param in op.get("parameters", []):
        value = _value(spec, param.get("schema", {}), param["name"], walk)
        if param["in"] == "path":
            # The object of network A in that collection, when the fixture made one.
            value = next(
                (i for c, i in walk.objects.items() if f"{c}/{{{param['name']}}}" in path),
                value,
            )
        if param["in"] == "path":
            url = url.replace("{" + param["name"] + "}", str(value))
        elif param["in"] == "query" and (param.get("required") or param["name"] in walk.ids):
            params[param["name"]] = ",".join(map(str, value)) if isinstance(value, list) else value
    request: dict[str, Any] = {"method": method.upper(), "url": url, "params": params}
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None:
        request["json"] = _value(spec, body["schema"], "", walk)
    return request


def _names_network(data: Any, network: int) -> bool:
    """Does an answer hold something of ``network`` (a ``network_id`` or a networks list)?"""
    if isinstance(data, list):
        return any(_names_network(d, network) for d in data)
    if not isinstance(data, dict):
        return False
    for key, value in data.items():
        if key == "network_id" and value == network:
            return True
        if key in ("networks", "network_ids") and isinstance(value, list) and network in value:
            return True
        if isinstance(value, dict | list) and _names_network(value, network):
            return True
    return False


# ── the walk ──────────────────────────────────────────────────────────────────────────


def test_every_operator_route_has_the_check() -> None:
    app = create_app(Settings(DATABASE_URL="sqlite+aiosqlite://", JWT_SECRET=JWT))
    # FastAPI 0.165 keeps included routers as they are: walk their effective routes.
    routes = [
        c
        for c in iter_route_contexts(app.routes)
        if isinstance(c.original_route, APIRoute) and (c.path or "").startswith(OPERATOR_PREFIXES)
    ]
    assert len(routes) >= 30
    missing = sorted(
        f"{sorted(c.methods or [])} {c.path}"
        for c in routes
        if not _has_operator_check(c.original_route.dependant)  # type: ignore[attr-defined]
    )
    assert missing == []


@pytest.mark.parametrize(
    "walk", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_the_walk(walk: Walk) -> None:
    await _create_objects(walk)
    operations = _operator_paths(walk.app)
    assert len(operations) >= 30
    answers: dict[tuple[str, str], dict[str, int]] = {}
    for method, path, op in operations:
        request = _request(walk, method, path, op)
        seen: dict[str, int] = {}
        for caller in ("anonymous", "rider", "other", "read-only"):
            r = await walk.client.request(**request, headers=walk.headers[caller])
            seen[caller] = r.status_code
            if caller == "other":
                # A file (a QR code) is not enveloped: only JSON answers are read.
                json_answer = r.headers.get("content-type", "").startswith("application/json")
                other_body = r.json() if json_answer else {}
            where = f"{method.upper()} {path} as {caller}: {r.status_code} {r.text[:200]}"
            if caller == "anonymous":
                assert r.status_code == 401, where
            elif caller == "rider":
                assert r.status_code == 403, where
                assert r.json()["reason"] == "not-an-operator", where
            elif caller == "read-only" and method not in READS:
                assert r.status_code == 403, where
                assert r.json()["reason"] == "read-only", where
            elif caller == "read-only":
                assert r.status_code not in (401, 403), where
        r = await walk.client.request(**request, headers=walk.headers["operator"])
        seen["operator"] = r.status_code
        assert r.status_code not in (401, 403), f"{method.upper()} {path}: {r.text[:300]}"
        answers[(method, path)] = seen
        other = seen["other"]
        where = f"{method.upper()} {path}: {seen}"
        if (method, path) in UNSCOPED:
            continue
        if other < 300:
            # Only a listing filtered to its own networks (dead letters, webhook endpoints,
            # units, a user's badges): nothing of network A in it.
            data = other_body.get("data")
            if (method, path) in OWN_RECORDS:
                assert {e["user_id"] for e in data} <= {walk.ids["other_id"]}, where
            else:
                assert not _names_network(data, walk.network_a), where
        else:
            # Refused, or not found for it; a 422 only where the request is invalid anyway.
            assert other in (403, 404) or (other == 422 and seen["operator"] == 422), where
    # The other-network check is real: most operations refuse it outright.
    # Proved on a real object: the operator is served (2xx), the other operator refused.
    proved = [k for k, s in answers.items() if s["operator"] < 300 and s["other"] in (403, 404)]
    assert len(proved) >= len(answers) // 2, answers
