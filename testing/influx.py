"""A real InfluxDB 1.6 (Debian's `influxd`) for the tests, on loopback, in a temp dir.

It serves the v1 HTTP API the cloud uses everywhere (line protocol on `/write`, InfluxQL
on `/query`), the same API InfluxDB 2.x/3.x offer for v1 compatibility.

    with InfluxService() as influx:
        httpx.post(f"{influx.url}/write", params={"db": influx.database}, content=b"m v=1")
        influx.stop(); influx.start()          # same port, same data
"""

from __future__ import annotations

import secrets
import string
import time
import uuid
from importlib import resources
from typing import Any

import httpx

from ._process import LOOPBACK, ManagedProcess, free_port, require_binary
from .errors import HarnessError, ServiceStartError

INFLUXD_BIN = "/usr/bin/influxd"


class InfluxQueryError(HarnessError):
    """InfluxDB answered a harness query with an error."""

    def __init__(self, query: str, status: int, body: str) -> None:
        self.query = query
        self.status = status
        self.body = body
        super().__init__(f"InfluxDB query {query!r} failed with HTTP {status}: {body[:500]}")


def _quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class InfluxService(ManagedProcess):
    """`influxd` 1.6 on a free loopback HTTP port, with `database` created at first start.

    `auth=True` turns on HTTP auth with an admin account (`username` / `password`), as the
    deployment does; by default auth is off and both are None.
    """

    service_name = "influxd"
    start_timeout = 30.0

    def __init__(
        self,
        *,
        host: str = LOOPBACK,
        port: int | None = None,
        database: str | None = None,
        auth: bool = False,
    ) -> None:
        self._binary = require_binary("influxd", INFLUXD_BIN, "influxd")
        super().__init__(host=host, port=port)
        self.rpc_port = free_port(host)
        self.database = database or f"kstest_{uuid.uuid4().hex[:10]}"
        self.auth = auth
        self.username: str | None = "kickstand" if auth else None
        self.password: str | None = secrets.token_urlsafe(18) if auth else None
        self.config_path = self.base_dir / "influxdb.conf"
        self._initialised = False

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>` — the cloud's INFLUX_URL."""
        return f"http://{self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The cloud's INFLUX_* settings for this instance."""
        env = {"INFLUX_URL": self.url, "INFLUX_DATABASE": self.database}
        if self.username and self.password:
            env["INFLUX_USERNAME"] = self.username
            env["INFLUX_PASSWORD"] = self.password
        return env

    # -- admin helpers --------------------------------------------------------------------

    def _auth_params(self) -> dict[str, str]:
        if self.username and self.password:
            return {"u": self.username, "p": self.password}
        return {}

    def query(self, q: str, *, database: str | None = None, timeout: float = 10.0) -> Any:
        """Run InfluxQL (POST /query) and return the decoded JSON `results`."""
        params = {"q": q, **self._auth_params()}
        if database:
            params["db"] = database
        response = httpx.post(f"{self.url}/query", params=params, timeout=timeout)
        body = response.text
        if response.status_code != 200:
            raise InfluxQueryError(q, response.status_code, body)
        results = response.json().get("results", [])
        for result in results:
            if "error" in result:
                raise InfluxQueryError(q, response.status_code, result["error"])
        return results

    def write(self, lines: str | bytes, *, database: str | None = None,
              precision: str = "ns", timeout: float = 10.0) -> None:
        """Write line protocol (POST /write) to `database` (default: the service's own)."""
        content = lines.encode() if isinstance(lines, str) else lines
        params = {"db": database or self.database, "precision": precision,
                  **self._auth_params()}
        response = httpx.post(f"{self.url}/write", params=params, content=content,
                              timeout=timeout)
        if response.status_code != 204:
            raise InfluxQueryError("<write>", response.status_code, response.text)

    def create_database(self, name: str | None = None) -> str:
        name = name or f"kstest_{uuid.uuid4().hex[:10]}"
        self.query(f"CREATE DATABASE {_quote_ident(name)}")
        return name

    def drop_database(self, name: str) -> None:
        self.query(f"DROP DATABASE {_quote_ident(name)}")

    # -- ManagedProcess hooks -------------------------------------------------------------

    def _prepare(self) -> None:
        template = resources.files("kickstand.testing").joinpath("influxdb.conf").read_text()
        self.config_path.write_text(
            string.Template(template).substitute(
                host=self.host,
                port=self.port,
                rpc_port=self.rpc_port,
                base_dir=self.base_dir,
                auth_enabled="true" if self.auth else "false",
            )
        )

    def _command(self) -> list[str]:
        return [self._binary, "run", "-config", str(self.config_path)]

    def _ready(self) -> bool:
        try:
            response = httpx.get(f"{self.url}/ping", timeout=0.5)
        except httpx.HTTPError:
            return False
        return response.status_code == 204

    def _after_start(self) -> None:
        if self._initialised:
            return
        if self.auth:
            # With auth on and no user yet, InfluxDB 1.x accepts exactly this statement.
            assert self.username and self.password
            escaped = self.password.replace("\\", "\\\\").replace("'", "\\'")
            q = (f"CREATE USER {_quote_ident(self.username)} WITH PASSWORD '{escaped}' "
                 "WITH ALL PRIVILEGES")
            response = httpx.post(f"{self.url}/query", params={"q": q}, timeout=10)
            if response.status_code != 200 or "error" in response.text:
                raise ServiceStartError("influxd", f"creating the admin user failed: "
                                        f"{response.text}", self.log_tail())
        deadline = time.monotonic() + 10
        while True:
            try:
                self.create_database(self.database)
                break
            except (InfluxQueryError, httpx.HTTPError) as exc:
                # Right after /ping answers, the meta store may still be opening.
                if time.monotonic() > deadline:
                    raise ServiceStartError("influxd", f"creating the database failed: {exc}",
                                            self.log_tail()) from exc
                time.sleep(0.1)
        self._initialised = True
