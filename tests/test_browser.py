"""What a person sees: JupyterLab in a real (headless) Chromium runs each lesson's predict-then-run panel, presses Run
and gets the plot; a saved lesson reopened, and a panel whose kernel restarted, tell the learner what to do.

Uses Debian's Chromium (/usr/bin/chromium) through Playwright; Playwright's own browser download is not used. The
screenshots (1280 px wide) go to assets/screenshots/: 00_welcome.png is the one the README shows.
"""

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gatewaylab.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "assets" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 900}  # a laptop

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]  # one JupyterLab for all, on one worker

def wait_until_serving(base, token, process, log_path, timeout=60):
    """Wait for a Jupyter server started as `process` to answer its status API; fail with its log if it dies first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/api/status?token={token}").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.5)


KERNEL_READY = """() => {
    const context = window.jupyterapp?.shell.currentWidget?.sessionContext;
    const kernel = context?.session?.kernel;
    return Boolean(context?.isReady && kernel?.connectionStatus === 'connected' && kernel?.status === 'idle');
}"""
# Cells 0..last have run: each code cell shows an execution count, and the kernel is idle again (a queued cell's
# prompt is [*]; a cell's count arrives when it starts, and the kernel is busy until it ends).
CELLS_RAN = """(last) => {
    const panel = window.jupyterapp.shell.currentWidget;
    const cells = panel.content.widgets.slice(0, last + 1).filter(cell => cell.model.type === 'code');
    return panel.sessionContext.session?.kernel?.status === 'idle'
        && cells.every(cell => /\\[\\d+\\]/.test(cell.promptNode?.textContent ?? ''));
}"""
RUN_TO = """(index) => {
    const notebook = window.jupyterapp.shell.currentWidget.content;
    notebook.activeCellIndex = index;
    return window.jupyterapp.commands.execute('notebook:run-all-above')
        .then(() => { notebook.activeCellIndex = index; return window.jupyterapp.commands.execute('notebook:run-cell'); });
}"""


# --- which panel of which lesson --------------------------------------------------------------------------------

PANEL_CALL = re.compile(r"\b(PredictRun|teaser_race|\w+_panel)\(")


def panel_cell(path):
    """The index of the first code cell that makes a panel and shows it (`name = ...panel(...)`, then `name`)."""
    cells = json.loads(path.read_text())["cells"]
    for index, cell in enumerate(cells):
        source = "".join(cell["source"]).strip()
        last = source.splitlines()[-1].strip() if source else ""
        if cell["cell_type"] == "code" and PANEL_CALL.search(source) and re.fullmatch(r"\w+", last) \
                and re.search(rf"^{last} = ", source, re.MULTILINE):
            return index
    return None


LESSONS_WITH_PANELS = [path.stem for path in sorted((ROOT / "notebooks").glob("*.ipynb"))
                       if re.search(r"\b(PredictRun|teaser_race)\b", path.read_text())]


def test_every_lesson_that_uses_panels_has_one_to_drive():
    assert {"00_welcome", "02_wsgi_the_interface", "04_wsgi_and_concurrency"} <= set(LESSONS_WITH_PANELS)
    for name in LESSONS_WITH_PANELS:
        assert panel_cell(ROOT / "notebooks" / f"{name}.ipynb") is not None, name


# --- JupyterLab and the browser -----------------------------------------------------------------------------------

@dataclass
class Lab:
    base: str
    token: str
    root: Path

    def url(self, notebook):
        # reset: a fresh workspace, not the tabs an earlier test left open
        return f"{self.base}/lab/tree/notebooks/{notebook}.ipynb?reset&token={self.token}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a copy of the notebooks (so nothing it saves touches the repository)."""
    assert CHROMIUM.exists(), "the browser test needs Debian's Chromium: apt-get install chromium"
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    settings = root / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # No "would you like news?" toast over the page.
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                           "checkForUpdates": False}))
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(root / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces"),
           "GATEWAYLAB_PROGRESS": str(root / "progress.json")}
    log = open(root / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--ServerApp.allow_root=True",  # CI runs as root
         "--LabApp.expose_app_in_browser=True"],  # window.jupyterapp: run commands without clicking through menus
        env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, token, server, root / "jupyterlab.log")
        yield Lab(base, token, root)
    finally:
        server.terminate()
        server.wait(30)
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, lab, tmp_path):
    page = browser.new_page(viewport=VIEWPORT)
    yield page
    # No kernel is left running for the next test: shut down every session this page started.
    sessions = httpx.get(f"{lab.base}/api/sessions?token={lab.token}").json()
    for session in sessions:
        httpx.delete(f"{lab.base}/api/sessions/{session['id']}?token={lab.token}")
    page.close()


