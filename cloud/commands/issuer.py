"""Build and sign commands (nothing sent): the API's gateway and ingest's badge rides and
authorization-list updates all issue through this one place.

    issuer = CommandIssuer.from_settings(settings, sent_by="ingest")
    issued = issuer.issue("st-0001", m.Unlock(spot=2, window_s=30, rent_id="42"), rent_id=42)

The caller records ``issued`` (:func:`kickstand.cloud.commands.records.record_command`) in
its own transaction and publishes ``issued.payload`` on ``ks/v1/c/<device>/cmd`` after the
commit.
"""

from __future__ import annotations

import dataclasses

from kickstand.cloud.config import Settings
from kickstand.cloud.rent_gateway import IssuedCommand
from kickstand.protocol import topics
from kickstand.protocol.signing import CommandSigner
from kickstand.protocol.v1 import messages as m


class CommandIssuer:
    def __init__(
        self,
        signer: CommandSigner,
        *,
        valid_s: float = 30.0,
        sent_by: str | None = None,
        unlock_window_s: int = 60,
    ) -> None:
        self.signer = signer
        #: How long a command may be executed by the device (``expires_at - issued_at``).
        self.valid_s = valid_s
        self.sent_by = sent_by
        #: The window of the Unlocks it issues for rents (``RENT_UNLOCK_WINDOW_S``, as the
        #: API's): how long the rider has to take the vehicle once the lock opens.
        self.unlock_window_s = unlock_window_s

    @classmethod
    def from_settings(cls, settings: Settings, *, sent_by: str | None = None) -> CommandIssuer:
        from kickstand.cloud.commands.keys import load_signer

        return cls(
            load_signer(settings),
            valid_s=settings.COMMAND_VALID_S,
            sent_by=sent_by,
            unlock_window_s=settings.RENT_UNLOCK_WINDOW_S,
        )

    def issue(
        self,
        device_id: str,
        command: m.CommandBody,
        *,
        rent_id: int | None = None,
        valid_s: float | None = None,
    ) -> IssuedCommand:
        """A signed command valid for ``valid_s`` (default: this issuer's) from now."""
        topics.validate_device_id(device_id)
        valid = valid_s if valid_s is not None else self.valid_s
        draft = IssuedCommand.new(
            device_id, command, timeout_s=valid, rent_id=rent_id, sent_by=self.sent_by
        )
        envelope = m.CommandEnvelope(
            command_id=draft.command_id,
            device_id=device_id,
            issued_at_ms=round(draft.issued_at.timestamp() * 1000),
            expires_at_ms=round(draft.expires_at.timestamp() * 1000),
            command=command,
        )
        return dataclasses.replace(draft, payload=self.signer.sign(envelope))


__all__ = ["CommandIssuer"]
