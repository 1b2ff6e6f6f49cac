"""A GBFS build does its Python work beside the API's event loop (issue 19: building
``vehicle_status`` for 10,000 vehicles held the loop ~1 s every ttl, every other request of
the process waiting). The figures are ``benchmarks/feeds.py``'s (its ``loop`` line); here,
the rule: rows turned into objects, station states computed, entries composed and the
document serialised, none of it on the loop's thread. PostgreSQL, the seeded city."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from kickstand.cloud.feeds import cache, repository
from kickstand.cloud.feeds.gbfs import service
from tests.cloud.feeds.conftest import SYSTEM, City

pytestmark = pytest.mark.postgres


def _recording(seen: dict[str, set[int]], name: str, function: Callable[..., Any]) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        seen.setdefault(name, set()).add(threading.get_ident())
        return function(*args, **kwargs)

    return wrapper


async def test_the_status_feeds_are_built_beside_the_event_loop(
    city: City, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, set[int]] = {}
    for module, name in (
        (repository, "_vehicle_row"),
        (repository, "_station_row"),
        (service, "station_states"),
        (service, "public_vehicle_id"),
        (cache, "_dumps"),
    ):
        monkeypatch.setattr(module, name, _recording(seen, name, getattr(module, name)))
    loop_thread = threading.get_ident()
    for name in ("station_status", "vehicle_status"):
        document = await city.get_json(f"{SYSTEM}{name}.json")
        assert document["data"], name
    assert set(seen) == {
        "_vehicle_row",
        "_station_row",
        "station_states",
        "public_vehicle_id",
        "_dumps",
    }
    on_loop = sorted(name for name, threads in seen.items() if loop_thread in threads)
    assert on_loop == [], f"run on the event loop's thread: {on_loop}"


async def test_vehicles_read_in_slices_are_all_published(
    city: City, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = await city.get_json(f"{SYSTEM}vehicle_status.json")
    monkeypatch.setattr(repository, "VEHICLES_PER_READ", 5)  # 16 vehicles: 4 statements
    city.fresh()
    sliced = await city.get_json(f"{SYSTEM}vehicle_status.json")
    assert len(sliced["data"]["vehicles"]) == len(whole["data"]["vehicles"]) == 16
    assert sliced["data"] == whole["data"]
