"""End-of-line provisioning (issue 17): the device gets its identity at the bench.

Two steps, last of a suite (the device has passed everything else):

* ``provision``: the device's key is made on the device — in the agent's key store on the
  bench PC that runs it (:func:`kickstand.edge.core.identity.bench_request`); only its CSR
  leaves, to the installation's ``POST /v1/dashboard/devices/provision`` under the bench's
  operator account; the certificate and the CA chain that come back are checked (the
  device's key, its CN) and installed beside the key. The cloud registers the device as
  provisioned, not commissioned.
* ``tls_connect``: the device connects to the installation's broker over TLS with that
  certificate (the broker verified against the CA chain): the pair works end to end.

Without ``[provisioning] api_url`` the steps do not run (a note in the report says the
device got no certificate); without ``tls_broker_url`` the second is skipped.
"""

from __future__ import annotations

import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import httpx

from kickstand.edge.core.identity import IdentityError, bench_install, bench_request
from kickstand.rigs.config import Provisioning
from kickstand.rigs.runner import StepContext, SuiteRunner


@dataclass
class ProvisioningSteps:
    device_id: str
    kind: str  # "station" or "vehicle"
    settings: Provisioning
    workdir: Path
    #: The HTTP transport to the API (tests: the app in process); None: the network.
    transport: httpx.AsyncBaseTransport | None = None

    @property
    def identity_dir(self) -> Path:
        return self.settings.identity_dir or self.workdir / "identity"

    @property
    def key_file(self) -> Path:
        return self.identity_dir / "device.key"

    @property
    def cert_file(self) -> Path:
        return self.identity_dir / "device.pem"

    @property
    def ca_file(self) -> Path:
        return self.identity_dir / "ca.pem"

    def agent_settings(self) -> dict[str, Any]:
        """What the device's agent settings get for its identity (written in the report)."""
        return {
            "mqtt_url": self.settings.tls_broker_url,
            "mqtt_ca_file": str(self.ca_file),
            "mqtt_cert_file": str(self.cert_file),
            "mqtt_key_file": str(self.key_file),
        }

    async def run(self, runner: SuiteRunner) -> None:
        if self.settings.api_url is None:
            # A bench that does not provision (functional tests only, a repair) says so in
            # its report rather than with two skipped steps on every run.
            runner.report.notes.append(
                "no provisioning: [provisioning] api_url is not set, the device got no "
                "certificate at this bench"
            )
            return
        runner.planned += 2
        await runner.step(
            "provision",
            "Device key made on the device, certificate signed by the installation, installed",
            self.step_provision,
            timeout_s=self.settings.timeout_s + 10,
            hint="Check the bench account (stations.advanced on every network), the API URL "
            "and that the device id is not decommissioned.",
        )
        await runner.step(
            "tls_connect",
            "Connects to the installation's broker over TLS with its certificate",
            self.step_tls,
            timeout_s=self.settings.timeout_s + 10,
            requires=["provision"],
            hint="Check the broker's TLS listener (port 8883) and that it trusts the "
            "installation's CA; the device's clock must be right.",
        )

    # ── provision ───────────────────────────────────────────────────────────────────

    async def step_provision(self, s: StepContext) -> None:
        cfg = self.settings
        assert cfg.api_url is not None  # run() adds the steps only then
        password = os.environ.get(cfg.password_env)
        if not cfg.email or not password:
            s.fail(f"the bench account is not set: [provisioning] email and ${cfg.password_env}")
        csr = bench_request(self.device_id, self.key_file)
        s.measure("key", str(self.key_file))
        async with httpx.AsyncClient(
            base_url=cfg.api_url, transport=self.transport, timeout=cfg.timeout_s
        ) as api:
            r = await api.post("/v1/auth/login", json={"email": cfg.email, "password": password})
            if r.status_code != 200:
                s.fail(f"the bench account cannot log in: {r.status_code} {_why(r)}")
            headers = {"Authorization": f"Bearer {r.json()['data']['token']}"}
            r = await api.post(
                "/v1/dashboard/devices/provision",
                json={"device_id": self.device_id, "kind": self.kind, "csr": csr.decode()},
                headers=headers,
            )
        if r.status_code != 200:
            s.fail(f"the installation refused the certificate: {r.status_code} {_why(r)}")
        data = r.json()["data"]
        try:
            cert = bench_install(
                self.device_id,
                self.key_file,
                self.cert_file,
                self.ca_file,
                data["certificate_pem"].encode(),
                data["ca_chain_pem"].encode(),
            )
        except IdentityError as exc:
            s.fail(f"the certificate received cannot be installed: {exc}")
        s.measure("serial", format(cert.serial_number, "x"))
        s.measure("valid until", cert.not_valid_after_utc.isoformat())
        s.measure("registry id", data["id"])
        s.check("provisioned, not commissioned", data["unattached"], equals=True)
        s.hint = "The device is already attached to a station or vehicle: was it reused?"

    # ── TLS ─────────────────────────────────────────────────────────────────────────

    async def step_tls(self, s: StepContext) -> None:
        url = self.settings.tls_broker_url
        if url is None:
            s.skip("no TLS broker configured ([provisioning] tls_broker_url)")
        parts = urlsplit(url)
        if parts.scheme not in ("mqtts", "ssl") or not parts.hostname:
            s.fail(f"tls_broker_url {url!r}: expected mqtts://host:port")
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(self.cert_file, self.key_file)
        started = time.monotonic()
        try:
            async with aiomqtt.Client(
                parts.hostname,
                parts.port or 8883,
                identifier=self.device_id,
                tls_context=context,
                timeout=self.settings.timeout_s,
                clean_session=True,
            ):
                connected = time.monotonic() - started
        except aiomqtt.MqttError as exc:
            s.fail(f"the broker refused the device over TLS: {exc}")
        s.check("TLS connect", round(connected, 3), high=self.settings.timeout_s, unit="s")


def _why(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:200]
    return f"{body.get('reason') or ''} {body.get('message') or ''}".strip()[:300]


__all__ = ["ProvisioningSteps"]
