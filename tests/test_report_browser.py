"""The HTML report in a real browser: headless Chromium shows the grid, a cell opens, a screenshot is kept.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them where it runs as
root with apt-get); skipped with the reason where neither is found.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="no chromium + chromedriver here (apt-get install chromium chromium-driver)")


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_report_grid_renders_in_chromium(browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    results = tmp_path / "results.jsonl"
    consumed = run_cli("consume", str(REPO / "cases" / "corpus" / "2.5.1"), "--results", str(results), "--trust")
    assert consumed.returncode == 0, consumed.stderr[-2000:]
    rendered = run_cli("report", str(results), "--out", str(tmp_path / "report"))
    assert rendered.returncode == 0, rendered.stderr

    browser.get((tmp_path / "report" / "index.html").as_uri())
    grids = browser.find_elements(By.CSS_SELECTOR, "table.grid")
    assert len(grids) >= 10, "one grid per format"
    cells = browser.find_elements(By.CSS_SELECTOR, "table.grid td.cell")
    assert cells and all(c.get_attribute("data-state") in {"pass", "xfail", "fail", "skip", "missing"} for c in cells)
    assert browser.find_element(By.ID, "weights-only").is_displayed()

    # an expected-failure cell (2.5.1 whole models under this torch's default load) opens to its details
    closed = browser.find_element(By.CSS_SELECTOR, 'table.grid[data-format="whole_model_zip"] td.state-xfail details')
    detail = closed.find_element(By.CSS_SELECTOR, "li")
    assert not detail.is_displayed()
    closed.find_element(By.TAG_NAME, "summary").click()
    assert detail.is_displayed() and "load" in detail.text

    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
