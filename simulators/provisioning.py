"""Simulated devices get their identity as real hardware does (issue 17): the key made in
the device's own key store, its CSR signed by the installation through the bench's endpoint
(``POST /v1/dashboard/devices/provision``, a bench operator's login), the certificate and
the CA chain checked and installed by the agent's own bench functions
(:func:`kickstand.edge.core.identity.bench_request` / ``bench_install``). The simulated fleet
holds no key of the cloud's: no CA key, no command-signing key.

    async with Bench(BenchAccount(api_url, email, password)) as bench:
        files = await bench.provision("st-0001", "station", workdir / "st-0001" / "identity")
        rig = StationRig(..., tls=True, **files.agent_settings())

A device whose certificate is already installed keeps it (a restarted fleet does not ask
again; its agent renews before expiry like any device).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import httpx

from kickstand.edge.core.identity import IdentityError, bench_install, bench_request

log = logging.getLogger("kickstand.simulators.provisioning")

DeviceKindName = Literal["station", "vehicle"]


class ProvisioningError(Exception):
    """The installation refused (or could not be asked for) a simulated device's
    certificate."""

    def __init__(self, device_id: str, reason: str) -> None:
        super().__init__(f"{device_id}: {reason}")
        self.device_id = device_id
        self.reason = reason


@dataclass(frozen=True, slots=True)
class BenchAccount:
    """The installation's API and a bench operator's login (``vehicles.manage`` /
    ``stations.manage``; a global grant to register a device that is new)."""

    api_url: str
    email: str
    password: str


@dataclass(frozen=True, slots=True)
class DeviceFiles:
    """Where one device keeps its identity (its key store)."""

    directory: Path

    @property
    def key_file(self) -> Path:
        return self.directory / "device.key"

    @property
    def cert_file(self) -> Path:
        return self.directory / "device.pem"

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def installed(self) -> bool:
        return all(p.exists() for p in (self.key_file, self.cert_file, self.ca_file))

    def agent_settings(self) -> dict[str, str]:
        """The agent's TLS settings (``mqtt_ca_file``, ``mqtt_cert_file``, ``mqtt_key_file``)."""
        return {
            "mqtt_ca_file": str(self.ca_file),
            "mqtt_cert_file": str(self.cert_file),
            "mqtt_key_file": str(self.key_file),
        }


class Bench:
    """One login to the installation's API, many devices provisioned through it."""

    def __init__(
        self,
        account: BenchAccount,
        *,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.account = account
        self._client = httpx.AsyncClient(
            base_url=account.api_url, timeout=timeout_s, transport=transport
        )
        self._headers: dict[str, str] | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.aclose()

    async def _login(self) -> dict[str, str]:
        if self._headers is None:
            r = await self._client.post(
                "/v1/auth/login",
                json={"email": self.account.email, "password": self.account.password},
            )
            if r.status_code != 200:
                raise ProvisioningError("*", f"the bench account cannot log in: {_why(r)}")
            self._headers = {"Authorization": f"Bearer {r.json()['data']['token']}"}
        return self._headers

    async def provision(self, device_id: str, kind: DeviceKindName, directory: Path) -> DeviceFiles:
        """The device's identity in ``directory``: kept if installed, else made (key on the
        device, CSR signed by the installation, certificate and CA checked and installed)."""
        files = DeviceFiles(directory)
        if files.installed():
            return files
        csr = bench_request(device_id, files.key_file)
        try:
            r = await self._client.post(
                "/v1/dashboard/devices/provision",
                json={"device_id": device_id, "kind": kind, "csr": csr.decode()},
                headers=await self._login(),
            )
        except httpx.HTTPError as exc:
            raise ProvisioningError(device_id, f"the installation's API: {exc}") from exc
        if r.status_code != 200:
            raise ProvisioningError(device_id, f"the installation refused it: {_why(r)}")
        data = r.json()["data"]
        try:
            bench_install(
                device_id,
                files.key_file,
                files.cert_file,
                files.ca_file,
                data["certificate_pem"].encode(),
                data["ca_chain_pem"].encode(),
            )
        except IdentityError as exc:
            raise ProvisioningError(device_id, f"the certificate received: {exc}") from exc
        log.info("event=simulated_device_provisioned device=%s", device_id)
        return files


def _why(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return f"{r.status_code} {r.text[:200]}"
    return f"{r.status_code} {body.get('message', '')} {body.get('reason', '')}".strip()
