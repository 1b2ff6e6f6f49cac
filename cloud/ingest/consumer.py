"""The MQTT side of an ingest worker: paho-mqtt 2.x on its network thread, feeding asyncio.

Why paho on a thread (not aiomqtt): its network loop runs beside the event loop, so while
one batch is in the database the next one is already arriving; and paho lets us send the
PUBACK ourselves (``manual_ack``), after the batch is committed. A worker that dies
mid-batch leaves its messages unacknowledged: the broker sends them again (persistent
session), and the database dedupe makes that replay harmless.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from kickstand.cloud.broker import MqttUrl
from kickstand.cloud.ingest.errors import BrokerConnectError

log = logging.getLogger("kickstand.cloud.ingest.consumer")


@dataclass(slots=True)
class Received:
    topic: str
    payload: bytes
    mid: int
    qos: int
    #: Connection generation it came on; a mid is only meaningful on that connection.
    generation: int


class MqttConsumer:
    """Subscribe ``topic`` (QoS 1) on a persistent session and hand batches to asyncio."""

    def __init__(
        self,
        url: MqttUrl,
        client_id: str,
        topic: str,
        *,
        clean_session: bool = False,
        keepalive: int = 30,
    ) -> None:
        self.url = url
        self.client_id = client_id
        self.topic = topic
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if url.username:
            self._client.username_pw_set(url.username, url.password)
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._keepalive = keepalive
        self._pending: deque[Received] = deque()
        self._signalled = False
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._generation = 0
        self._subscribed = threading.Event()
        self._connect_error: str | None = None
        self.connections = 0

    # -- paho thread ------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._connect_error = str(reason)
            log.warning("event=mqtt_connect_refused client=%s reason=%s", self.client_id, reason)
            return
        self._generation += 1
        self.connections += 1
        log.info(
            "event=mqtt_connected client=%s session_present=%s",
            self.client_id,
            getattr(flags, "session_present", None),
        )
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        if any(r.is_failure for r in reasons):
            self._connect_error = f"subscription to {self.topic} refused: {reasons}"
            log.error("event=mqtt_subscribe_refused client=%s topic=%s", self.client_id, self.topic)
            return
        self._subscribed.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._subscribed.clear()
        log.warning("event=mqtt_disconnected client=%s reason=%s", self.client_id, reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self._pending.append(
            Received(msg.topic, msg.payload, msg.mid, msg.qos, self._generation)
        )
        if not self._signalled and self._loop is not None and self._wake is not None:
            self._signalled = True
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop is closed: we are shutting down
                pass

    # -- asyncio side -----------------------------------------------------------------

    async def start(self, connect_timeout: float = 10.0) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._client.connect_async(self.url.host, self.url.port, keepalive=self._keepalive)
        self._client.loop_start()
        ok = await asyncio.to_thread(self._subscribed.wait, connect_timeout)
        if not ok:
            await self.stop()
            reason = self._connect_error or f"not subscribed within {connect_timeout:.0f} s"
            raise BrokerConnectError(self.url.safe(), reason)

    async def next_batch(self, max_items: int) -> list[Received]:
        """Wait for at least one message; return up to ``max_items`` in arrival order."""
        assert self._wake is not None, "start() first"
        while not self._pending:
            self._wake.clear()
            self._signalled = False
            if self._pending:
                break
            await self._wake.wait()
        out: list[Received] = []
        pending = self._pending
        while pending and len(out) < max_items:
            out.append(pending.popleft())
        return out

    def ack(self, item: Received) -> None:
        if item.qos > 0 and item.generation == self._generation:
            self._client.ack(item.mid, item.qos)

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        self._client.publish(topic, payload, qos=qos)

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    @property
    def backlog(self) -> int:
        return len(self._pending)

    async def stop(self) -> None:
        try:
            self._client.disconnect()
        except Exception as exc:  # already gone
            log.debug("event=mqtt_disconnect_error error=%r", exc)
        await asyncio.to_thread(self._client.loop_stop)
