"""The static book in a real browser: pages load without script errors, and every chapter's
kernel-free sweep explorer redraws its curves when a slider moves."""
import pytest
from selenium.webdriver.common.action_chains import ActionChains
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


def test_the_pointer_shows_the_step_and_each_curves_value(browser, book_server):
    """Over the explorer's plot the pointer shows the nearest evaluated step and every curve's value there."""
    chapter = CHAPTERS[0]
    browser.get(f"{book_server}/{chapter}.html")
    explorer = WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "div[data-tdlab-explorer]"))
    browser.execute_script("arguments[0].scrollIntoView()", explorer)
    svg = explorer.find_element(By.CSS_SELECTOR, "svg")
    ActionChains(browser).move_to_element(svg).perform()       # the plot's centre: a mid-run step
    hover = explorer.find_element(By.CSS_SELECTOR, ".tdlab-hover")
    WebDriverWait(browser, 10).until(lambda d: hover.text.startswith("step "))
    labels = [e.text for e in explorer.find_elements(By.CSS_SELECTOR, "div > span")]
    assert explorer.get_attribute("data-hover-step") in hover.text
    assert all(label in hover.text for label in labels if label), (hover.text, labels)
    assert not severe_errors(browser)


def test_a_wide_figure_gets_the_page_width_the_legibility_report_assumes(browser, book_server):
    """The build's report of each figure's smallest text on the page (tools/run_chapters.py figures) scales a
    figure wider than tdlab.book.plots.PAGE_WIDTH_PX down to it: the page must give a figure that much."""
    from tdlab.book import plots
    browser.get(f"{book_server}/{CHAPTERS[0]}.html")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.CSS_SELECTOR, "main img"))
    sizes = browser.execute_script("return Array.from(document.querySelectorAll('main img'))"
                                   ".filter(i => i.complete).map(i => [i.naturalWidth, i.clientWidth])")
    wide = [(natural, shown) for natural, shown in sizes if natural > plots.PAGE_WIDTH_PX]
    assert wide, f"{CHAPTERS[0]}: no figure wider than {plots.PAGE_WIDTH_PX} px to measure the page with"
    assert all(abs(shown - plots.PAGE_WIDTH_PX) <= 2 for _, shown in wide), (wide, plots.PAGE_WIDTH_PX)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_figure_is_shown_at_least_as_wide_as_the_legibility_check_assumes(browser, book_server, chapter):
    """Issue 35 item 1, on every page: the build fails a chapter whose figure's smallest text would be under
    tdlab.book.plots.LEGIBLE_PX CSS px when the image is shown min(natural, PAGE_WIDTH_PX) px wide
    (tdlab.book.plots.illegible_text); here each of the page's figures must be shown at least that wide, so
    the page's text is at least as large as the build measured it."""
    from tdlab.book import plots
    figures = "Array.from(document.querySelectorAll('main .cell_output img'))"    # the cells' figures, not logos
    browser.get(f"{book_server}/{chapter}.html")
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(f"return {figures}.every(i => i.complete)"))
    sizes = browser.execute_script(f"return {figures}"
                                   ".map(i => [i.getAttribute('src').slice(-60), i.naturalWidth, i.clientWidth])")
    assert sizes, f"{chapter}: no figure on the page"
    narrow = [(src, natural, shown) for src, natural, shown in sizes
              if shown < min(natural, plots.PAGE_WIDTH_PX) - 2]
    assert not narrow, f"{chapter}: figures shown narrower than min(natural, {plots.PAGE_WIDTH_PX}) px: {narrow}"


def test_the_ledger_page_lists_claims(browser, book_server):
    browser.get(f"{book_server}/book/ledger.html")
    table = WebDriverWait(browser, 30).until(lambda d: d.find_element(By.CSS_SELECTOR, "table.tdlab-ledger"))
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) >= 5
    link = table.find_element(By.CSS_SELECTOR, "tbody tr a")
    assert ".html#" in link.get_attribute("href")
    assert not severe_errors(browser)
