"""`MqttCommandGateway`: sign a command, publish it, await the device's result.

    gateway = MqttCommandGateway.from_settings(settings, sessionmaker)
    async with gateway:                                   # subscribed to results
        app = create_app(settings, command_gateway=gateway)
        outcome = await gateway.unlock_spot("st-0001", 2, rent_id="42")

Any number of API processes run side by side: each has its own MQTT client id and its
own NON-shared subscription to ``ks/v1/d/+/res``, so every process sees every result and
resolves only the futures it registered (the command id is 16 random bytes). Each
pending future is removed when it resolves, times out or is cancelled.

A command to a device that is not online by the one liveness rule
(:func:`kickstand.cloud.liveness.why_offline`) fails fast (nothing is published).

Two durations, never one (SPEC §7.1, §4.8 Clock): a command is VALID on the device for
``valid_s`` (``COMMAND_VALID_S``, 30 s: longer than any clock error a synced device may
have, so a station a few seconds fast still executes it), and the gateway WAITS for its
result ``timeout_s`` (``COMMAND_TIMEOUT_S``). A "timeout" answer therefore means the
command may still be executed until ``expires_at``: the caller keeps the rent open past it
(:func:`kickstand.cloud.rents.apply_unlock_outcome`), and the device's late result, the
removal or its UnlockExpired resolve it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import aiomqtt
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kickstand.cloud.broker import MqttUrl
from kickstand.cloud.commands.errors import CommandTimeoutError, DeviceOfflineError
from kickstand.cloud.commands.issuer import CommandIssuer
from kickstand.cloud.commands.records import record_command
from kickstand.cloud.config import Settings
from kickstand.cloud.ingest.rules import device_time
from kickstand.cloud.liveness import PRESENCE_COLUMNS, why_offline
from kickstand.cloud.models import Device
from kickstand.cloud.rent_gateway import (
    CommandGateway,
    DevicePresence,
    IssuedCommand,
    UnavailableCommandGateway,
    UnlockOutcome,
)
from kickstand.protocol import topics
from kickstand.protocol.errors import DecodeError, TopicError
from kickstand.protocol.signing import CommandSigner
from kickstand.protocol.topics import Channel
from kickstand.protocol.transport import SOCKET_OPTIONS
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import RejectReason, ResultStatus

log = logging.getLogger("kickstand.cloud.commands.gateway")

RESULT_FILTER = f"{topics.ROOT}/d/+/{Channel.RESULT.value}"
FINAL = frozenset({ResultStatus.DONE, ResultStatus.REJECTED, ResultStatus.FAILED})


@dataclass(frozen=True, slots=True)
class CommandReply:
    """The device's final answer to a command."""

    command_id: bytes
    device_id: str
    status: ResultStatus
    reason: RejectReason | None
    detail: str | None
    #: Device time of the result.
    at: datetime


@dataclass(slots=True)
class _Pending:
    device_id: str
    future: asyncio.Future[CommandReply]
    accepted: bool = False
    sent_at: float = field(default_factory=time.monotonic)


