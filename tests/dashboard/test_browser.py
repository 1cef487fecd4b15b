"""The dashboard in a real browser: headless Chromium loads every page of a real node process (embedded chain),
creates an availability through the form (after the API refused a bad one, its message shown), sees it listed,
and saves one screenshot per page under ``build/dashboard-screenshots/`` (gitignored). Any JavaScript error in the
browser's console fails the test."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.browser import find_or_install_chromium, start_driver
from tests.harness.nodeprocess import NodeProcess, start_node

pytestmark = pytest.mark.slow

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "dashboard-screenshots"
PAGES = ("overview", "storage", "availabilities", "sales", "purchases", "explain")
WAIT = 30


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = start_node(tmp_path_factory.mktemp("dashboard") / "data")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    chromium = find_or_install_chromium()
    d = start_driver(chromium)
    try:
        yield d
    finally:
        d.quit()


def _origin(node: NodeProcess) -> str:
    return node.api.removesuffix("/api/codex/v1")


def _show(driver: Any, origin: str, name: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{origin}/dashboard#{name}")
    WebDriverWait(driver, WAIT).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, f"main[data-rendered='{name}']"))
    )


def _js_errors(driver: Any, expected_statuses: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    """SEVERE console entries, but for the network's report of an answer the test provoked on purpose."""
    out = []
    for entry in driver.get_log("browser"):
        if entry["level"] != "SEVERE":
            continue
        if entry.get("source") == "network" and any(f"status of {s}" in entry["message"] for s in expected_statuses):
            continue
        out.append(entry)
    return out


def test_every_page_loads_and_an_availability_is_created_through_the_form(node: NodeProcess, driver: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    origin = _origin(node)

    for name in PAGES:
        _show(driver, origin, name)
        assert driver.find_elements(By.CSS_SELECTOR, "main h2"), f"page {name} shows no heading"
        shown = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "main .error") if e.text]
        assert shown == [], f"page {name} shows errors"
        if name != "availabilities":
            driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))

    _show(driver, origin, "overview")
    assert driver.find_element(By.ID, "ready").text == "ready"

    _show(driver, origin, "availabilities")
    form = driver.find_element(By.ID, "availability-form")

    def fill(values: dict[str, str]) -> None:
        for field, value in values.items():
            box = form.find_element(By.ID, f"f-{field}")
            box.clear()
            box.send_keys(value)
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    # A size of 0: the API refuses it (422) and the page shows the API's own message.
    fill({"totalSize": "0", "duration": "3600", "minPricePerBytePerSecond": "1", "totalCollateral": "1000"})
    error = driver.find_element(By.ID, "availability-error")
    WebDriverWait(driver, WAIT).until(lambda _d: error.text != "")
    assert "totalSize" in error.text or "total" in error.text.lower()

    fill({"totalSize": "123456789"})
    WebDriverWait(driver, WAIT).until(
        lambda d: "117.7 MiB" in d.find_element(By.TAG_NAME, "table").text  # 123456789 bytes, listed
    )
    with urllib.request.urlopen(f"{node.api}/sales/availability", timeout=10) as response:
        listed = json.load(response)
    assert [a["totalSize"] for a in listed] == [123456789]
    driver.save_screenshot(str(SCREENSHOTS / "availabilities.png"))

    errors = _js_errors(driver, expected_statuses=(422,))
    assert errors == [], f"JavaScript console errors: {errors}"
    assert sorted(p.stem for p in SCREENSHOTS.glob("*.png")) == sorted(PAGES)
