"""InfluxV1Writer against the real InfluxDB 1.6: outages, stalls, bad points, a
full buffer, a restart of the writer itself."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kickstand.cloud.config import Settings
from kickstand.cloud.telemetry import (
    InfluxTelemetryStore,
    InfluxV1Writer,
    LocalTelemetryStore,
    Point,
    SpoolLockedError,
    TelemetryStore,
    VehiclePosition,
    WriterClosedError,
    telemetry_store_from_settings,
)
from kickstand.testing import InfluxService

T0 = 1_780_000_000_000_000_000


def position(i: int, vehicle: str = "AB12345") -> VehiclePosition:
    # Distinct timestamps: InfluxDB keeps one point per series and instant.
    return VehiclePosition(vehicle, 45.0 + i * 1e-6, 4.8, T0 + i * 1_000_000, network="5")


def writer(url: str, database: str, spool: Path, **options: Any) -> InfluxV1Writer:
    settings: dict[str, Any] = dict(
        batch_size=200, flush_interval=0.05, timeout=2.0, backoff_initial=0.05,
        backoff_max=0.4, close_timeout=3.0,
    )
    settings.update(options)
    return InfluxV1Writer(url, database, spool_dir=spool, **settings)


async def stored_times(w: InfluxV1Writer, measurement: str = "vehicle_position") -> list[int]:
    (result,) = await w.query(f"SELECT lat FROM {measurement}")
    return [row[0] for series in result.get("series", []) for row in series["values"]]


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_influx_restart_mid_stream_loses_nothing(influx_private: InfluxService,
                                                       tmp_path: Path, how: str) -> None:
    total, chunk = 3_000, 50
    async with writer(influx_private.url, influx_private.database, tmp_path) as w:
        for n in range(total // chunk):
            if n == 20:  # a graceful stop, or a crash
                await asyncio.to_thread(getattr(influx_private, how))
            if n == 40:
                await asyncio.to_thread(influx_private.start)
            for i in range(n * chunk, (n + 1) * chunk):
                w.write(position(i))
            await asyncio.sleep(0.01)
        async with asyncio.timeout(30):
            await w.drain()
        stats = w.stats
        times = await stored_times(w)
    assert sorted(times) == [T0 + i * 1_000_000 for i in range(total)]  # none lost, none twice
    assert stats.spooled > 0 and stats.retried > 0
    assert stats.written >= total
    assert stats.quarantined == stats.dropped == 0
    assert stats.spool_pending == stats.buffered == 0


async def test_stalled_influx_times_out_into_the_spool(influx_private: InfluxService,
                                                       tmp_path: Path) -> None:
    async with writer(influx_private.url, influx_private.database, tmp_path, timeout=0.3) as w:
        influx_private.pause()
        try:
            for i in range(500):
                w.write(position(i))
            started = time.monotonic()
            await w.flush()  # gives up after the request timeout, spools the batches
            assert time.monotonic() - started < 2.0
            assert not w.healthy
            assert w.stats.spool_pending == 500
        finally:
            influx_private.resume()
        async with asyncio.timeout(20):
            await w.drain()
        assert len(await stored_times(w)) == 500
        assert w.healthy


async def test_full_buffer_spools_instead_of_blocking(influx_private: InfluxService,
                                                      tmp_path: Path) -> None:
    total = 20_000
    async with writer(influx_private.url, influx_private.database, tmp_path,
                      batch_size=500, max_buffer=1_000) as w:
        await asyncio.to_thread(influx_private.stop)
        # write() is synchronous: the loop never yields, so the event loop cannot have
        # sent anything; what does not fit the buffer must be on disk (no timing asserted:
        # the counts prove it never waited on the stopped server).
        for i in range(total):
            w.write(position(i))
        stats = w.stats
        # Nothing awaited: the loop never yielded, so the overflow went to disk.
        assert stats.buffered == 1_000
        assert stats.spooled == total - 1_000
        assert stats.dropped == 0
        await asyncio.to_thread(influx_private.start)
        async with asyncio.timeout(30):
            await w.drain()
        assert len(await stored_times(w)) == total


async def test_bad_point_is_quarantined_and_good_ones_go_through(
    influx: InfluxService, influx_fresh: str, tmp_path: Path
) -> None:
    async with writer(influx.url, influx_fresh, tmp_path, batch_size=1_000) as w:
        for i in range(50):
            w.write(position(i))
        # Same series and field as the good points, but a string: InfluxDB refuses it.
        bad = Point("vehicle_position", {"vehicle": "AB12345", "network": "5"},
                    {"lat": "not a number", "lon": 4.8}, T0 + 999_999_999)
        w.write(bad)
        for i in range(50, 100):
            w.write(position(i))
        async with asyncio.timeout(10):
            await w.drain()
        stats = w.stats
        times = await stored_times(w)
        quarantined = w.spool.quarantined_files()
    assert sorted(times) == [T0 + i * 1_000_000 for i in range(100)]
    assert stats.quarantined == 1
    assert stats.written == 100
    (path,) = quarantined
    assert path.read_text().strip().endswith(str(T0 + 999_999_999))
    assert "field type conflict" in path.with_suffix(".reason").read_text()
    assert stats.spool_pending == 0


async def test_spool_left_on_disk_is_sent_by_the_next_writer(influx_private: InfluxService,
                                                             tmp_path: Path) -> None:
    await asyncio.to_thread(influx_private.stop)
    first = writer(influx_private.url, influx_private.database, tmp_path, close_timeout=0.5)
    async with first:
        for i in range(500):
            first.write(position(i))
        started = time.monotonic()
    assert time.monotonic() - started < 3.0  # close() does not hang on a dead InfluxDB
    assert first.stats.spool_pending == 500
    with pytest.raises(WriterClosedError):
        first.write(position(501))

    await asyncio.to_thread(influx_private.start)
    async with writer(influx_private.url, influx_private.database, tmp_path) as second:
        assert second.stats.spool_pending == 500
        async with asyncio.timeout(10):
            await second.drain()
        assert len(await stored_times(second)) == 500
        assert second.stats.retried == 500


async def test_close_flushes_the_buffer(influx: InfluxService, influx_fresh: str,
                                        tmp_path: Path) -> None:
    async with writer(influx.url, influx_fresh, tmp_path, flush_interval=60.0) as w:
        for i in range(123):
            w.write(position(i))
    async with writer(influx.url, influx_fresh, tmp_path) as reader:
        assert len(await stored_times(reader)) == 123
    assert not any(tmp_path.glob("*.lp"))


# ---------------------------------------------------------------- unit, fake server


async def test_status_handling_with_a_fake_server(tmp_path: Path) -> None:
    """429/503/401 are retried later; 400 is split down to the refused line."""
    answers = [429, 503, 401]
    bodies: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/write"
        assert request.url.params["db"] == "db1"
        assert request.url.params["rp"] == "autogen"
        assert request.headers["Authorization"] == "Token s3cret"
        lines = request.content.decode().splitlines()
        bodies.append(lines)
        if answers:
            return httpx.Response(answers.pop(0), json={"error": "busy"})
        if any("bad" in line for line in lines):
            return httpx.Response(400, json={"error": "unable to parse"})
        return httpx.Response(204)

    w = InfluxV1Writer("http://influx.invalid:8086", "db1", spool_dir=tmp_path,
                       retention_policy="autogen", token="s3cret", batch_size=10,
                       backoff_initial=0.01, backoff_max=0.02,
                       transport=httpx.MockTransport(handler))
    async with w:
        for i in range(7):
            w.write(Point("m", {"t": "bad" if i == 3 else "ok"}, {"v": 1.0}, i))
        async with asyncio.timeout(5):
            await w.drain()
        stats = w.stats
    assert stats.written == 6 and stats.quarantined == 1
    # Three busy answers; then 400 for [0:7], [3:7], [3:5], [3:4] while splitting.
    assert stats.failed_requests == 3 + 4
    assert stats.spooled == 7 and stats.retried == 7
    assert [len(b) for b in bodies[:3]] == [7, 7, 7]


async def test_one_writer_per_spool_directory(tmp_path: Path) -> None:
    def fake(request: httpx.Request) -> httpx.Response:
        return httpx.Response(204)

    first = InfluxV1Writer("http://influx.invalid", "db", spool_dir=tmp_path,
                           transport=httpx.MockTransport(fake))
    second = InfluxV1Writer("http://influx.invalid", "db", spool_dir=tmp_path,
                            transport=httpx.MockTransport(fake))
    async with first:
        with pytest.raises(SpoolLockedError) as info:
            await second.start()
        assert info.value.directory == str(tmp_path)
    async with second:  # released by close()
        second.write(position(1))
        await second.drain()
        assert second.stats.written == 1


def test_store_from_settings_without_influx_is_local(tmp_path: Path) -> None:
    settings = Settings(VAR_DIR=tmp_path, INFLUX_URL=None)
    store = telemetry_store_from_settings(settings)
    assert isinstance(store, LocalTelemetryStore)
    assert store.path == str(tmp_path / "telemetry.sqlite3")
    influx_settings = Settings(VAR_DIR=tmp_path, INFLUX_URL="http://127.0.0.1:1",
                               INFLUX_USERNAME="u", INFLUX_PASSWORD="p")
    remote = telemetry_store_from_settings(influx_settings, name="ingest-2")
    assert isinstance(remote, InfluxTelemetryStore)
    assert remote.writer.spool.directory == tmp_path / "telemetry-spool" / "ingest-2"
    assert isinstance(remote, TelemetryStore) and isinstance(store, TelemetryStore)


async def test_auth_with_username_and_password(tmp_path: Path) -> None:
    with InfluxService(auth=True) as secured:
        assert secured.username and secured.password
        async with writer(secured.url, secured.database, tmp_path / "bad",
                          username=secured.username, password="wrong") as refused:
            refused.write(position(1))
            await refused.flush()
            # A refused login is a configuration problem, not a bad point: kept, retried.
            assert refused.stats.spool_pending == 1 and refused.stats.quarantined == 0
        async with writer(secured.url, secured.database, tmp_path / "good",
                          username=secured.username, password=secured.password) as w:
            for i in range(10):
                w.write(position(i))
            async with asyncio.timeout(10):
                await w.drain()
            assert len(await stored_times(w)) == 10
