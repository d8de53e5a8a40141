"""A real browser for the tests: Debian's chromium, driven by Selenium through chromedriver.

    with chromium(tmp_path) as driver:
        driver.get(url)
        csp_violations(driver)      # [] when the page kept to its Content-Security-Policy

Selenium is given ``/usr/bin/chromedriver`` and ``/usr/bin/chromium`` and runs with
``SE_OFFLINE=true``, so Selenium Manager downloads nothing. Chromium runs headless
as root (``--no-sandbox``), with a fresh profile and its background traffic off.
Its console is kept (``goog:loggingPrefs``) so a test can read what the page logged.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.worker_process import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Screenshots a person can look at after the run; .ci/run prints their paths.
ARTIFACTS = ROOT / "test-artifacts"
LAPTOP = (1280, 900)
PHONE = (390, 844)
WAIT_SECONDS = 20
ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
)
#: What Chromium logs when a Content-Security-Policy or a Trusted Types rule refused something.
VIOLATION_MARKS = ("Content Security Policy", "TrustedHTML", "TrustedScript", "Trusted Type")


def missing() -> str | None:
    """Why no browser can run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(path) and os.access(path, os.X_OK)):
            return f"{path} is missing: apt-get install chromium chromium-driver (.ci/run does)"
    return None


@contextlib.contextmanager
def chromium(profile_dir: Path, size: tuple[int, int] = LAPTOP) -> Iterator[WebDriver]:
    problem = missing()
    assert problem is None, problem
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never download a driver or browser
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ARGUMENTS:
        options.add_argument(argument)
    profile = profile_dir / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={size[0]},{size[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(
        executable_path=CHROMEDRIVER, log_output=str(profile_dir / "chromedriver.log")
    )
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.05).until(
        condition, message=f"waiting for {what}"
    )


def console(driver: WebDriver) -> list[dict[str, Any]]:
    """The browser's console entries since the last call (chromedriver hands each out once)."""
    return list(driver.get_log("browser"))


def csp_violations(entries: list[dict[str, Any]]) -> list[str]:
    return [
        str(entry["message"])
        for entry in entries
        if any(mark in str(entry["message"]) for mark in VIOLATION_MARKS)
    ]


def screenshot(driver: WebDriver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path


def texts(elements: list[WebElement]) -> list[str]:
    return [element.text for element in elements]
