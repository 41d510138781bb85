"""A real headless browser for page tests: Debian's chromium driven by Selenium.

``scripts/browser-deps.sh`` (run by ``make test``) installs ``chromium`` and
``chromium-driver``; without them the test is skipped, naming the script. No
browser or driver is ever downloaded: both paths are given to Selenium.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

WAIT_S = 20.0
INSTALL_HINT = "install them with scripts/browser-deps.sh (make test runs it)"


def _find(*names: str) -> str | None:
    return next((p for n in names if (p := shutil.which(n))), None)


@contextmanager
def chromium(width: int = 1440, height: int = 900) -> Iterator[Any]:
    """A headless Chromium (a Selenium ``WebDriver``); skips the test when there is none."""
    browser = _find("chromium", "chromium-browser")
    driver_path = _find("chromedriver", "chromium-driver")
    if browser is None or driver_path is None:
        missing = [n for n, p in (("chromium", browser), ("chromium-driver", driver_path)) if not p]
        pytest.skip(f"{' and '.join(missing)} not found: {INSTALL_HINT}")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--no-first-run", "--disable-extensions", f"--window-size={width},{height}",
                "--force-device-scale-factor=1"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(
    driver: Any, cond: Callable[[Any], Any], what: str, timeout_s: float = WAIT_S
) -> Any:
    """``cond(driver)`` once it is truthy; fails naming ``what`` after ``timeout_s``."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout_s, 0.1, [StaleElementReferenceException]).until(cond)
    except TimeoutException:
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what}") from None


def console_errors(driver: Any) -> list[str]:
    """The browser console's errors since the last call, but for answers with 4xx or 5xx
    (Chromium and htmx both log those)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"
            and not any(m in e["message"] for m in _ANSWERED)]  # fmt: skip


_ANSWERED = ("Failed to load resource", "Response Status Error Code")


def screenshot(driver: Any, directory: Path, name: str) -> list[Path]:
    """A PNG of the page in ``directory`` and, if set, ``SLUICE_ARTIFACTS_DIR``; prints the paths."""
    dirs = [directory]
    if os.environ.get("SLUICE_ARTIFACTS_DIR"):
        dirs.append(Path(os.environ["SLUICE_ARTIFACTS_DIR"]))
    size = driver.get_window_size()
    chrome = size["height"] - driver.execute_script("return window.innerHeight")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(size["width"], max(size["height"], height + chrome))  # the whole page
    try:
        png: bytes = driver.get_screenshot_as_png()
    finally:
        driver.set_window_size(size["width"], size["height"])
    paths = []
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        (path := d / f"{name}.png").write_bytes(png)
        paths.append(path)
    print(f"screenshot: {', '.join(str(p) for p in paths)}")
    return paths
