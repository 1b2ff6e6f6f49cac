"""Prometheus export: counters read at scrape time, the API's /metrics and its token."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from kickstand.cloud import metrics
from kickstand.cloud.api import create_app
from kickstand.cloud.api.errors import ErrorCode
from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine


@dataclass
class _Stats:
    received: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    by_channel: Counter[str] = field(default_factory=Counter)
    lag_s: float = 0.0
    subscribed: bool = True  # not a number: not exported


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_registered_stats_are_read_at_every_scrape() -> None:
    stats = _Stats()
    metrics.register("testpart", "w-1", stats)
    try:
        stats.received = 7
        stats.rejected["bad-topic"] += 3
        stats.by_channel["evt"] += 5
        stats.lag_s = 0.25
        got = _samples(metrics.render().decode())
        assert got[("kickstand_testpart_received_total", (("worker", "w-1"),))] == 7
        assert (
            got[("kickstand_testpart_rejected_total", (("reason", "bad-topic"), ("worker", "w-1")))]
            == 3
        )
        assert (
            got[("kickstand_testpart_by_channel_total", (("channel", "evt"), ("worker", "w-1")))]
            == 5
        )
        assert got[("kickstand_testpart_lag_s", (("worker", "w-1"),))] == 0.25
        assert not any(name.startswith("kickstand_testpart_subscribed") for name, _ in got)
        stats.received = 9  # read afresh, not copied at registration
        got = _samples(metrics.render().decode())
        assert got[("kickstand_testpart_received_total", (("worker", "w-1"),))] == 9
    finally:
        metrics.unregister("testpart", "w-1")
    assert "kickstand_testpart" not in metrics.render().decode()


async def test_api_serves_metrics_behind_its_token(sqlite_url: str, tmp_path: Path) -> None:
    settings = Settings(
        DATABASE_URL=sqlite_url,
        VAR_DIR=tmp_path / "var",
        JWT_SECRET="test-secret-" + "x" * 40,
        METRICS_TOKEN="scrape-" + "y" * 20,
    )
    engine = create_engine(sqlite_url)
    app = create_app(settings, engine=engine)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://k.test") as client:
            assert (await client.get("/health")).status_code == 200
            for given in ({}, {"Authorization": "Bearer nope"}):
                refused = await client.get("/metrics", headers=given)
                # The API's one error envelope, not a bare 401.
                assert refused.status_code == 401, refused.text
                assert (
                    refused.json()["code"] == ErrorCode.UNAUTHENTICATED
                    and refused.json()["message"]
                )
                assert refused.headers["www-authenticate"] == "Bearer"
            ok = await client.get(
                "/metrics", headers={"Authorization": f"Bearer {settings.METRICS_TOKEN}"}
            )
            assert ok.status_code == 200
            assert ok.headers["content-type"].startswith("text/plain")
            got = _samples(ok.text)
            key = (
                "kickstand_api_requests_total",
                (("method", "GET"), ("route", "/health"), ("status", "200")),
            )
            assert got[key] >= 1
    finally:
        await engine.dispose()