def open_notebook(page, lab, notebook):
    page.goto(lab.url(notebook))
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    # The status bar says "Idle" before the kernel's connection is usable; cells run before then are dropped.
    page.wait_for_function(KERNEL_READY, polling=250, timeout=90_000)


def cell_at(page, index):
    """The cell at `index` of the notebook in view (not of one in another tab)."""
    panel = page.evaluate("window.jupyterapp.shell.currentWidget.id")
    return page.locator(f"[id='{panel}'] .jp-Cell").nth(index)


def wait_for_cells(page, last, tmp_path, timeout=180_000):
    try:
        page.wait_for_function(CELLS_RAN, arg=last, polling=500, timeout=timeout)
    except Exception:
        page.screenshot(path=str(tmp_path / "stuck.png"))
        prompts = page.evaluate("() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]"
                                ".map(p => p.textContent)")
        raise AssertionError(f"not every cell ran: prompts {prompts}; screenshot {tmp_path / 'stuck.png'}")
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                          ":has-text('Traceback')")
    assert errors.count() == 0, errors.first.inner_text()


def run_to_panel(page, notebook, tmp_path):
    """Run the cells from the top to the lesson's first panel; return the panel's cell (a locator)."""
    index = panel_cell(ROOT / "notebooks" / f"{notebook}.ipynb")
    page.evaluate(RUN_TO, index)
    wait_for_cells(page, index, tmp_path)
    cell = cell_at(page, index)
    cell.scroll_into_view_if_needed()  # cells out of view are not drawn (JupyterLab's windowed notebook)
    cell.locator(".gatewaylab-demo").wait_for(timeout=30_000)
    return cell


def press_run_and_wait_for_the_plot(panel, prediction):
    panel.scroll_into_view_if_needed()
    panel.locator("input[type=text]").first.fill(prediction)
    panel.locator("button.mod-primary").click()
    plot = panel.locator("img[alt]")
    plot.wait_for(timeout=120_000)
    # It drew: a real picture, decoded by the browser, that says in words what it shows.
    assert plot.evaluate("img => img.complete && img.naturalWidth > 300 && img.naturalHeight > 150")
    assert len(plot.get_attribute("alt")) > 50
    assert f"you predicted {prediction}" in panel.inner_text()
    return plot


def shoot(page, locator, name):
    """A screenshot of one part of the page, 1280 px wide; the window is made tall enough for the whole of it (a
    part taller than the window would come out with JupyterLab's status bar across it)."""
    page.set_viewport_size({"width": VIEWPORT["width"], "height": 1800})
    try:
        locator.scroll_into_view_if_needed()
        page.wait_for_timeout(500)  # let the layout and the scroll settle
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        locator.screenshot(path=str(SCREENSHOTS / name))
    finally:
        page.set_viewport_size(VIEWPORT)


# --- the tests ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("notebook", LESSONS_WITH_PANELS)
def test_a_panel_of_each_lesson_runs_in_jupyterlab_and_draws_its_plot(page, lab, notebook, tmp_path):
    open_notebook(page, lab, notebook)
    if notebook == "00_welcome":  # the first lesson runs whole, as a newcomer would
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        wait_for_cells(page, 10_000, tmp_path)
        cell = cell_at(page, panel_cell(ROOT / "notebooks" / "00_welcome.ipynb"))
    else:
        cell = run_to_panel(page, notebook, tmp_path)
    panel = cell.locator(".gatewaylab-demo").first
    assert panel.locator(".gatewaylab-stale").is_hidden()  # live: no "lost its kernel" box
    assert cell.locator(".gatewaylab-note").is_hidden()  # and no "no live panel above?" note
    # The question reads at normal line spacing (ipywidgets' default is a widget row's height, 28 px).
    question = panel.locator("p").first
    assert question.evaluate("p => parseFloat(getComputedStyle(p).lineHeight) < 1.8 * parseFloat("
                             "getComputedStyle(p).fontSize)")

    source = (ROOT / "notebooks" / f"{notebook}.ipynb").read_text()
    if "pool size" in source and "show_when(" in source:  # lesson 04: the pool size only where it acts
        assert "sequential" in panel.locator("select").input_value()
        assert panel.get_by_text("pool size").is_hidden()
        panel.locator("select").select_option("pool")
        panel.get_by_text("pool size").wait_for(timeout=10_000)
        panel.locator("select").select_option("sequential")
        panel.get_by_text("pool size").wait_for(state="hidden", timeout=10_000)
    if notebook == "02_wsgi_the_interface":  # a blank prediction is refused, not taken as 0
        panel.locator("input[type=text]").first.fill("")
        panel.locator("button.mod-primary").click()
        panel.get_by_text("Type your prediction in the box first").wait_for(timeout=10_000)
        assert panel.locator("img").count() == 0
    press_run_and_wait_for_the_plot(panel, "3")
    shoot(page, panel, "00_welcome.png" if notebook == "00_welcome" else f"{notebook[:2]}_panel.png")
    if notebook == "00_welcome":
        code = panel.locator("code").first  # `wsgiref.simple_server` in the question, in the code font
        assert "mono" in code.evaluate("c => getComputedStyle(c).fontFamily").lower()
        page.screenshot(path=str(SCREENSHOTS / "00_welcome_page.png"))


