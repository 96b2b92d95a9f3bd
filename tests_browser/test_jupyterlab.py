"""A reader's local route: JupyterLab serving a chapter on localhost. Run all cells, move the panel's
noise-rate slider to a setting the build did not train, press Run: the panel retrains and redraws.

The chapter is the LDR-KL one: its whole notebook is among the book's cheapest (small MLPs), so the
test spends its time on JupyterLab and the widgets rather than on training."""
import base64
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from conftest import ROOT, SCREENS, free_port, wait_for_port

CHAPTER = "book/01_noisy_labels/04_ldr_kl.ipynb"
START, NEXT = "0.60", "0.65"                              # the panel's noise rate, and one step right


@pytest.fixture(scope="module")
def lab():
    port, token = free_port(), secrets.token_hex(16)
    workdir = tempfile.mkdtemp(prefix="tdlab-lab-")
    shutil.copytree(ROOT / "book", os.path.join(workdir, "book"))
    log = open(os.path.join(workdir, "server.log"), "w")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TDLAB_STATIC", "TDLAB_QUIET", "TDLAB_RECORDS")}
    settings = os.path.join(workdir, "settings")
    os.makedirs(os.path.join(settings, "@jupyterlab", "apputils-extension"))
    with open(os.path.join(settings, "@jupyterlab", "apputils-extension", "notification.jupyterlab-settings"), "w") as f:
        f.write('{"fetchNews": "false"}')                  # no "Jupyter news?" toast over the panel
    env.update(OMP_NUM_THREADS="2", JUPYTER_CONFIG_DIR=os.path.join(workdir, "config"),
               JUPYTER_RUNTIME_DIR=os.path.join(workdir, "runtime"), JUPYTERLAB_SETTINGS_DIR=settings)
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", "--LabApp.expose_app_in_browser=True",
         "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={workdir}"]
        + (["--allow-root"] if os.geteuid() == 0 else []),   # CI's containers run as root
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, 120)
    except BaseException:
        server.kill()
        print(open(log.name).read()[-3000:])             # why the server did not start, in pytest's report
        raise
    yield f"http://127.0.0.1:{port}", token
    server.terminate()
    server.wait(30)
    log.close()
    shutil.rmtree(workdir, ignore_errors=True)


def test_panel_retrains_on_run(browser, lab):
    url, token = lab
    browser.get(f"{url}/lab/tree/{CHAPTER}?token={token}")
    state = {}
    def kernel_ready(d):   # noqa: E306
        state.update(d.execute_script(
            "const app = window.jupyterapp;"
            "const w = app && Array.from(app.shell.widgets('main')).find(w => w.sessionContext);"
            "if (w && app.shell.currentWidget !== w) app.shell.activateById(w.id);"  # headless: no focus event
            "const s = w && w.sessionContext;"
            "return {app: !!window.jupyterapp, widget: w ? String(w.title.label) : null,"
            " session: !!(s && s.session), kernel: !!(s && s.session && s.session.kernel),"
            " status: s && s.session && s.session.kernel ? s.session.kernel.status : null};"))
        return state["kernel"] and state["status"] == "idle"
    try:
        WebDriverWait(browser, 120).until(kernel_ready)
    except Exception:
        pytest.fail(f"JupyterLab did not start the chapter's kernel within 120 s: {state}")
    time.sleep(3)
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    # the panel appears when the chapter has run up to it (the default run and the sweep first)
    slider = WebDriverWait(browser, 420, poll_frequency=2).until(lambda d: next(
        (s for s in d.find_elements(By.CSS_SELECTOR, ".widget-slider") if "noise rate" in s.text), None))
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", slider)
    panel = slider.find_element(By.XPATH, "ancestor::div[contains(@class,'widget-hbox')][1]")
    image = lambda: panel.find_element(By.CSS_SELECTOR, ".widget-output img").get_attribute("src")  # noqa: E731
    WebDriverWait(browser, 60).until(lambda d: image())
    before = image()
    handle = slider.find_element(By.CSS_SELECTOR, ".noUi-handle")
    handle.click()
    assert START in slider.text
    handle.send_keys(Keys.ARROW_RIGHT)                    # not a grid point: the panel must train it
    status = lambda: panel.find_elements(By.CSS_SELECTOR, ".widget-html")  # noqa: E731
    WebDriverWait(browser, 30).until(lambda d: any("press" in s.text for s in status()))
    assert NEXT in slider.text
    run = next(b for b in panel.find_elements(By.CSS_SELECTOR, "button") if b.text.strip() == "Run")
    run.click()
    WebDriverWait(browser, 300, poll_frequency=2).until(lambda d: any("trained now" in s.text for s in status()))
    assert image() != before, "the panel's plot was not redrawn after Run"
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", panel)
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "const i = arguments[0].querySelector('.widget-output img'); return i && i.complete && i.naturalWidth > 0"
        " && i.getBoundingClientRect().top >= 0", panel))
    time.sleep(1)
    browser.save_screenshot(str(SCREENS / "jupyterlab-panel-after-run.png"))
    # headless Chromium often leaves the plot's raster out of a screenshot, so the plot itself is kept too:
    # the PNG the page shows, before and after Run
    for name, src in (("before", before), ("after", image())):
        (SCREENS / f"jupyterlab-panel-plot-{name}-run.png").write_bytes(base64.b64decode(src.split(",", 1)[1]))
