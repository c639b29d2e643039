"""A real headless browser for the tests that check a page renders: the system's Chromium through Selenium.

Debian's ``chromium`` and ``chromium-driver`` packages (``apt-get install -y chromium chromium-driver``), driven
by the ``selenium`` package with the system chromedriver; never a browser that downloads itself. Where they are
missing the test is skipped with a message saying what to install, so a machine without apt still passes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Chromium flags for a container: no sandbox (root), no GPU, no background traffic (the page is offline).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--window-size=1280,900")

_INSTALL = "install it with `apt-get install -y chromium chromium-driver` and `pip install selenium`"


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return f"the selenium package is missing; {_INSTALL}"
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return f"no chromium on PATH; {_INSTALL}"
    if not shutil.which("chromedriver"):
        return f"no chromedriver on PATH; {_INSTALL}"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """A headless Chromium WebDriver that records the console (skips the test where Chromium is absent)."""
    reason = _missing()
    if reason:
        pytest.skip(f"headless browser check skipped: {reason}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()


def render(driver, page: Path, screenshot: Path | None = None) -> dict:
    """Open ``page`` and report what rendered.

    Folded ``<details>`` are opened first, so every table takes its space.

    Returns:
        ``images``: ``[src prefix, loaded, natural width, shown width]`` per ``<img>``; ``tables``:
        ``[id, body rows, shown height]`` per ``<table>``; ``console``: the browser's SEVERE log entries;
        ``text``: the page's visible text. With ``screenshot`` the whole page is saved there as PNG.
    """
    driver.get(page.resolve().as_uri())
    found = driver.execute_script(
        "document.querySelectorAll('details').forEach(d => { d.open = true; });"
        "return {"
        " images: Array.from(document.images).map(i => [i.src.slice(0, 40), i.complete, i.naturalWidth,"
        "   i.getBoundingClientRect().width]),"
        " tables: Array.from(document.querySelectorAll('table')).map(t => [t.id, t.tBodies[0].rows.length,"
        "   t.getBoundingClientRect().height]),"
        " text: document.body.innerText };"
    )
    found["console"] = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    if screenshot is not None:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(int(height) + 40, 16000))
        driver.save_screenshot(str(screenshot))
        driver.set_window_size(1280, 900)
    return found
