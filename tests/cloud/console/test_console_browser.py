"""The operator console in a real headless browser (Debian's chromium + chromium-driver,
driven by Selenium), against the whole system on loopback (``tests/e2e/city.py``: the
harness's Mosquitto and PostgreSQL, ingest, the API under uvicorn, the REAL station agents
on simulated spot boards).

The journey: an operator logs in, sees the map with each seeded station its own marker and
the free-floating vehicles, watches st-0002's marker turn to alert live when its alarm input
fires, watches spot 1 of st-0001 empty live while a rider takes the bike (rent through
the rider API, removal at the simulated board, through the broker and ingest into the
outbox and the console's live feed), resolves the alert the station's alarm input raised,
puts spot 4 in maintenance (confirmed; the station is told), and unlocks spot 2 for a
technician (reason, confirmed; the latch opens at the simulated board, the bike taken
empties the spot live). A rider gets no console.
Screenshots of each page are kept in ``reports/console/``.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from selenium import webdriver
from selenium.common.exceptions import (
    ElementNotInteractableException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.alert import Alert
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select

from kickstand.cloud.models import Station
from kickstand.testing import MosquittoService, PostgresServer
from tests.e2e.city import City, seeded_city

pytestmark = [
    pytest.mark.slow,
    pytest.mark.mqtt,
    pytest.mark.postgres,
    pytest.mark.asyncio(loop_scope="module"),
]

OPERATOR = ("operator@example.com", "operator-demo-1")
RIDER = ("alice@example.com", "alice-demo-1")
SHOTS = Path(__file__).resolve().parents[3] / "reports" / "console"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def city(
    mosquitto: MosquittoService,
    pg_server: PostgresServer,
    pg_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[City]:
    async with seeded_city(
        mosquitto,
        pg_server,
        pg_template,
        tmp_path_factory.mktemp("console-city"),
        # The seed docks LY0001-3 at st-0001 spots 1-3 and LY0004-6 at st-0002 spots 1-3.
        stations={
            "st-0001": {1: "LY0001", 2: "LY0002", 3: "LY0003"},
            "st-0002": {1: "LY0004", 2: "LY0005", 3: "LY0006"},
        },
        unlock_window_s=10,
    ) as c:
        yield c


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromium-driver are missing: testing/ensure-system-packages")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
        "--window-size=1280,1000", "--lang=en-US", "--no-first-run",
    ):  # fmt: skip
        options.add_argument(arg)
    # The distribution's driver, given by path: Selenium Manager downloads nothing.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


async def run(step: Callable[[], Any]) -> Any:
    """Selenium blocks: run it in a thread, so the city (same event loop) serves the page."""
    return await asyncio.to_thread(step)


def wait(driver: webdriver.Chrome, condition: Callable[[Any], Any], timeout: float = 15) -> Any:
    # A page htmx is swapping can hand back an element that is gone a moment later, or not
    # shown yet (the unlock form appears once the operator's permission for it is read).
    return WebDriverWait(
        driver,
        timeout,
        poll_frequency=0.1,
        ignored_exceptions=[StaleElementReferenceException, ElementNotInteractableException],
    ).until(condition)


def shot(driver: webdriver.Chrome, name: str) -> None:
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def accept_confirmation(driver: webdriver.Chrome) -> str:
    alert: Alert = wait(driver, ec.alert_is_present(), 5)
    text = alert.text
    alert.accept()
    return text


def log_in(driver: webdriver.Chrome, base: str, who: tuple[str, str]) -> None:
    driver.delete_all_cookies()
    driver.get(f"{base}/console/login")
    driver.find_element(By.ID, "email").send_keys(who[0])
    driver.find_element(By.ID, "password").send_keys(who[1])
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(driver, lambda d: "/console/login" not in d.current_url)


async def station_id(city: City, device_id: str) -> int:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        sid: int = (
            await s.execute(select(Station.id).where(Station.device_id == device_id))
        ).scalar_one()
    return sid


def marker_state(driver: webdriver.Chrome, station: int) -> str | None:
    """The state a station's marker on the map shows (None: no marker)."""
    found = driver.find_elements(By.CSS_SELECTOR, f'.station-marker[data-station-id="{station}"]')
    return found[0].get_attribute("data-state") if found else None


def spot_state(driver: webdriver.Chrome, number: int) -> str | None:
    rows = driver.find_elements(By.ID, f"spot-{number}")
    return rows[0].get_attribute("data-state") if rows else None


