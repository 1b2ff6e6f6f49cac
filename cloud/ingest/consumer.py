"""The MQTT side of an ingest worker: paho-mqtt 2.x driven by the asyncio event loop.

Why paho (not aiomqtt): paho lets us send the PUBACK ourselves (``manual_ack``), after the
batch is committed. A worker that dies mid-batch leaves its messages unacknowledged: the
devices send them again (end-to-end Ack, SPEC §4.6), and the database dedupe makes that
replay harmless. Why in the event loop (paho's documented external-loop API: socket callbacks,
``loop_read``/``loop_write``/``loop_misc``), not on paho's thread: the work is CPU-bound
Python, so a second thread only adds GIL hand-offs and a wake-up syscall per PUBACK;
here acknowledgements queue up and go out in one write, and the socket is read whenever
the worker awaits the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from kickstand.cloud.broker import MqttUrl
from kickstand.cloud.ingest.errors import BrokerConnectError
from kickstand.protocol.transport import apply_socket_options

log = logging.getLogger("kickstand.cloud.ingest.consumer")


@dataclass(slots=True)
class Received:
    topic: str
    payload: bytes
    mid: int
    qos: int
    #: Connection generation it came on; a mid is only meaningful on that connection.
    generation: int
    #: When it was read from the socket, ms since the epoch (device time is bounded by it).
    received_ms: int = 0


class MqttConsumer:
    """Subscribe ``topic`` (QoS 1) and hand batches to asyncio (clean session by default:
    see :mod:`kickstand.cloud.ingest.worker` for why)."""

    #: Packets read per readiness callback at most (then the loop gets a turn).
    READ_BURST = 512

    def __init__(
        self,
        url: MqttUrl,
        client_id: str,
        topic: str,
        *,
        clean_session: bool = True,
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
        context = url.tls_context()  # mqtts:// (issue 17); None: plain
        if context is not None:
            self._client.tls_set_context(context)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_socket_open = self._on_socket_open
        self._client.on_socket_close = self._on_socket_close
        self._client.on_socket_register_write = self._on_register_write
        self._client.on_socket_unregister_write = self._on_unregister_write
        self._keepalive = keepalive
        self._pending: deque[Received] = deque()
        self._received = 0
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._generation = 0
        self._subscribed = False
        self._subscribed_event: asyncio.Event | None = None
        self._connect_error: str | None = None
        self._connected_once = False
        self._misc_task: asyncio.Task[None] | None = None
        self._closing = False
        self.connections = 0

    # -- paho callbacks (all on the event loop thread) ----------------------------------

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
        self._subscribed = True
        if self._subscribed_event is not None:
            self._subscribed_event.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._subscribed = False
        if self._subscribed_event is not None:
            self._subscribed_event.clear()
        log.warning("event=mqtt_disconnected client=%s reason=%s", self.client_id, reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now_ms = time.time_ns() // 1_000_000
        self._pending.append(
            Received(msg.topic, msg.payload, msg.mid, msg.qos, self._generation, now_ms)
        )
        self._received += 1
        if self._wake is not None:
            self._wake.set()

    def _on_socket_open(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        assert self._loop is not None
        apply_socket_options(sock)
        self._loop.add_reader(sock, self._on_readable)

    def _on_socket_close(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)

    def _on_register_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.add_writer(sock, self._client.loop_write)

    def _on_unregister_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_writer(sock)

    def _on_readable(self) -> None:
        # loop_read() reads one packet; read a burst while PUBLISHes keep coming.
        for _ in range(self.READ_BURST):
            before = self._received
            if self._client.loop_read() != mqtt.MQTT_ERR_SUCCESS or self._received == before:
                return

    # -- connection management ----------------------------------------------------------

    def _connect(self) -> bool:
        try:
            if self._connected_once:
                self._client.reconnect()
            else:
                self._connected_once = True  # connect() records the address, then connects
                self._client.connect(self.url.host, self.url.port, keepalive=self._keepalive)
        except (OSError, ValueError) as exc:
            self._connect_error = str(exc)
            log.warning("event=mqtt_connect_failed client=%s error=%s", self.client_id, exc)
            return False
        return True

    async def _misc_loop(self) -> None:
        """Keepalive pings, and reconnection with back-off when the link is gone."""
        delay = 1.0
        while not self._closing:
            await asyncio.sleep(1.0 if self._client.socket() is not None else delay)
            if self._closing:
                return
            if self._client.socket() is not None:
                self._client.loop_misc()
                delay = 1.0
                continue
            if not self._connect():
                delay = min(delay * 2, 10.0)

    # -- asyncio side -----------------------------------------------------------------

    async def start(self, connect_timeout: float = 10.0) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._subscribed_event = asyncio.Event()
        self._closing = False
        self._connect()  # a refused first connect is retried by the misc loop
        self._misc_task = asyncio.create_task(self._misc_loop(), name=f"mqtt:{self.client_id}")
        try:
            await asyncio.wait_for(self._subscribed_event.wait(), connect_timeout)
        except TimeoutError:
            await self.stop()
            reason = self._connect_error or f"not subscribed within {connect_timeout:.0f} s"
            raise BrokerConnectError(self.url.safe(), reason) from None

    async def next_batch(self, max_items: int) -> list[Received]:
        """Wait for at least one message; return up to ``max_items`` in arrival order."""
        assert self._wake is not None, "start() first"
        while not self._pending:
            self._wake.clear()
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
        return self._subscribed

    @property
    def backlog(self) -> int:
        return len(self._pending)

    async def stop(self) -> None:
        self._closing = True
        if self._misc_task is not None:
            self._misc_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._misc_task
            self._misc_task = None
        sock = self._client.socket()
        if sock is not None:
            self._client.disconnect()
            self._client.loop_write()  # send the DISCONNECT now; paho then closes the socket
            sock = self._client.socket()
            if sock is not None and self._loop is not None:
                self._loop.remove_reader(sock)
                self._loop.remove_writer(sock)
                with contextlib.suppress(OSError):
                    sock.close()
