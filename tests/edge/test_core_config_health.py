"""Settings from file + environment, the health endpoint and the status CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kickstand.edge.core.config import EdgeSettings
from kickstand.edge.core.errors import ConfigError
from kickstand.edge.core.health import HealthServer, fetch_status, main, render
from kickstand.edge.station.config import StationSettings


def test_file_then_environment_then_kwargs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text('device_id = "st-0042"\nspots = 12\nmqtt_url = "mqtt://u:p%40ss@broker:1884"\n')
    monkeypatch.setenv("KICKSTAND_SPOTS", "14")
    s = StationSettings.load(toml)
    assert (s.device_id, s.spots) == ("st-0042", 14)  # env beats file
    link = s.link_config()
    assert (link.host, link.port, link.username, link.password) == ("broker", 1884, "u", "p@ss")
    assert StationSettings.load(toml, spots=3).spots == 3  # kwargs beat env
    yml = tmp_path / "s.yaml"
    yml.write_text("device_id: st-0043\nunlock_window_s: 45\n")
    monkeypatch.delenv("KICKSTAND_SPOTS")
    assert StationSettings.load(yml).unlock_window_s == 45


def test_bad_settings_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('device_id = "not a device"\n')
    with pytest.raises(ConfigError):
        EdgeSettings.load(bad)
    bad.write_text("device_id = \n")
    with pytest.raises(ConfigError):
        EdgeSettings.load(bad)
    with pytest.raises(ConfigError):
        EdgeSettings.load(tmp_path / "missing.toml")
    with pytest.raises(ConfigError):
        EdgeSettings.load(None, device_id="st-0001", command_keys=["zz"]).trusted_keys()


async def test_health_endpoint_and_cli(capsys: pytest.CaptureFixture[str]) -> None:
    server = HealthServer(lambda: {"device_id": "st-0001", "queue": {"depth": 3},
                                   "spots": [{"spot": 1, "state": "EMPTY"}]})
    await server.start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        status = await asyncio.to_thread(fetch_status, url)
        assert status["queue"]["depth"] == 3
        assert await asyncio.to_thread(main, [url]) == 0
        out = capsys.readouterr().out
        assert "depth: 3" in out and "spot=1, state=EMPTY" in out
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"\x00\xffgarbage\r\n\r\n")
        await writer.drain()
        assert b"405" in await reader.read()
        writer.close()
    finally:
        await server.stop()
    assert await asyncio.to_thread(main, [f"http://127.0.0.1:{server.port}"]) == 2
    assert "depth" in render({"queue": {"depth": 1}})
