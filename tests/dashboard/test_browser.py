"""The dashboard in a real browser: headless Chromium loads every page of a real node process (embedded chain),
creates an availability through the form (after the API refused a bad one, its message shown), sees it listed,
and saves one screenshot per page under ``build/dashboard-screenshots/`` (gitignored). Any JavaScript error in the
browser's console fails the test."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.e2ekit import COLLATERAL_PER_BYTE, SLOTS, dataset, request_body
from tests.harness.browser import find_or_install_chromium, start_driver
from tests.harness.nodeprocess import NodeProcess, start_node

pytestmark = pytest.mark.slow

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "dashboard-screenshots"
PAGES = ("overview", "storage", "availabilities", "sales", "purchases", "explain")
WAIT = 30
TOKEN = "dashboard-browser-token-0123456789"


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


def _post(url: str, body: bytes, content_type: str) -> bytes:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=60) as response:
        return bytes(response.read())


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _storage_request(node: NodeProcess) -> dict[str, Any]:
    """A dataset uploaded to the node, and the node's own account asking the market to store it (a purchase)."""
    cid = _post(f"{node.api}/data", dataset(), "application/octet-stream").decode()
    request_id = _post(f"{node.api}/storage/request/{cid}", json.dumps(request_body()).encode(), "application/json")
    request: dict[str, Any] = _get(f"{node.api}/storage/purchases/{request_id.decode()}")["request"]
    return request


def _until(condition: Any, what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_every_page_loads_and_an_availability_is_created_through_the_form(node: NodeProcess, driver: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    origin = _origin(node)
    request = _storage_request(node)  # queued: no availability yet
    slot_size = int(request["ask"]["slotSize"])

    for name in PAGES:
        _show(driver, origin, name)
        assert driver.find_elements(By.CSS_SELECTOR, "main h2"), f"page {name} shows no heading"
        shown = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "main .error") if e.text]
        assert shown == [], f"page {name} shows errors"
        if name in ("overview", "storage", "purchases"):
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
    collateral = str((SLOTS + 1) * slot_size * COLLATERAL_PER_BYTE)
    fill({"totalSize": "0", "duration": "3600", "minPricePerBytePerSecond": "1", "totalCollateral": collateral})
    error = driver.find_element(By.ID, "availability-error")
    WebDriverWait(driver, WAIT).until(lambda _d: error.text != "")
    assert "totalSize" in error.text

    fill({"totalSize": str(123456789)})
    WebDriverWait(driver, WAIT).until(
        lambda d: "117.7 MiB" in d.find_element(By.TAG_NAME, "table").text  # 123456789 bytes, listed
    )
    assert [a["totalSize"] for a in _get(f"{node.api}/sales/availability")] == [123456789]
    driver.save_screenshot(str(SCREENSHOTS / "availabilities.png"))

    # The queued request's slots now match: sales start and the history lists them; one sale's timeline opens.
    _until(lambda: _get(f"{node.api}/sales/history")["sales"], "a sale in the history")
    _show(driver, origin, "sales")
    driver.find_element(By.CSS_SELECTOR, "#page table button.link").click()
    card = WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.ID, "sale-card"))
    assert request["id"] in card[0].text
    assert "SalePreparing" in card[0].text
    driver.save_screenshot(str(SCREENSHOTS / "sales.png"))

    _show(driver, origin, "explain")
    driver.find_element(By.ID, "request-id").send_keys(request["id"])
    driver.find_element(By.CSS_SELECTOR, "#page form button[type=submit]").click()
    verdict = WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.ID, "verdict"))
    assert "This node would" in verdict[0].text
    driver.save_screenshot(str(SCREENSHOTS / "explain.png"))

    errors = _js_errors(driver, expected_statuses=(422,))
    assert errors == [], f"JavaScript console errors: {errors}"
    assert sorted(p.stem for p in SCREENSHOTS.glob("*.png")) == sorted(PAGES)


def test_a_node_with_a_token_gets_it_typed_into_the_page_once(
    tmp_path_factory: pytest.TempPathFactory, driver: Any
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base = tmp_path_factory.mktemp("dashboard-token")
    token_file = base / "api-token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    node = start_node(base / "data", "--api-token", str(token_file))
    try:
        driver.get("about:blank")
        driver.get_log("browser")  # forget the first test's entries
        origin = _origin(node)
        _show(driver, origin, "overview")  # the page itself needs no token; its data does
        form = driver.find_element(By.ID, "token-form")
        assert form.is_displayed()
        assert "API token" in driver.find_element(By.CSS_SELECTOR, "main .error").text
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        form.find_element(By.CSS_SELECTOR, "button").click()
        # The page renders again once the token is in: wait for the new overview (elements of the old one go stale).
        WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda d: d.find_element(By.ID, "ready").text == "ready" if d.find_elements(By.ID, "ready") else False
        )
        _show(driver, origin, "storage")  # the token stays for the tab's other pages
        assert [e.text for e in driver.find_elements(By.CSS_SELECTOR, "main .error") if e.text] == []
        errors = _js_errors(driver, expected_statuses=(401,))
        assert errors == [], f"JavaScript console errors: {errors}"
    finally:
        node.stop()