async def test_operator_journey(city: City, browser: webdriver.Chrome) -> None:
    started = time.monotonic()
    base = str(city.client().base_url).rstrip("/")
    st1, st2 = await station_id(city, "st-0001"), await station_id(city, "st-0002")
    d = browser

    # ── login ──
    def login_page() -> None:
        d.get(f"{base}/console/login")
        assert d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
        shot(d, "01-login")

    await run(login_page)
    await run(lambda: log_in(d, base, OPERATOR))

    def overview() -> None:
        wait(d, ec.presence_of_element_located((By.ID, "fig-stations")))
        assert "Overview · Lyon" in d.find_element(By.TAG_NAME, "h1").text
        shot(d, "02-overview")

    await run(overview)

    # ── the map: each station its own marker, free-floating vehicles, live ──
    def map_page() -> None:
        d.get(f"{base}/console/networks/1/map")
        wait(d, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-map-ready"))
        rows = d.find_elements(By.CSS_SELECTOR, "#station-table tbody tr")
        assert len(rows) == 4
        markers = d.find_elements(By.CSS_SELECTOR, ".station-marker[data-station-id]")
        assert len(markers) == 4 and all(m.is_displayed() for m in markers)
        vehicles = d.find_elements(By.CSS_SELECTOR, "#vehicle-table tbody tr")
        assert sorted(r.find_element(By.TAG_NAME, "a").text for r in vehicles) == [
            "LYF001", "LYF002", "LYF003", "LYF004",
        ]  # fmt: skip
        assert len(d.find_elements(By.CSS_SELECTOR, "path.vehicle-marker")) == 4
        # st-0001 (Bellecour) has a running agent: online; Perrache has none: offline. The
        # marker and the row say the same.
        states = {r.find_element(By.TAG_NAME, "a").text: r.get_attribute("data-state")
                  for r in rows}  # fmt: skip
        assert states["Perrache"] == "offline" and states["Bellecour"] != "offline", states
        assert marker_state(d, st1) == states["Bellecour"]
        assert marker_state(d, st2) not in ("alert", "offline")
        wait(d, lambda d: d.find_element(By.ID, "live-state").text == "live")
        shot(d, "03-map")

    await run(map_page)
    # ── an alert raised by st-0002's alarm input turns its marker (and row) live ──
    city.rigs["st-0002"].sim.trigger_alarm("cabinet open")

    def station_alerted_live() -> None:
        wait(d, lambda d: marker_state(d, st2) == "alert", 20)
        row = d.find_element(By.CSS_SELECTOR, f'#station-table tr[data-station-id="{st2}"]')
        assert row.get_attribute("data-state") == "alert"
        assert "st-alert" in (
            d.find_element(By.CSS_SELECTOR, f'.station-marker[data-station-id="{st2}"]')
            .get_attribute("class")
        )  # fmt: skip
        assert marker_state(d, st1) != "alert"
        shot(d, "03b-map-station-alert")

    await run(station_alerted_live)

    # ── a spot changes live while a rider takes the bike ──
    def station_page() -> None:
        d.get(f"{base}/console/stations/{st1}")
        assert spot_state(d, 1) == "occupied"
        wait(d, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-live") == "open")
        d.execute_script("window.__sameDocument = 'yes';")

    await run(station_page)
    rider = await city.login(*RIDER)
    r = await city.client().post(
        "/v1/rents",
        json={"spot_id": await city.spot_id("st-0001", 1)},
        headers={**rider, "Idempotency-Key": f"console-{uuid.uuid4()}"},
    )
    assert r.status_code == 201, r.text
    assert city.rigs["st-0001"].sim.take(1) == "LY0001"  # the bike leaves its spot

    def spot_emptied_live() -> None:
        wait(d, lambda d: spot_state(d, 1) == "free", 20)
        assert d.execute_script("return window.__sameDocument") == "yes", "the page reloaded"

        def live_lines(d: webdriver.Chrome) -> str:
            return " | ".join(
                li.text for li in d.find_elements(By.CSS_SELECTOR, "#event-log li.live")
            )

        # The spot's change and the mainboard's own report of it, live above the history.
        log = wait(d, lambda d: "device.event" in (t := live_lines(d)) and t, 5)
        assert "dock.updated" in log, log
        shot(d, "04-station-live")

    await run(spot_emptied_live)

    # ── the alert raised by the station's alarm input (on the map), resolved from the inbox ──

    def resolve_alert() -> None:
        deadline = time.monotonic() + 20
        while True:
            d.get(f"{base}/console/alerts?network_id=1")
            alert_id = d.execute_script(
                "const row = [...document.querySelectorAll('#alert-table tbody tr')]"
                ".find((r) => r.textContent.includes('station-alarm-triggered'));"
                "return row ? row.dataset.alertId : null;"
            )
            if alert_id:
                break
            if time.monotonic() > deadline:
                raise AssertionError("no alarm alert in the inbox")
            time.sleep(0.3)
        shot(d, "05-alerts")
        d.find_element(By.ID, f"alert-{alert_id}").click()
        d.find_element(By.CSS_SELECTOR, "button[value=resolve]").click()
        accept_confirmation(d)
        wait(d, lambda d: not d.find_elements(By.CSS_SELECTOR, f'tr[data-alert-id="{alert_id}"]'))
        shot(d, "06-alerts-resolved")

    await run(resolve_alert)

    # ── spot 4 into maintenance, confirmed; the station is told ──
    def maintenance() -> None:
        d.get(f"{base}/console/stations/{st1}")
        assert spot_state(d, 4) == "free"
        d.find_element(By.CSS_SELECTOR, 'button[aria-label="Put in maintenance — Spot 4"]').click()
        assert "Spot 4" in accept_confirmation(d)
        wait(d, lambda d: spot_state(d, 4) == "maintenance")
        result = wait(d, lambda d: d.find_element(By.ID, "action-result").text)
        assert "Done." in result
        shot(d, "07-station-maintenance")

    await run(maintenance)

    # ── spot 2 unlocked for a technician (reason, confirmed): the station opens the latch,
    # the technician takes the bike, the spot empties live on the same page ──
    def technician_unlock() -> None:
        assert spot_state(d, 2) == "occupied"
        d.execute_script(
            "window.__sameDocument = 'unlock';"
            "document.getElementById('action-result').replaceChildren();"
        )

        def press_unlock(d: webdriver.Chrome) -> bool:
            # The spots table may be swapped (a live update of the maintenance) between the
            # typing and the click: a stale element is typed again into the new table.
            reason = d.find_element(By.ID, "unlock-reason-2")
            reason.clear()  # typed again after a swap or a refused click: once
            reason.send_keys("brake check")
            d.find_element(
                By.CSS_SELECTOR, 'button[aria-label="Unlock for a technician — Spot 2"]'
            ).click()
            return True

        wait(d, press_unlock, 10)
        assert "Spot 2" in accept_confirmation(d)
        result = wait(d, lambda d: d.find_element(By.ID, "action-result").text, 20)
        assert "Done." in result and "done" in result.split(":")[-1], result

    await run(technician_unlock)
    assert city.rigs["st-0001"].sim.boards[2].lock.name == "OPEN", "the Unlock reached the board"
    assert city.rigs["st-0001"].sim.take(2) == "LY0002"  # the technician takes the bike

    def unlocked_spot_emptied_live() -> None:
        wait(d, lambda d: spot_state(d, 2) == "free", 20)
        assert d.execute_script("return window.__sameDocument") == "unlock", "the page reloaded"
        shot(d, "07b-station-technician-unlock")

    await run(unlocked_spot_emptied_live)

    # ── the other pages, for the record ──
    def other_pages() -> None:
        d.get(f"{base}/console/trips?network_id=1&state=running")
        link = wait(d, lambda d: d.find_element(By.CSS_SELECTOR, "#trip-table tbody a"))
        shot(d, "08-trips")
        link.click()
        wait(d, ec.presence_of_element_located((By.ID, "price-h")))
        assert d.find_element(By.ID, "trip-state").text == "running"
        shot(d, "09-trip")
        # Stop billing (now): the confirmation page, then the trip shows the stop.
        d.find_element(By.ID, "reason").send_keys("bike reported broken by phone")
        d.find_element(By.CSS_SELECTOR, "#stop-h ~ form button[type=submit]").click()
        wait(d, ec.presence_of_element_located((By.ID, "confirm-h")))
        d.find_element(By.CSS_SELECTOR, "form button[autofocus]").click()
        wait(d, lambda d: "done=billing-stop" in d.current_url)
        assert (
            "bike reported broken by phone"
            in d.find_element(By.ID, "stops-h").find_element(By.XPATH, "..").text
        )
        shot(d, "10-trip-billing-stopped")
        d.get(f"{base}/console/stations/{st2}?lang=fr")
        assert d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "fr"
        shot(d, "11-station-fr")
        d.get(f"{base}/console/vehicles/13?lang=en")
        shot(d, "12-vehicle")

    await run(other_pages)
    assert time.monotonic() - started < 60


async def test_a_rider_gets_no_console(city: City, browser: webdriver.Chrome) -> None:
    base = str(city.client().base_url).rstrip("/")
    d = browser

    def rider() -> None:
        log_in(d, base, RIDER)
        wait(d, ec.presence_of_element_located((By.TAG_NAME, "h1")))
        assert d.find_element(By.TAG_NAME, "h1").text == "Access refused"
        shot(d, "13-rider-refused")
        d.get(f"{base}/console/networks/1/map")
        assert d.find_element(By.TAG_NAME, "h1").text == "Access refused"
        assert not d.find_elements(By.ID, "map")

    await run(rider)