class MqttCommandGateway:
    """Implements :class:`kickstand.cloud.rent_gateway.CommandGateway` over MQTT."""

    def __init__(
        self,
        mqtt_url: str,
        signer: CommandSigner,
        sessionmaker: async_sessionmaker[AsyncSession] | None = None,
        *,
        timeout_s: float = 5.0,
        valid_s: float = 30.0,
        unlock_window_s: int = 60,
        client_id: str | None = None,
    ) -> None:
        self.url = MqttUrl.parse(mqtt_url)
        self.signer = signer
        #: How long a caller waits for the device's answer.
        self.timeout_s = timeout_s
        #: How long the device may execute the command (``expires_at - issued_at``).
        self.valid_s = max(valid_s, timeout_s)
        self.unlock_window_s = unlock_window_s
        self.client_id = client_id or f"api-{uuid.uuid4().hex[:12]}"
        self.issuer = CommandIssuer(signer, valid_s=self.valid_s, sent_by=self.client_id)
        self._sessionmaker = sessionmaker
        #: An engine this gateway built itself (``create_gateway``), disposed on close.
        self.owned_engine: AsyncEngine | None = None
        self._pending: dict[bytes, _Pending] = {}
        self._client: aiomqtt.Client | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        #: Results for commands this process did not send (another API process's): ignored.
        self.foreign_results = 0
        self.bad_results = 0

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession] | None,
        *,
        mqtt_url: str | None = None,
    ) -> MqttCommandGateway:
        from kickstand.cloud.commands.keys import load_signer

        url = mqtt_url or settings.MQTT_URL
        if not url:
            raise ValueError("no MQTT URL: pass mqtt_url= (the embedded broker's) or set MQTT_URL")
        return cls(
            url,
            load_signer(settings),
            sessionmaker,
            timeout_s=settings.COMMAND_TIMEOUT_S,
            valid_s=settings.COMMAND_VALID_S,
            unlock_window_s=settings.RENT_UNLOCK_WINDOW_S,
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, connect_timeout: float = 10.0) -> None:
        self._closing = False
        self._task = asyncio.create_task(self._run(), name=f"commands:{self.client_id}")
        try:
            await asyncio.wait_for(self._ready.wait(), connect_timeout)
        except TimeoutError:
            await self.close()
            raise DeviceOfflineError(
                "*", f"MQTT broker {self.url.safe()} unreachable within {connect_timeout:.0f} s"
            ) from None

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.cancel()
        self._pending.clear()
        if self.owned_engine is not None:
            await self.owned_engine.dispose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def _run(self) -> None:
        delay = 0.2
        while not self._closing:
            client = aiomqtt.Client(
                self.url.host,
                self.url.port,
                username=self.url.username,
                password=self.url.password,
                identifier=self.client_id,
                clean_session=True,
                keepalive=30,
                socket_options=SOCKET_OPTIONS,
                tls_context=self.url.tls_context(),  # mqtts:// (issue 17); None: plain
            )
            try:
                async with client:
                    await client.subscribe(RESULT_FILTER, qos=1)
                    self._client = client
                    self._ready.set()
                    delay = 0.2
                    log.info("event=command_gateway_ready client=%s", self.client_id)
                    async for message in client.messages:
                        self._on_result(str(message.topic), message.payload)
            except aiomqtt.MqttError as exc:
                log.warning(
                    "event=command_gateway_disconnected client=%s error=%s", self.client_id, exc
                )
            finally:
                self._ready.clear()
                self._client = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _on_result(self, topic: str, payload: object) -> None:
        try:
            device_id = topics.parse(topic).device_id
            if not isinstance(payload, bytes | bytearray):
                raise DecodeError("payload is not bytes", channel=Channel.RESULT)
            msg = codec.decode_up(Channel.RESULT, bytes(payload))
        except (TopicError, DecodeError) as exc:
            self.bad_results += 1
            log.warning("event=command_result_rejected topic=%s error=%s", topic, exc)
            return
        result = msg.body
        assert isinstance(result, m.CommandResult)
        pending = self._pending.get(result.command_id)
        if pending is None:
            self.foreign_results += 1
            return
        if pending.device_id != device_id:
            self.bad_results += 1
            log.warning(
                "event=command_result_wrong_device command=%s expected=%s got=%s",
                result.command_id.hex(),
                pending.device_id,
                device_id,
            )
            return
        log.debug(
            "event=command_result device=%s command=%s status=%s",
            device_id,
            result.command_id.hex(),
            result.status.name,
        )
        if result.status not in FINAL:
            pending.accepted = True
            return
        if not pending.future.done():
            # The device's stamp within the bounds of SPEC §4.2, else our receive time.
            at_ms, _ = device_time(msg.stamp.ts_ms, time.time_ns() // 1_000_000)
            pending.future.set_result(
                CommandReply(
                    result.command_id,
                    device_id,
                    result.status,
                    result.reason,
                    result.detail,
                    datetime.fromtimestamp(at_ms / 1000, UTC),
                )
            )

    # -- sending ------------------------------------------------------------------------

    def issue(
        self,
        device_id: str,
        command: m.CommandBody,
        *,
        rent_id: int | None = None,
        timeout_s: float | None = None,
    ) -> IssuedCommand:
        """Build and sign a command (nothing sent), valid on the device for ``timeout_s``
        (default: this gateway's ``valid_s``)."""
        return self.issuer.issue(device_id, command, rent_id=rent_id, valid_s=timeout_s)

    async def publish(self, issued: IssuedCommand) -> bool:
        """Publish an issued (and recorded) command without waiting for its result (an
        authorization-list update: its result is ingest's). False: not published."""
        client = self._client
        if client is None or not self._ready.is_set():
            return False
        try:
            await client.publish(
                topics.down(issued.device_id, Channel.COMMAND), issued.payload, qos=1
            )
        except aiomqtt.MqttError as exc:
            log.warning("event=command_publish_failed device=%s error=%s", issued.device_id, exc)
            return False
        return True

    async def send(
        self,
        device_id: str,
        command: m.CommandBody,
        *,
        rent_id: int | None = None,
        timeout_s: float | None = None,
        presence: DevicePresence | None = None,
    ) -> CommandReply:
        """Sign, record, publish, await the final result for ``timeout_s`` (default: this
        gateway's); raises DeviceOfflineError (nothing sent) or CommandTimeoutError (sent,
        no final answer in time: the device may still execute it until it expires)."""
        issued = self.issue(device_id, command, rent_id=rent_id)
        # The audit row first: ingest records the device's answer on it.
        await self._record(issued)
        return await self.dispatch(issued, presence=presence, timeout_s=timeout_s)

    async def dispatch(
        self,
        issued: IssuedCommand,
        *,
        presence: DevicePresence | None = None,
        timeout_s: float | None = None,
    ) -> CommandReply:
        """Publish an issued command and await its final result (see :meth:`send`)."""
        device_id, command_id = issued.device_id, issued.command_id
        if self._client is None or not self._ready.is_set():
            raise DeviceOfflineError(device_id, f"MQTT broker {self.url.safe()} unreachable")
        if presence is None:
            presence = await self._presence(device_id)
        self._check_online(device_id, presence)
        client = self._client
        if client is None:
            raise DeviceOfflineError(device_id, f"MQTT broker {self.url.safe()} unreachable")
        loop = asyncio.get_running_loop()
        pending = _Pending(device_id, loop.create_future())
        self._pending[command_id] = pending
        wait = timeout_s if timeout_s is not None else self.timeout_s
        # Never past the command's own expiry: no answer can come after it.
        timeout = max(0.0, min(wait, (issued.expires_at - datetime.now(UTC)).total_seconds()))
        try:
            try:
                await client.publish(topics.down(device_id, Channel.COMMAND), issued.payload, qos=1)
            except aiomqtt.MqttError as exc:
                raise DeviceOfflineError(device_id, f"publish failed: {exc}") from exc
            log.debug("event=command_published device=%s command=%s", device_id, command_id.hex())
            try:
                return await asyncio.wait_for(asyncio.shield(pending.future), timeout)
            except TimeoutError:
                accepted = pending.accepted
                raise CommandTimeoutError(device_id, command_id, wait, accepted) from None
        finally:
            self._pending.pop(command_id, None)
            if not pending.future.done():
                pending.future.cancel()

    async def _presence(self, device_id: str) -> DevicePresence | None:
        if self._sessionmaker is None:
            return None
        async with self._sessionmaker() as session:
            row = (
                await session.execute(
                    select(*PRESENCE_COLUMNS).where(Device.device_id == device_id)
                )
            ).first()
        if row is None:
            raise DeviceOfflineError(device_id, "unknown device")
        return DevicePresence(*row)

    def _check_online(self, device_id: str, presence: DevicePresence | None) -> None:
        if presence is None:  # no database to ask: the device's answer (or silence) will tell
            return
        reason = why_offline(presence, datetime.now(UTC))
        if reason is not None:
            raise DeviceOfflineError(device_id, reason)

    async def _record(self, issued: IssuedCommand) -> None:
        if self._sessionmaker is None:
            return
        try:
            async with self._sessionmaker() as session, session.begin():
                await record_command(session, issued)
        except Exception as exc:  # the audit row must never fail the command
            log.warning(
                "event=command_record_failed command=%s error=%r", issued.command_id.hex(), exc
            )

    # -- CommandGateway -------------------------------------------------------------------

    def unlock_command(
        self, device_id: str, spot_number: int, rent_id: int | None
    ) -> IssuedCommand:
        command = m.Unlock(
            spot=spot_number,
            window_s=self.unlock_window_s,
            rent_id=str(rent_id) if rent_id is not None else None,
        )
        return self.issue(device_id, command, rent_id=rent_id)

    async def unlock_spot(
        self,
        station_device_id: str,
        spot_number: int,
        rent_id: str,
        *,
        presence: DevicePresence | None = None,
    ) -> UnlockOutcome:
        """Issue, record and send an unlock; ``rent_id`` is str(Rent.id)."""
        rid = int(rent_id) if rent_id.isdigit() else None
        issued = self.unlock_command(station_device_id, spot_number, rid)
        await self._record(issued)
        return await self.send_unlock(issued, presence=presence)

    async def unlock_vehicle(
        self, vehicle_device_id: str, rent_id: str, *, presence: DevicePresence | None = None
    ) -> UnlockOutcome:
        return await self.unlock_spot(vehicle_device_id, 0, rent_id, presence=presence)

    def issue_command(self, device_id: str, command: m.CommandBody) -> IssuedCommand:
        return self.issue(device_id, command)

    async def send_command(
        self, issued: IssuedCommand, *, presence: DevicePresence | None = None
    ) -> UnlockOutcome:
        """Any command: the outcomes of an unlock (``UNLOCKED`` = the device answered DONE)."""
        return await self.send_unlock(issued, presence=presence)

    async def send_unlock(
        self, issued: IssuedCommand, *, presence: DevicePresence | None = None
    ) -> UnlockOutcome:
        device_id = issued.device_id
        try:
            reply = await self.dispatch(issued, presence=presence)
        except DeviceOfflineError as exc:
            log.info("event=unlock_failed_fast device=%s reason=%s", device_id, exc.reason)
            return UnlockOutcome.offline(f"{device_id}: {exc.reason}")
        except CommandTimeoutError as exc:
            log.warning("event=unlock_timeout device=%s accepted=%s", device_id, exc.accepted)
            return UnlockOutcome.timeout(str(exc))
        except Exception as exc:  # the protocol says: never raise for device-side problems
            log.exception("event=unlock_error device=%s", device_id)
            return UnlockOutcome.offline(f"{device_id}: command could not be sent ({exc!r})")
        if reply.status is ResultStatus.DONE:
            return UnlockOutcome.unlocked(reply.at)
        reason = reply.reason.name.lower().replace("_", "-") if reply.reason else "refused"
        if reply.status is ResultStatus.FAILED:
            reason = f"hardware-failed: {reason}"
        if reply.detail:
            reason = f"{reason}: {reply.detail}"
        return UnlockOutcome.refused(reason)


def create_gateway(
    settings: Settings,
    *,
    mqtt_url: str | None = None,
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
) -> CommandGateway:
    """The gateway of an API process (``kickstand.cloud.api.main`` calls this).

    ``mqtt_url`` overrides ``MQTT_URL`` (the demo launcher passes its embedded broker's);
    without any URL every unlock fails fast as offline. Without ``sessionmaker`` the
    gateway opens its own engine on ``DATABASE_URL`` (disposed when it closes).
    """
    url = mqtt_url or settings.MQTT_URL
    if not url:
        log.warning("event=no_mqtt_url: unlocks will fail fast as device-offline")
        return UnavailableCommandGateway()
    owned = None
    if sessionmaker is None:
        from kickstand.cloud.db import create_engine, create_sessionmaker

        owned = create_engine(settings)
        sessionmaker = create_sessionmaker(owned)
    gateway = MqttCommandGateway.from_settings(settings, sessionmaker, mqtt_url=url)
    gateway.owned_engine = owned
    return gateway


__all__ = ["RESULT_FILTER", "CommandReply", "MqttCommandGateway", "create_gateway"]
