"""`open_telemetry_store`: InfluxDB when a URL is configured, else the local store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kickstand.cloud.telemetry.influx_store import InfluxTelemetryStore
from kickstand.cloud.telemetry.local import LocalTelemetryStore
from kickstand.cloud.telemetry.store import TelemetryStore
from kickstand.cloud.telemetry.writer import InfluxV1Writer

if TYPE_CHECKING:
    from kickstand.cloud.config import Settings


def open_telemetry_store(
    influx_url: str | None,
    database: str,
    username: str | None = None,
    password: str | None = None,
    spool_dir: str | os.PathLike[str] = "var/telemetry-spool",
    local_path: str | os.PathLike[str] = "var/telemetry.sqlite3",
    *,
    token: str | None = None,
    **writer_options: Any,
) -> TelemetryStore:
    """A not-yet-started store: use it as `async with open_telemetry_store(...) as s:`.

    With `influx_url` (e.g. from `INFLUX_URL`): InfluxDB over its v1-compatible API,
    spooling to `spool_dir`; `writer_options` go to `InfluxV1Writer` (batch_size,
    flush_interval, max_buffer, timeout, retention_policy, precision,
    create_database...). Without: the SQLite file at `local_path`.
    """
    if influx_url:
        writer = InfluxV1Writer(
            influx_url,
            database,
            spool_dir=spool_dir,
            username=username,
            password=password,
            token=token,
            **writer_options,
        )
        return InfluxTelemetryStore(writer)
    local_options = {
        k: v for k, v in writer_options.items()
        if k in ("batch_size", "flush_interval", "max_buffer")
    }
    return LocalTelemetryStore(local_path, **local_options)


def telemetry_store_from_settings(settings: Settings, *, name: str = "main") -> TelemetryStore:
    """The store the cloud settings describe (`INFLUX_URL`, `INFLUX_DATABASE`,
    `INFLUX_USERNAME`, `INFLUX_PASSWORD`, `VAR_DIR`). `name` picks the spool
    directory: each process writing telemetry needs its own (e.g. "ingest-1")."""
    var_dir = Path(settings.VAR_DIR)
    return open_telemetry_store(
        settings.INFLUX_URL,
        settings.INFLUX_DATABASE,
        settings.INFLUX_USERNAME,
        settings.INFLUX_PASSWORD,
        spool_dir=var_dir / "telemetry-spool" / name,
        local_path=var_dir / "telemetry.sqlite3",
    )


__all__ = ["open_telemetry_store", "telemetry_store_from_settings"]
