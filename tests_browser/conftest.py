"""Headless Chromium from Debian's packages (chromium, chromium-driver), driven by Selenium.

Nothing here downloads a browser: the binary and the driver are the system's, found at the
usual Debian paths (or CHROMIUM / CHROMEDRIVER). Screenshots go to _build/screens.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = Path(__file__).resolve().parents[1]
SCREENS = ROOT / "_build" / "screens"


def _find(names, variable):
    for candidate in [os.environ.get(variable, "")] + list(names):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    pytest.fail(f"no {names[0]} found: install Debian's chromium and chromium-driver (apt-get install chromium "
                f"chromium-driver) or set {variable}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"nothing listened on port {port} within {seconds} s")


@pytest.fixture(scope="session")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = _find(["chromium", "chromium-browser", "google-chrome"], "CHROMIUM")
    profile = tempfile.mkdtemp(prefix="tdlab-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(_find(["chromedriver"], "CHROMEDRIVER"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(120)
    SCREENS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def book_server():
    html = ROOT / "_build" / "html"
    if not (html / "index.html").exists():
        pytest.fail("no built book at _build/html: run `make book` first")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=html,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(10)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing browser test leaves a screenshot of what the browser showed: _build/screens/<test>-failure.png."""
    outcome = yield
    report = outcome.get_result()
    driver = item.funcargs.get("browser") if hasattr(item, "funcargs") else None
    if report.when == "call" and report.failed and driver is not None:
        SCREENS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENS / f"{item.name}-failure.png"))
