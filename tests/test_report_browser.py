"""report.html in a real headless Chromium (Debian's `chromium` + `chromium-driver`, driven by selenium): no console
errors, a column sorts by clicking its header, a run's drill-down opens and filters to errors. Skipped where no
browser is installed, unless REQUIRE_BROWSER=1 (CI sets it, so there it fails instead of skipping)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from decide_fixtures import write_results

from eval.decide import report

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def driver():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing = "selenium (pip install selenium)"
    else:
        missing = None if CHROMIUM and DRIVER else "chromium and chromedriver (apt-get install chromium " \
                                                   "chromium-driver)"
    if missing:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {missing} is not installed")
        pytest.skip(f"no browser: {missing}")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(DRIVER), options=opts)  # an explicit driver: nothing is downloaded
    yield d
    d.quit()


def _errors(d) -> list[dict]:
    return [e for e in d.get_log("browser") if e["level"] == "SEVERE"]


def test_report_in_headless_chromium(driver, tmp_path: Path):
    from selenium.webdriver.common.by import By

    results, _ = write_results(tmp_path)
    page, _ = report.build(results)
    driver.get(page.resolve().as_uri())
    assert driver.title == "tune-or-prompt report"
    assert _errors(driver) == []

    table = driver.find_element(By.CSS_SELECTOR, "table.sortable")
    header = next(th for th in table.find_elements(By.TAG_NAME, "th") if th.text.startswith("accuracy"))
    col = [th.text for th in table.find_elements(By.TAG_NAME, "th")].index(header.text)

    def column() -> list[float]:
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        return [float(r.find_elements(By.TAG_NAME, "td")[col].get_attribute("data-v")) for r in rows]

    assert column() != sorted(column())  # ranked best first before sorting
    header.click()
    assert column() == sorted(column()) and "asc" in header.get_attribute("class")
    header.click()
    assert column() == sorted(column(), reverse=True)

    button = next(b for b in driver.find_elements(By.CSS_SELECTOR, "button[data-run]")
                  if "zeroshot" in b.get_attribute("data-run"))
    # to the middle of the window, as a reader scrolls to it: at the top the sticky table header covers it
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()
    drill = driver.find_element(By.ID, "drill")
    assert drill.is_displayed() and "zeroshot" in driver.find_element(By.ID, "drill-title").text
    assert driver.find_element(By.ID, "drill-count").text == "80 of 80 examples"
    driver.find_element(By.ID, "drill-errors").click()
    assert driver.find_element(By.ID, "drill-count").text == "16 of 80 examples"  # 0.8 right on 80 items
    statuses = {td.text for td in driver.find_elements(By.CSS_SELECTOR, "#drill-rows td:last-child")}
    assert statuses == {"valid", "no_label", "truncated"}
    shot = tmp_path / "report.png"
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    assert _errors(driver) == []
