"""Login, refresh rotation with reuse detection, logout, permissions, error envelopes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from kickstand.cloud.config import Settings
from kickstand.cloud.security import create_access_token
from tests.cloud.api.support import BOTH_DATABASES, Api


@BOTH_DATABASES
async def test_login_returns_tokens_and_seed_permissions(api: Api) -> None:
    r = await api.client.post(
        "/v1/auth/login",
        json={
            "email": "alice@example.com",
            "password": "alice-demo-1",
            "scope": "app",
            "device": {"id": "phone-1", "os": "Android"},
        },
    )
    assert r.status_code == 200
    body = r.json()
    assert body["code"] == 0
    data = body["data"]
    assert data["user_id"] == api.demo.user_ids["alice@example.com"]
    assert data["token"] and data["refresh_token"] and data["token"] != data["refresh_token"]
    perm = data["permissions"][0]
    assert set(perm) == {"perm_key", "write", "ou"}
    assert perm["ou"]["networks"] == [api.demo.network_id]
    check = await api.client.get(
        "/v1/auth/check", headers={"Authorization": f"Bearer {data['token']}"}
    )
    assert check.status_code == 200
    assert check.json()["data"]["permissions"] == data["permissions"]


async def test_wrong_password_and_unknown_email_look_the_same(api: Api) -> None:
    for email in ("alice@example.com", "nobody@example.com"):
        r = await api.client.post(
            "/v1/auth/login", json={"email": email, "password": "wrong-password"}
        )
        assert r.status_code == 401
        assert r.json()["code"] == 5
        assert r.json()["message"] == "wrong email or password"


async def test_validation_errors_name_the_field(api: Api) -> None:
    r = await api.client.post("/v1/auth/login", json={"email": "not-an-email", "password": "short"})
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == 2
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"email", "password"}
    assert "email" in body["message"] or "password" in body["message"]


@BOTH_DATABASES
async def test_refresh_rotates_and_reuse_is_refused(api: Api) -> None:
    login = (
        await api.client.post(
            "/v1/auth/login", json={"email": "bob@example.com", "password": "bob-demo-1"}
        )
    ).json()["data"]
    first = login["refresh_token"]
    r = await api.client.post("/v1/auth/refresh", headers={"Authorization": f"Bearer {first}"})
    assert r.status_code == 200, r.text
    second = r.json()["data"]["refresh_token"]
    assert second != first
    access = r.json()["data"]["access_token"]
    assert (
        await api.client.get("/v1/auth/check", headers={"Authorization": f"Bearer {access}"})
    ).status_code == 200
    # Reusing the first (rotated) token is refused and closes the whole login…
    reuse = await api.client.post("/v1/auth/refresh", headers={"Authorization": f"Bearer {first}"})
    assert reuse.status_code == 401 and reuse.json()["code"] == 18
    # …so the legitimate newest token stops working too.
    after = await api.client.post("/v1/auth/refresh", headers={"Authorization": f"Bearer {second}"})
    assert after.status_code == 401


async def test_logout_one_device_then_all(api: Api) -> None:
    async def login(device: str) -> dict[str, str]:
        r = await api.client.post(
            "/v1/auth/login",
            json={
                "email": "alice@example.com",
                "password": "alice-demo-1",
                "device": {"id": device},
            },
        )
        return r.json()["data"]

    phone, tablet = await login("phone"), await login("tablet")
    auth = {"Authorization": f"Bearer {phone['token']}"}
    r = await api.client.post(
        "/v1/auth/logout", json={"refresh_token": phone["refresh_token"]}, headers=auth
    )
    assert r.status_code == 200 and r.json() == {"code": 0}
    gone = await api.client.post(
        "/v1/auth/refresh", headers={"Authorization": f"Bearer {phone['refresh_token']}"}
    )
    assert gone.status_code == 401
    ok = await api.client.post(
        "/v1/auth/refresh", headers={"Authorization": f"Bearer {tablet['refresh_token']}"}
    )
    assert ok.status_code == 200
    tablet_refresh = ok.json()["data"]["refresh_token"]
    tablet_access = ok.json()["data"]["access_token"]

    r = await api.client.post(
        "/v1/auth/logout-all", headers={"Authorization": f"Bearer {tablet_access}"}
    )
    assert r.status_code == 200
    # Access tokens already handed out and refresh tokens of every device are dead.
    denied = await api.client.get(
        "/v1/auth/check", headers={"Authorization": f"Bearer {tablet_access}"}
    )
    assert denied.status_code == 401 and denied.json()["code"] == 3
    assert (
        await api.client.post(
            "/v1/auth/refresh", headers={"Authorization": f"Bearer {tablet_refresh}"}
        )
    ).status_code == 401


async def test_missing_or_bad_token(api: Api) -> None:
    r = await api.client.get("/v1/trips")
    assert r.status_code == 401 and r.json()["code"] == 3
    assert r.headers["www-authenticate"] == "Bearer"
    r = await api.client.get("/v1/trips", headers={"Authorization": "Bearer not.a.jwt"})
    assert r.status_code == 401 and r.json()["code"] == 3


async def test_unknown_route_and_openapi(api: Api) -> None:
    r = await api.client.get("/v1/nope")
    assert r.status_code == 404 and r.json()["code"] == 10
    spec = (await api.client.get("/openapi.json")).json()
    assert "/v1/rents" in spec["paths"] and "/v1/trips/{trip_id}" in spec["paths"]
    docs = await api.client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_an_access_token_expires_even_after_it_was_accepted(api: Api) -> None:
    """Verified tokens are remembered (signature), but the expiry is checked every time."""
    settings: Settings = api.client._transport.app.state.settings  # type: ignore[attr-defined]
    user_id = api.demo.user_ids["alice@example.com"]
    ttl = settings.JWT_ACCESS_TTL_S
    # 3 s of life left: 'exp' is whole seconds, and a slow CI machine must still answer
    # the first request in time.
    almost = datetime.now(UTC) - timedelta(seconds=ttl) + timedelta(seconds=3)
    token = create_access_token(settings, user_id, [], 0, now=almost)
    headers = {"Authorization": f"Bearer {token}"}
    assert (await api.client.get("/v1/rents", headers=headers)).status_code == 200
    await asyncio.sleep(
        max(0.0, (almost + timedelta(seconds=ttl) - datetime.now(UTC)).total_seconds()) + 0.05
    )
    r = await api.client.get("/v1/rents", headers=headers)
    assert r.status_code == 401 and r.json()["reason"] == "token-expired"
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    r = await api.client.get("/v1/rents", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401 and r.json().get("reason") != "token-expired"
