"""The static book in a real browser: pages load without script errors, and every chapter's
kernel-free sweep explorer redraws its curves when a slider moves."""
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from conftest import ROOT, SCREENS

CHAPTERS = sorted(str(p.relative_to(ROOT / "_build" / "html").with_suffix(""))
                  for p in (ROOT / "_build" / "html" / "book").glob("*/*.html"))


def severe_errors(driver):
    """Console errors of the page. A resource on another host that cannot load (MathJax from its CDN)
    is the sandbox's closed network, not the page: those are left out; everything else counts."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
            and not (entry["message"].startswith("http") and "127.0.0.1" not in entry["message"].split(" ")[0]
                     and "net::ERR_" in entry["message"])]


def curve_points(driver):
    return [line.get_attribute("points") for line in
            driver.find_elements(By.CSS_SELECTOR, "div[data-tdlab-explorer] polyline")]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_explorer_slider_redraws_the_figure(browser, book_server, chapter):
    browser.get(f"{book_server}/{chapter}.html")
    explorer = WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "div[data-tdlab-explorer]"))
    browser.execute_script("arguments[0].scrollIntoView()", explorer)
    before_state, before = explorer.get_attribute("data-state"), curve_points(browser)
    assert any(before), f"{chapter}: the explorer drew no curve at its start settings"
    browser.save_screenshot(str(SCREENS / f"{chapter.replace('/', '__')}-explorer-before.png"))
    slider = explorer.find_elements(By.CSS_SELECTOR, "input[type=range]")[0]
    key = Keys.ARROW_LEFT if int(slider.get_attribute("value")) > 0 else Keys.ARROW_RIGHT
    slider.send_keys(key)                                   # a keyboard move fires the input event
    WebDriverWait(browser, 10).until(lambda d: explorer.get_attribute("data-state") != before_state)
    after = curve_points(browser)
    note = explorer.find_element(By.CSS_SELECTOR, ".tdlab-note").text
    assert after != before or "not trained" in note, f"{chapter}: moving the slider did not change the plotted data"
    browser.save_screenshot(str(SCREENS / f"{chapter.replace('/', '__')}-explorer-after.png"))
    assert not severe_errors(browser), f"{chapter}: JavaScript console errors: {severe_errors(browser)}"


def test_the_ledger_page_lists_claims(browser, book_server):
    browser.get(f"{book_server}/book/ledger.html")
    table = WebDriverWait(browser, 30).until(lambda d: d.find_element(By.CSS_SELECTOR, "table.tdlab-ledger"))
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) >= 5
    link = table.find_element(By.CSS_SELECTOR, "tbody tr a")
    assert ".html#" in link.get_attribute("href")
    assert not severe_errors(browser)
