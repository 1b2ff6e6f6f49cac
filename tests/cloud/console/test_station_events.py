"""A station's recent events from history: ``GET /v1/dashboard/stations/{station_id}/events``
(its own, its spots' and its mainboard's outbox rows, newest first, keyset pages) and the
console's station page listing them before any live event arrives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.models import OutboxEvent, Spot, Station
from kickstand.cloud.seed import DemoRefs
from tests.cloud.conftest import demo_refs

OPERATOR = "operator@example.com"


class Api:
    def __init__(
        self, client: httpx.AsyncClient, maker: async_sessionmaker[AsyncSession], demo: DemoRefs
    ) -> None:
        self.client, self.maker, self.demo = client, maker, demo

    async def headers(self, email: str = OPERATOR) -> dict[str, str]:
        r = await self.client.post(
            "/v1/auth/login", json={"email": email, "password": self.demo.passwords[email]}
        )
        return {"Authorization": f"Bearer {r.json()['data']['token']}"}


@pytest.fixture
async def api(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings(
        DATABASE_URL=sqlite_url, VAR_DIR=tmp_path / "var", JWT_SECRET="events-" + "x" * 40
    )
    engine = create_engine(sqlite_url)
    app = create_app(settings, engine=engine)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://kickstand.test"
    ) as client:
        yield Api(client, create_sessionmaker(engine), demo_refs(sqlite_url))
    await engine.dispose()


def row(topic: str, kind: str, key: str, at: datetime, **payload: Any) -> OutboxEvent:
    # Rows as the outbox holds them (the test reads history; the emitters are tested
    # with the catalogue).
    return OutboxEvent(
        topic=topic, resource_type=kind, resource_id=key, payload=payload, created_at=at,
        published_at=at,
    )  # fmt: skip


async def test_history_of_a_station_in_keyset_pages_and_on_its_page(api: Api) -> None:
    t0 = datetime.now(UTC) - timedelta(days=3)  # long before the page opens
    async with api.maker() as s:
        mine = await s.scalar(select(Station).where(Station.device_id == "st-0001"))
        other = await s.scalar(select(Station).where(Station.device_id == "st-0002"))
        assert mine is not None and other is not None
        spots = (await s.scalars(select(Spot).where(Spot.station_id == mine.id))).all()
        theirs = (await s.scalars(select(Spot.id).where(Spot.station_id == other.id))).all()
        for i in range(60):
            spot = spots[i % len(spots)]
            at = t0 + timedelta(minutes=i)
            number = spot.displayed_number
            s.add(row("dock.updated", "spot", str(spot.id), at, displayed_number=number,
                      state="free", station_id=mine.id))  # fmt: skip
        for i in range(5):
            s.add(row("device.event", "device", "st-0001", t0 + timedelta(minutes=i, seconds=5),
                      event="badge_read", device_id="st-0001"))  # fmt: skip
        s.add(row("station.updated", "station", str(mine.id), t0, station_id=mine.id))
        for spot_id in theirs:
            s.add(row("dock.updated", "spot", str(spot_id), t0, station_id=other.id))
        s.add(row("device.event", "device", "st-0002", t0, event="badge_read"))
        await s.commit()
        keys = [("station", str(mine.id)), ("device", "st-0001")]
        keys += [("spot", str(spot.id)) for spot in spots]
        expected = (
            await s.scalars(
                select(OutboxEvent.id)
                .where(
                    or_(
                        *(
                            (OutboxEvent.resource_type == k) & (OutboxEvent.resource_id == v)
                            for k, v in keys
                        )
                    )
                )
                .order_by(OutboxEvent.id.desc())
            )
        ).all()
    assert len(expected) >= 66

    h = await api.headers()
    url = f"/v1/dashboard/stations/{mine.id}/events"
    seen: list[int] = []
    params: dict[str, Any] = {"page_size": 50}
    while True:
        r = await api.client.get(url, headers=h, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["data"]) <= 50
        seen += [e["event_id"] for e in body["data"]]
        if body["next_primary_key"] is None:
            break
        params["last_primary_key"] = body["next_primary_key"]
    assert seen == list(expected), "every event of the station, newest first, none twice"
    first = (await api.client.get(url, headers=h, params={"page_size": 10})).json()["data"]
    assert {e["resource_type"] for e in first} <= {"station", "spot", "device"}
    assert all(e["data"].get("station_id") in (None, mine.id) for e in first)
    oldest = await api.client.get(
        url, headers=h, params={"page_size": 10, "primary_key_dir": "ASC"}
    )
    assert [e["event_id"] for e in oldest.json()["data"]] == sorted(expected)[:10]

    r = await api.client.get("/v1/dashboard/stations/999999/events", headers=h)
    assert r.status_code == 404
    r = await api.client.get(url, headers=await api.headers("alice@example.com"))
    assert r.status_code == 403

    # The console's station page lists the last ones from history, not "none since opened".
    email = OPERATOR
    r = await api.client.post(
        "/console/login",
        data={"email": email, "password": api.demo.passwords[email], "next": "/console/"},
    )
    assert r.status_code == 303, r.text
    page = await api.client.get(f"/console/stations/{mine.id}")
    assert page.status_code == 200, page.text
    log = page.text.split('id="event-log"', 1)[1].split("</ol>", 1)[0]
    assert log.count("<li>") == 50
    assert "dock.updated · #" in log and "→ free" in log
    assert "device.event · badge_read" in log  # the mainboard's own reports too
