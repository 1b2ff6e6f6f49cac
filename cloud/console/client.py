"""The console's calls to the dashboard API, in process, with the operator's own token.

Every page is rendered from what the JSON API answers (the same routes, services, access
check and access log as any dashboard client): httpx over ASGI to the very app that serves
the console, so there is no network hop and no second implementation of a rule.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import Request

log = logging.getLogger("kickstand.cloud.console.client")

#: Cookies holding the dashboard API's tokens (HttpOnly: page scripts never see them). The
#: access token carries the operator's grants and outgrows a browser's 4 KB per cookie: it
#: is cut into numbered cookies (``ks_console_access_0``, ``_1``, …).
ACCESS_COOKIE = "ks_console_access"
REFRESH_COOKIE = "ks_console_refresh"
COOKIE_CHUNK = 3500
MAX_CHUNKS = 8
#: A refresh token presented again this soon gets the tokens its first use got (pages fire
#: several requests at once; the API treats a second use as theft and ends the session).
REFRESH_REUSE_S = 60.0
BASE_URL = "http://console.internal"


class ApiAnswerError(Exception):
    """The dashboard API refused: its status and envelope (``code``, ``message``, ``reason``)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.code = int(body.get("code") or 0)
        self.message = str(body.get("message") or "")
        self.reason = body.get("reason")
        self.errors: list[dict[str, Any]] = list(body.get("errors") or [])
        super().__init__(f"{status} code={self.code} {self.message}")


@dataclass
class Tokens:
    access: str | None
    refresh: str | None
    #: Set when a refresh gave new tokens: the response writes them back to the cookies.
    renewed: bool = False


@dataclass
class DashboardClient:
    """One page's calls. ``tokens`` come from the request's cookies."""

    request: Request
    tokens: Tokens
    _http: httpx.AsyncClient | None = field(default=None, init=False)

    @classmethod
    def of(cls, request: Request) -> DashboardClient:
        parts = []
        for i in range(MAX_CHUNKS):
            part = request.cookies.get(f"{ACCESS_COOKIE}_{i}")
            if part is None:
                break
            parts.append(part)
        access = "".join(parts) or None
        return cls(request, Tokens(access, request.cookies.get(REFRESH_COOKIE)))

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            # The caller's address, so per-address limits (login throttling) count the
            # browser, not "the console".
            peer = self.request.client
            transport = httpx.ASGITransport(
                app=self.request.app,
                client=(peer.host, peer.port) if peer is not None else ("127.0.0.1", 0),
            )
            self._http = httpx.AsyncClient(transport=transport, base_url=BASE_URL, timeout=60)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None,
        json: Any,
        token: str | None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        return await self._client().request(method, path, params=clean, json=json, headers=sent)

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The envelope of a successful answer; :class:`ApiAnswerError` otherwise. An expired
        access token is refreshed once with the refresh token, and the call repeated (with
        the same ``headers``: an Idempotency-Key stays the same attempt)."""
        response = await self._send(
            method, path, params=params, json=json, token=self.tokens.access, headers=headers
        )
        if response.status_code == 401 and self.tokens.refresh and await self._refresh():
            response = await self._send(
                method, path, params=params, json=json, token=self.tokens.access, headers=headers
            )
        body = _body(response)
        if response.status_code >= 400:
            raise ApiAnswerError(response.status_code, body)
        return body

    async def data(self, path: str, **params: Any) -> Any:
        return (await self.call("GET", path, params=params)).get("data")

    async def pages(
        self, path: str, *, limit: int = 5000, page_size: int = 500, **params: Any
    ) -> list[Any]:
        """Every row of a keyset listing (``page_size`` rows a request), up to ``limit``."""
        rows: list[Any] = []
        last: Any = None
        while len(rows) < limit:
            body = await self.call(
                "GET", path, params={**params, "page_size": page_size, "last_primary_key": last}
            )
            rows.extend(body.get("data") or [])
            last = body.get("next_primary_key")
            if last is None:
                break
        return rows[:limit]

    async def login(self, email: str, password: str) -> None:
        response = await self._send(
            "POST", "/v1/auth/login", params=None,
            json={"email": email, "password": password}, token=None,
        )  # fmt: skip
        body = _body(response)
        if response.status_code >= 400:
            raise ApiAnswerError(response.status_code, body)
        data = body["data"]
        self.tokens = Tokens(data["token"], data["refresh_token"], renewed=True)

    async def logout(self) -> None:
        if self.tokens.refresh and self.tokens.access:
            response = await self._send(
                "POST", "/v1/auth/logout", params=None,
                json={"refresh_token": self.tokens.refresh}, token=self.tokens.access,
            )  # fmt: skip
            if response.status_code >= 400:
                log.info("event=console_logout_refused status=%s", response.status_code)

    async def _refresh(self) -> bool:
        old = self.tokens.refresh
        assert old is not None
        recent = _recent_refreshes(self.request)
        async with recent.lock:
            now = time.monotonic()
            for key in [k for k, (_, _, at) in recent.tokens.items() if now - at > REFRESH_REUSE_S]:
                del recent.tokens[key]
            if old in recent.tokens:
                access, refresh, _ = recent.tokens[old]
                self.tokens = Tokens(access, refresh, renewed=True)
                return True
            response = await self._send(
                "POST", "/v1/auth/refresh", params=None, json=None, token=old
            )
            if response.status_code != 200:
                return False
            data = _body(response)["data"]
            recent.tokens[old] = (data["access_token"], data["refresh_token"], now)
        self.tokens = Tokens(data["access_token"], data["refresh_token"], renewed=True)
        return True


@dataclass
class RecentRefreshes:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: old refresh token → (access, refresh, monotonic time of the refresh)
    tokens: dict[str, tuple[str, str, float]] = field(default_factory=dict)


def _recent_refreshes(request: Request) -> RecentRefreshes:
    state = request.app.state
    recent: RecentRefreshes | None = getattr(state, "console_refreshes", None)
    if recent is None:
        recent = state.console_refreshes = RecentRefreshes()
    return recent


def cookies_of(tokens: Tokens) -> list[tuple[str, str]]:
    """The cookies that carry ``tokens`` (name, value)."""
    out: list[tuple[str, str]] = []
    if tokens.access:
        chunks = [
            tokens.access[i : i + COOKIE_CHUNK] for i in range(0, len(tokens.access), COOKIE_CHUNK)
        ]
        if len(chunks) > MAX_CHUNKS:
            raise ValueError(f"access token of {len(tokens.access)} bytes: too large to keep")
        out.extend((f"{ACCESS_COOKIE}_{i}", chunk) for i, chunk in enumerate(chunks))
    if tokens.refresh:
        out.append((REFRESH_COOKIE, tokens.refresh))
    return out


def cookie_names() -> list[str]:
    return [*(f"{ACCESS_COOKIE}_{i}" for i in range(MAX_CHUNKS)), REFRESH_COOKIE]


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"code": -1, "message": response.text[:200]}
    return body if isinstance(body, dict) else {"code": 0, "data": body}
