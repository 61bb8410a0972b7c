"""Fixtures of the browser tests: the bundled pool indexed with the ONNX encoder, and a headless Debian Chromium
driven by selenium through the system chromedriver (no browser or driver download: ``SE_OFFLINE``)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))  # the service tests' server harness

from service_harness import build_pool_index, module_server

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="session")
def browser_index(tmp_path_factory) -> Path:
    return build_pool_index(tmp_path_factory.mktemp("explorer-built") / "pool")


@pytest.fixture
def index_copy(browser_index, tmp_path) -> Path:
    folder = tmp_path / "pool"
    shutil.copytree(browser_index, folder)
    return folder


@pytest.fixture(scope="module")
def server(browser_index, tmp_path_factory):
    """One server per test module over a module-private copy of the index."""
    yield from module_server(browser_index, tmp_path_factory.mktemp("explorer-module") / "pool")


@pytest.fixture(scope="module")
def driver():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra)")
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager download a browser or a driver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1360,900",
                "--disable-extensions", "--no-first-run", "--disable-background-networking", "--use-gl=swiftshader"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()
