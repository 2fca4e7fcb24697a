"""What a person sees: JupyterLab in a real (headless) Chromium runs lesson 00, and the race widget draws its plot.

Uses Debian's Chromium (/usr/bin/chromium) through Playwright; Playwright's own browser download is not used. The
screenshot goes to assets/screenshots/00_welcome.png, which the README shows.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gatewaylab.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = ROOT / "assets" / "screenshots" / "00_welcome.png"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

KERNEL_READY = """() => {
    const context = window.jupyterapp?.shell.currentWidget?.sessionContext;
    const kernel = context?.session?.kernel;
    return Boolean(context?.isReady && kernel?.connectionStatus === 'connected' && kernel?.status === 'idle');
}"""

pytestmark = pytest.mark.slow


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on a copy of the notebooks (so nothing it saves touches the repository)."""
    assert CHROMIUM.exists(), "the browser test needs Debian's Chromium: apt-get install chromium"
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # No "would you like news?" toast over the page.
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                           "checkForUpdates": False}))
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
           "GATEWAYLAB_PROGRESS": str(tmp_path / "progress.json")}
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
         "--ServerApp.allow_root=True",  # CI runs as root
         "--LabApp.expose_app_in_browser=True"],  # window.jupyterapp: run commands without clicking through menus
        env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/api/status?token={token}").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "jupyterlab.log").read_text()
        time.sleep(0.5)
    yield f"{base}/lab/tree/notebooks/00_welcome.ipynb?token={token}"
    server.terminate()
    server.wait(30)
    log.close()


def test_lesson_00_runs_in_jupyterlab_and_the_race_widget_draws_its_plot(jupyterlab, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(jupyterlab)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        # The status bar says "Idle" before the kernel's connection is usable; cells run before then are dropped.
        page.wait_for_function(KERNEL_READY, polling=250, timeout=90_000)

        # What the Run menu's "Run All Cells" does; a click on a menu that is still opening can be lost.
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        # Every code cell gets an execution count, and the kernel goes back to idle.
        try:
            page.wait_for_function(
                """() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                         .every(p => /\\[\\d+\\]/.test(p.textContent))""", polling=500, timeout=180_000)
        except Exception:
            page.screenshot(path=str(tmp_path / "stuck.png"))
            prompts = page.evaluate("() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]"
                                    ".map(p => p.textContent)")
            raise AssertionError(f"not every cell ran: prompts {prompts}; screenshot {tmp_path / 'stuck.png'}")
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                              ":has-text('Traceback')")
        assert errors.count() == 0, errors.first.inner_text()

        race = page.locator(".gatewaylab-race").first
        race.scroll_into_view_if_needed()
        race.locator("input").first.fill("3")
        race.get_by_role("button", name="Run the race").click()
        plot = race.locator("img[alt]")
        plot.wait_for(timeout=120_000)
        assert "request" in plot.get_attribute("alt")
        assert "you predicted 3" in race.inner_text()
        plot.scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        race.screenshot(path=str(SCREENSHOT))
        page.screenshot(path=str(SCREENSHOT.with_name("00_welcome_page.png")))
        browser.close()
