"""Headless Debian Chromium driven by Selenium (chromium-driver) for the dashboard's browser test.

:func:`find_or_install_chromium` returns the browser and driver paths. Missing ones are installed with apt-get when
the tests run as root (CI does: its machines reach Debian's mirror); a non-root run without a browser is skipped
with the reason, and a root run where the install fails is an error, never a silent skip.
Selenium is given both paths, so its own driver download (Selenium Manager) is never used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

import pytest

PACKAGES = ("chromium", "chromium-driver")
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
)


@dataclass(frozen=True)
class Chromium:
    browser: str
    driver: str


def _paths() -> Chromium | None:
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    return Chromium(browser, driver) if browser and driver else None


def find_or_install_chromium() -> Chromium:
    found = _paths()
    if found is not None:
        return found
    if os.geteuid() != 0:
        pytest.skip(f"no chromium/chromedriver and not root to install them: apt-get install -y {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *PACKAGES])
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, env=env, timeout=900, check=False)
        if done.returncode != 0:
            pytest.fail(
                f"BROWSER TEST CANNOT RUN: {' '.join(step)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
    found = _paths()
    if found is None:
        pytest.fail(f"BROWSER TEST CANNOT RUN: {' '.join(PACKAGES)} installed but chromium/chromedriver not on PATH")
    return found


def start_driver(chromium: Chromium):  # type: ignore[no-untyped-def]  # selenium is a test-only dependency
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium.browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=chromium.driver), options=options)