def test_a_reopened_lesson_says_to_run_the_cells_again_where_each_panel_was(page, lab, tmp_path):
    # A saved lesson with its panels, closed and reopened: the panels' widgets were in the old kernel.
    shutil.copy(lab.root / "notebooks" / "02_wsgi_the_interface.ipynb", lab.root / "notebooks" / "02_reopened.ipynb")
    open_notebook(page, lab, "02_reopened")
    cell = run_to_panel(page, "02_wsgi_the_interface", tmp_path)
    assert cell.locator(".gatewaylab-note").is_hidden()
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000)
    page.evaluate("window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    page.goto("about:blank")

    open_notebook(page, lab, "02_reopened")
    cell = cell_at(page, panel_cell(ROOT / "notebooks" / "02_wsgi_the_interface.ipynb"))
    cell.scroll_into_view_if_needed()
    cell.get_by_text("model not found").wait_for(timeout=30_000)  # JupyterLab's own words where the widget was
    note = cell.locator(".gatewaylab-note")
    note.wait_for(state="visible", timeout=10_000)
    assert "Run the cells above from the top" in note.inner_text()
    shoot(page, cell.locator(".jp-Cell-outputWrapper"), "02_reopened.png")


def test_a_lesson_run_elsewhere_and_opened_untrusted_shows_the_panels_text_and_the_note(page, lab, tmp_path):
    # Outputs JupyterLab did not make itself (here: a headless run) are not trusted: it draws no widget from them.
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                 "display_name": "Python 3 (ipykernel)"}})
    notebook.cells = [nbformat.v4.new_code_cell(
        "from gatewaylab.demos import teaser_race\n\nrace = teaser_race(clients=2, delay=0.1)\nrace")]
    NotebookClient(notebook, timeout=60, kernel_name="python3").execute()
    nbformat.write(notebook, lab.root / "notebooks" / "untrusted.ipynb")
    open_notebook(page, lab, "untrusted")
    cell = cell_at(page, 0)
    text = cell.locator(".jp-OutputArea-output[data-mime-type='text/plain']")
    text.wait_for(timeout=30_000)
    assert "race.run(prediction=2.5)" in text.inner_text() and "run the cells above from the top" in text.inner_text()
    assert "Run the cells above from the top" in cell.locator(".gatewaylab-note").inner_text()
    assert cell.locator(".gatewaylab-demo").count() == 0


def test_after_a_kernel_restart_a_panel_says_it_lost_its_kernel_and_comes_back_when_run_again(page, lab, tmp_path):
    notebook = "04_wsgi_and_concurrency"
    open_notebook(page, lab, notebook)
    cell = run_to_panel(page, notebook, tmp_path)
    panel = cell.locator(".gatewaylab-demo").first
    stale = panel.locator(".gatewaylab-stale")
    assert stale.is_hidden()
    page.evaluate("window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart()")
    stale.wait_for(state="visible", timeout=30_000)
    assert "Run the cells above from the top" in stale.inner_text() and "lost its kernel" in stale.inner_text()
    assert cell.locator(".gatewaylab-note").is_hidden()  # one message, not two
    assert panel.locator(".gatewaylab-status").is_hidden()  # no "type your prediction" beside it
    shoot(page, panel, "04_after_restart.png")

    page.wait_for_function(KERNEL_READY, polling=250, timeout=90_000)
    cell = run_to_panel(page, notebook, tmp_path)  # what the message says to do
    panel = cell.locator(".gatewaylab-demo").first
    assert panel.locator(".gatewaylab-stale").is_hidden()
    press_run_and_wait_for_the_plot(panel, "2")
