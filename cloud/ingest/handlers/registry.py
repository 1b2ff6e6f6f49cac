"""Ingest handlers registered per channel and per event type (the edge's ``@router.on``).

    @handlers.channel(Channel.STATUS)
    async def statuses(ctx, session, items, infos, out): ...

    @handlers.on(m.VehicleDocked, kind=DeviceKind.STATION)
    async def docked(ctx, session, item, info, body): ...

A channel handler gets all the batch's new messages of its channel at once (bulk SQL);
the core calls them in :data:`ORDER`. Events are the core's to run one by one (each in a
savepoint, a failure a dead letter); it calls :meth:`Handlers.event`, which runs the
handler of the event's type and device kind — none is fine: the event is still recorded
(``device.event``) and shown to the alert rules.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.ingest.batch import BatchOutcome, DeviceInfo, Inbound
from kickstand.cloud.models import DeviceKind
from kickstand.protocol.topics import Channel

if TYPE_CHECKING:
    from kickstand.cloud.ingest.apply import BatchApplier

B = TypeVar("B")

ChannelHandler = Callable[
    ["BatchApplier", AsyncSession, list[Inbound], dict[str, DeviceInfo], BatchOutcome],
    Awaitable[None],
]
EventHandler = Callable[["BatchApplier", AsyncSession, Inbound, DeviceInfo, Any], Awaitable[None]]
#: After the event's own handler, for every event (the record, the alert rules).
EventTail = Callable[["BatchApplier", AsyncSession, Inbound, DeviceInfo], Awaitable[None]]

#: The order channels are applied in within a batch: a device's birth before what it says
#: next; events after the statuses and fixes of the same batch; results last.
ORDER = (
    Channel.BIRTH,
    Channel.DEATH,
    Channel.HEARTBEAT,
    Channel.STATUS,
    Channel.TELEMETRY,
    Channel.EVENT,
    Channel.RESULT,
)


class Handlers:
    def __init__(self) -> None:
        self._channels: dict[Channel, ChannelHandler] = {}
        self._events: dict[tuple[type, DeviceKind | None], EventHandler] = {}
        self._tails: list[EventTail] = []

    def channel(self, channel: Channel) -> Callable[[ChannelHandler], ChannelHandler]:
        def register(fn: ChannelHandler) -> ChannelHandler:
            self._channels[channel] = fn
            return fn

        return register

    def on(
        self, event_type: type[B], *, kind: DeviceKind | None = None
    ) -> Callable[
        [Callable[[BatchApplier, AsyncSession, Inbound, DeviceInfo, B], Awaitable[None]]],
        Callable[[BatchApplier, AsyncSession, Inbound, DeviceInfo, B], Awaitable[None]],
    ]:
        """``kind``: only from that kind of device (None: from any)."""

        def register(
            fn: Callable[[BatchApplier, AsyncSession, Inbound, DeviceInfo, B], Awaitable[None]],
        ) -> Callable[[BatchApplier, AsyncSession, Inbound, DeviceInfo, B], Awaitable[None]]:
            self._events[(event_type, kind)] = fn
            return fn

        return register

    def after_every_event(self, fn: EventTail) -> EventTail:
        self._tails.append(fn)
        return fn

    def of_channel(self, channel: Channel) -> ChannelHandler | None:
        return self._channels.get(channel)

    async def event(
        self, ctx: BatchApplier, session: AsyncSession, item: Inbound, info: DeviceInfo
    ) -> None:
        body = item.msg.body
        handler = self._events.get((type(body), info.kind)) or self._events.get(
            (type(body), None)
        )
        if handler is not None:
            await handler(ctx, session, item, info, body)
        for tail in self._tails:
            await tail(ctx, session, item, info)


#: The registry ingest runs with (the modules of this package register into it).
handlers = Handlers()

__all__ = ["ORDER", "ChannelHandler", "EventHandler", "Handlers", "handlers"]
