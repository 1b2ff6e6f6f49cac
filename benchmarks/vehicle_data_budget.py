"""MQTT bytes per vehicle per day, CBOR (protocol v1) against the same traffic as JSON.

    .venv/bin/python benchmarks/vehicle_data_budget.py

Reference duty cycle: 1 h riding (in 4 trips of 15 min) with a position every
``riding_interval_s``, 23 h parked with a heartbeat every ``min_heartbeat_s`` and
a position every ``parked_interval_s`` — the vehicle agent's own defaults
(kickstand.edge.vehicle.VehicleSettings). Per trip: an Unlock command and its
result, Unlocked / ChainRemoved / ChainInserted / Locked events with their status
and position, two speed-zone SetSpeedLimit commands; per day: a few badge, PIN,
motion and battery events, MQTT reconnects with birth and boot reply.

Counted in both directions, MQTT 3.1.1 on the wire: every PUBLISH's fixed header,
topic, packet id (QoS 1) and payload, the PUBACK of every QoS-1 publish, PINGREQ /
PINGRESP when the link is idle for a keepalive, CONNECT / CONNACK / SUBSCRIBE /
SUBACK per reconnect. Payloads are the real encoded messages (codec.encode_up,
encode_down, CommandSigner.sign). TCP/IP and TLS overheads are not counted (they
are the same for both encodings; TLS session resumption keeps them small).

Target: <= 100 KB/day. Last line: ``vehicle bytes/day: N (json: M)``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import secrets
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _messages import as_json, plain  # the JSON baseline of the benchmarks

from kickstand.cloud.config import Settings
from kickstand.edge.vehicle.config import VehicleSettings
from kickstand.protocol import topics
from kickstand.protocol.signing import CommandSigner, generate_private_key
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import (
    BatteryKind,
    BootStatus,
    ChainType,
    DeviceKind,
    DeviceState,
    LockCause,
    LockState,
    MotionKind,
    ResultStatus,
)

SERIAL = "BK123456"
DEVICE = f"vh-{SERIAL}"
DAY_S = 86_400
RIDING_S = 3_600
TRIPS = 4
RECONNECTS = 4  # cell handovers, modem sleeps: a new MQTT session 4 times a day
DAY_START_MS = 1_795_276_800_000
TARGET = 100 * 1024
#: How long ingest merges a device's Acks (the cloud's default setting).
ACK_DELAY_S: float = Settings.model_fields["ACK_DELAY_S"].default


def publish_bytes(topic: str, payload: int, qos: int) -> int:
    remaining = 2 + len(topic.encode()) + (2 if qos else 0) + payload
    return 1 + _varint_len(remaining) + remaining


def _varint_len(n: int) -> int:
    return 1 if n < 128 else 2 if n < 16_384 else 3 if n < 2_097_152 else 4


def packet_bytes(remaining: int) -> int:
    return 1 + _varint_len(remaining) + remaining


PUBACK = 4
PING = 2 + 2  # PINGREQ + PINGRESP


# ------------------------------------------------------------------ JSON baseline


def json_down(body: m.BootReply | m.TimeReply) -> bytes:
    return json.dumps(plain(body), separators=(",", ":")).encode()


def json_command(envelope: m.CommandEnvelope, signer: CommandSigner) -> bytes:
    """A JWS-like JSON command: the envelope, the key id and an Ed25519 signature."""
    doc = plain(envelope)
    doc["command"] = {"type": type(envelope.command).__name__, **plain(envelope.command)}
    doc["kid"] = signer.kid.hex()
    doc["sig"] = base64.urlsafe_b64encode(secrets.token_bytes(64)).decode().rstrip("=")
    return json.dumps(doc, separators=(",", ":")).encode()


# ------------------------------------------------------------------ the day


@dataclasses.dataclass(slots=True)
class Tally:
    up: int = 0
    down: int = 0
    by_kind: Counter[str] = dataclasses.field(default_factory=Counter)
    count: Counter[str] = dataclasses.field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.up + self.down


class Day:
    """Replays the duty cycle, pricing every packet in CBOR and in JSON."""

    def __init__(self, settings: VehicleSettings) -> None:
        self.s = settings
        self.signer = CommandSigner(generate_private_key())
        self.boot_id = 3_141_592_653
        self.seq = 0
        self.cbor = Tally()
        self.json = Tally()
        self.client_sends: list[float] = []  # times of device -> broker packets (keepalive)
        self.sequenced: list[tuple[float, int]] = []  # (time, seq): what the cloud Acks
        self.vae = 76.0
        self.internal = 88.0
        self.sent_battery: dict[str, int] = {}

    def _stamp(self, t: float, sequenced: bool) -> m.Stamp:
        if sequenced:
            self.seq += 1
        return m.Stamp(self.boot_id, self.seq if sequenced else 0, DAY_START_MS + int(t * 1000))

    def up(self, t: float, body: m.UpBody, label: str | None = None) -> None:
        channel = codec.channel_of(body)
        sequenced = channel in codec.SEQUENCED_CHANNELS
        stamp = self._stamp(t, sequenced)
        if sequenced:
            self.sequenced.append((t, stamp.seq))
        topic = topics.up(DEVICE, channel)
        qos = 0 if channel is Channel.HEARTBEAT else 1
        label = label or (type(body).__name__ if channel is not Channel.EVENT else "events")
        for tally, payload in (
            (self.cbor, codec.encode_up(stamp, body)),
            (self.json, as_json(stamp, body)),
        ):
            n = publish_bytes(topic, len(payload), qos)
            tally.up += n
            tally.down += PUBACK if qos else 0
            tally.by_kind[label] += n + (PUBACK if qos else 0)
            tally.count[label] += 1
        self.client_sends.append(t)

    def down(self, t: float, body: m.BootReply | m.TimeReply | m.Ack) -> None:
        channel = codec.channel_of(body)
        qos = 1 if channel is Channel.BOOT else 0
        topic = topics.down(DEVICE, channel)
        for tally, payload in ((self.cbor, codec.encode_down(body)), (self.json, json_down(body))):
            n = publish_bytes(topic, len(payload), qos)
            tally.down += n
            tally.up += PUBACK if qos else 0
            tally.by_kind[type(body).__name__] += n + (PUBACK if qos else 0)
            tally.count[type(body).__name__] += 1
        if qos:
            self.client_sends.append(t)

    def command(self, t: float, command: m.CommandBody, detail: str | None = None) -> None:
        issued = DAY_START_MS + int(t * 1000)
        env = m.CommandEnvelope(secrets.token_bytes(16), DEVICE, issued, issued + 30_000, command)
        topic = topics.down(DEVICE, Channel.COMMAND)
        for tally, payload in (
            (self.cbor, self.signer.sign(env)),
            (self.json, json_command(env, self.signer)),
        ):
            n = publish_bytes(topic, len(payload), 1)
            tally.down += n
            tally.up += PUBACK
            tally.by_kind["commands"] += n + PUBACK
            tally.count["commands"] += 1
        self.client_sends.append(t)
        self.up(
            t + 0.2,
            m.CommandResult(env.command_id, ResultStatus.DONE, None, detail),
            "CommandResult",
        )

    def session(self, t: float) -> None:
        """A new MQTT session: CONNECT (with the Will), CONNACK, SUBSCRIBE, SUBACK, birth."""
        will_topic = topics.up(DEVICE, Channel.DEATH)
        death = codec.encode_up(m.Stamp(self.boot_id, 0, DAY_START_MS), m.Death())
        death_json = as_json(m.Stamp(self.boot_id, 0, DAY_START_MS), m.Death())
        sub_filter = topics.device_subscriptions(DEVICE)
        for tally, will in ((self.cbor, death), (self.json, death_json)):
            connect = packet_bytes(10 + 2 + len(DEVICE) + 2 + len(will_topic) + 2 + len(will))
            subscribe = packet_bytes(2 + 2 + len(sub_filter) + 1)
            tally.up += connect + subscribe
            tally.down += 4 + 5  # CONNACK, SUBACK
            tally.by_kind["mqtt session"] += connect + subscribe + 9
        self.client_sends.append(t)
        self.up(t + 0.1, self.birth(), "Birth")
        self.down(
            t + 0.3,
            m.BootReply(
                BootStatus.ACCEPTED,
                DAY_START_MS + int(t * 1000),
                self.s.min_heartbeat_s,
                self.boot_id,
            ),
        )

    def birth(self) -> m.Birth:
        s = self.s
        return m.Birth(
            kind=DeviceKind.VEHICLE,
            firmware=s.firmware,
            hardware=s.hardware,
            config_version=3,
            auth_list_version=12,
            inventory=(
                m.Component("lockbox", 0, "lb-2.4.1"),
                m.Component("gps", 0, ""),
                m.Component("bms", 0, ""),
                m.Component("nfc", 0, ""),
                m.Component("pinpad", 0, ""),
                m.Component("motion", 0, ""),
            ),
            pending_from=self.seq + 1,
            serial_number=SERIAL,
        )

    def telemetry(
        self, t: float, lat: float, lon: float, speed: float, heading: float, parked: bool
    ) -> None:
        """What VehicleAgent.telemetry() sends: the fix, batteries when changed / parked."""
        fields: dict[str, Any] = {
            "lat": round(lat, 6),
            "lon": round(lon, 6),
            "speed_kmh": round(speed, 1),
            "heading_deg": round(heading) % 360,
            "hdop": 0.9,
        }
        for name, level in (("battery_pct", round(self.internal)), ("vae_pct", round(self.vae))):
            if parked or self.sent_battery.get(name) != level:
                self.sent_battery[name] = level
                fields[name] = level
                if name == "vae_pct":
                    fields["vae_mv"] = int(30_000 + 120 * self.vae)
        self.up(t, m.Telemetry(**fields), "Telemetry " + ("parked" if parked else "riding"))

    def status(self, t: float, state: DeviceState, lock: LockState) -> None:
        self.up(t, m.Status(0, state, lock, SERIAL, None, round(self.vae)), "Status")

    def acks(self) -> None:
        """The cloud's end-to-end Acks (SPEC §4.6), merged over ingest's ACK_DELAY_S."""
        for t, seqs in ack_times(self.sequenced, ACK_DELAY_S):
            self.down(t, m.Ack(tuple(codec.ack_ranges((self.boot_id, q) for q in seqs))))

    def run(self) -> None:
        s = self.s
        ride_s = RIDING_S / TRIPS
        trip_starts = [8 * 3600, 12.5 * 3600, 17.75 * 3600, 21 * 3600]
        lat, lon = 45.764043, 4.835659
        for i in range(RECONNECTS):
            self.session(i * DAY_S / RECONNECTS + 60)
        # parked: positions and heartbeats (the heartbeat runs all day on its own clock)
        t = 0.0
        while t < DAY_S:
            self.up(t, m.Heartbeat(), "Heartbeat")
            self.down(t + 0.2, m.TimeReply(DAY_START_MS + int(t * 1000), DAY_START_MS))
            t += max(s.min_heartbeat_s, 60)
        riding = [(a, a + ride_s) for a in trip_starts]
        t = 0.0
        while t < DAY_S:
            if not any(a <= t < b for a, b in riding):
                self.telemetry(t, lat, lon, 0.0, 0.0, parked=True)
            t += s.parked_interval_s
        uid = bytes.fromhex("04a1b2c3d4e5f6")
        for n, (a, b) in enumerate(riding):
            self.command(a, m.Unlock(0, 30, f"rent-{n:06d}"))
            self.up(a + 0.3, m.Unlocked(0, LockCause.COMMAND, secrets.token_bytes(16)))
            self.status(a + 0.3, DeviceState.UNLOCKED, LockState.OPEN)
            self.telemetry(a + 0.3, lat, lon, 0.0, 0.0, parked=True)
            self.up(a + 8, m.ChainRemoved())
            # the ride: a position every riding_interval_s, ~18 km/h, battery draining
            t = a + s.riding_interval_s
            heading = 70.0
            while t < b:
                step = 18 / 3.6 * s.riding_interval_s
                lat += step * math.cos(math.radians(heading)) / 111_195
                lon += (
                    step * math.sin(math.radians(heading)) / (111_195 * math.cos(math.radians(lat)))
                )
                heading = (heading + 7) % 360 if int(t) % 60 < 5 else heading
                self.vae -= 1.6 * step / 1000
                self.telemetry(t, lat, lon, 17.0 + (int(t) % 7) * 0.6, heading, parked=False)
                t += s.riding_interval_s
            self.command(a + ride_s / 3, m.SetSpeedLimit(20), "max 20 km/h")  # zone in
            self.command(a + ride_s * 2 / 3, m.SetSpeedLimit(25), "max 25 km/h")  # zone out
            self.up(b, m.ChainInserted(ChainType.STANDARD))
            self.up(b + 0.5, m.Locked(0, LockCause.MANUAL, None))
            self.status(b + 0.5, DeviceState.LOCKED, LockState.LOCKED)
            self.telemetry(b + 0.5, lat, lon, 0.0, 0.0, parked=True)
            if n == 1:
                self.up(b + 30, m.BadgePresented(uid, True, False))
        # a few more events on an ordinary day
        self.up(3 * 3600, m.Motion(MotionKind.ILLEGAL_MOVING))
        self.up(3 * 3600 + 40, m.Motion(MotionKind.LIFTED))
        self.up(14 * 3600, m.PinIncorrect(1))
        self.up(14 * 3600 + 9, m.PinEntered())
        self.up(20 * 3600, m.BatteryLow(BatteryKind.VAE, 19))
        self.command(23 * 3600, m.Config(4, {"parked_interval_s": 900.0}), "config 4")
        self.acks()
        # keepalive: a PINGREQ whenever the device sent nothing for keepalive_s
        sends = sorted(self.client_sends)
        pings = 0
        for prev, nxt in zip([0.0, *sends], [*sends, float(DAY_S)], strict=True):
            pings += int((nxt - prev) // s.keepalive_s)
        for tally in (self.cbor, self.json):
            tally.up += pings * 2
            tally.down += pings * 2
            tally.by_kind["keepalive"] += pings * PING
            tally.count["keepalive"] += pings


def ack_times(sequenced: list[tuple[float, int]], delay_s: float) -> list[tuple[float, list[int]]]:
    """When the cloud's Acks go out and what each covers: a device's keys wait from the
    first one's commit until it is ``delay_s`` old (ingest's AckBatcher, SPEC §4.6)."""
    acks: list[tuple[float, list[int]]] = []
    for t, seq in sorted(sequenced):
        if acks and t < acks[-1][0]:
            acks[-1][1].append(seq)
        else:
            acks.append((t + delay_s, [seq]))
    return acks


def json_ack(seqs: list[int], boot_id: int) -> bytes:
    ranges = [[r.boot_id, r.first, r.last] for r in codec.ack_ranges((boot_id, q) for q in seqs)]
    return json.dumps({"ranges": ranges}, separators=(",", ":")).encode()


def main() -> None:
    settings = VehicleSettings(device_id=DEVICE, serial_number=SERIAL)
    day = Day(settings)
    day.run()
    print(
        f"agent config: riding_interval_s={settings.riding_interval_s:g} "
        f"parked_interval_s={settings.parked_interval_s:g} "
        f"min_heartbeat_s={settings.min_heartbeat_s} keepalive_s={settings.keepalive_s}"
    )
    print(
        f"duty cycle: {RIDING_S // 60} min riding in {TRIPS} trips, "
        f"{(DAY_S - RIDING_S) // 3600} h parked, {RECONNECTS} MQTT sessions"
    )
    print(f"{'traffic':26} {'count':>6} {'cbor B':>8} {'json B':>8} {'ratio':>6}")
    for kind in sorted(day.cbor.by_kind, key=lambda k: -day.cbor.by_kind[k]):
        c, j = day.cbor.by_kind[kind], day.json.by_kind[kind]
        print(f"{kind:26} {day.cbor.count[kind]:>6} {c:>8} {j:>8} {c / j:>6.2f}")
    print(f"{'up (device -> broker)':26} {'':>6} {day.cbor.up:>8} {day.json.up:>8}")
    print(f"{'down (broker -> device)':26} {'':>6} {day.cbor.down:>8} {day.json.down:>8}")
    total, total_json = day.cbor.total, day.json.total
    verdict = "OK" if total <= TARGET else "OVER"
    print(
        f"target <= {TARGET} B/day: {verdict} ({total / 1024:.1f} KiB; JSON "
        f"{total_json / 1024:.1f} KiB, ratio {total / total_json:.2f})"
    )
    print(f"vehicle bytes/day: {total} (json: {total_json})")
    if total > TARGET:
        sys.exit(1)


if __name__ == "__main__":
    main()
