"""Certificate renewal over the device's own identity (issue 17, SPEC §7.7): a CertRenew
carries a CSR for a key the device just made; the installation's CA signs it (CN = the
device id of the topic, which the broker bound to the certificate the device connected
with), the registry records it and marks the old one superseded, and the certificate goes
back as a signed CertIssued command, recorded and published after the commit.

A device renews only while it holds a live certificate of ours (one neither revoked nor
expired): an expired or revoked device is re-provisioned at the bench, never by a message.
A request refused (a CSR not its own, no live certificate) raises: the core keeps it as a
dead letter for an operator, and the device asks again at its next session.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

# The module, not the name: commands.records imports ingest.tables, which loads these
# handlers (a cycle resolved at call time).
from kickstand.cloud.commands import records
from kickstand.cloud.devices import identity
from kickstand.cloud.errors import ConflictError, NotFoundError
from kickstand.cloud.ingest.batch import DeviceInfo, Inbound, Reply
from kickstand.cloud.ingest.handlers.registry import handlers
from kickstand.cloud.models import Device, utcnow
from kickstand.protocol.v1 import messages as m

if TYPE_CHECKING:
    from kickstand.cloud.ingest.apply import BatchApplier


@handlers.on(m.CertRenew)
async def cert_renew(
    ctx: BatchApplier,
    session: AsyncSession,
    item: Inbound,
    info: DeviceInfo,
    body: m.CertRenew,
) -> None:
    if ctx.device_ca is None or ctx.issuer is None:
        # No CA here (the embedded setup): nothing can be signed; the device asks again.
        ctx.stats.ignore("cert-renew-no-ca", device=item.device_id)
        return
    now = utcnow()
    device = await session.scalar(select(Device).where(Device.device_id == item.device_id))
    if device is None:
        raise NotFoundError("device", item.device_id)
    if await identity.live_certificate(session, device.id, now) is None:
        raise ConflictError(
            f"{item.device_id} holds no live certificate of this installation: renewal is "
            "over a valid identity only (re-provision it at the bench)",
            reason="no-live-certificate",
        )
    csr = identity.parse_csr(body.csr)
    identity.check_csr(csr, item.device_id)
    # Reading the CA and signing are file and CPU work: off the event loop.
    ca = await asyncio.to_thread(ctx.device_ca.load)
    issued = await identity.issue(
        session, ca, device, csr, valid_days=ctx.device_ca.valid_days, issued_by=None, now=now
    )
    command = ctx.issuer.issue(
        item.device_id, m.CertIssued(issued.certificate.public_bytes(Encoding.DER))
    )
    await records.record_command(session, command)
    item.replies.append(Reply.command(command))


__all__ = ["cert_renew"]
