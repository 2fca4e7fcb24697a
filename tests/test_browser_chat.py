"""Lesson 09's chat room in a real browser: two pages of Debian's Chromium (through Playwright) chat through the course's
WebSocket server, directly and through jupyter-server-proxy's /proxy/<port>/ (what a learner on Binder or JupyterHub
opens). The screenshot of both pages, 1280 px wide in all, goes to assets/screenshots/09_chat.png."""

import io
import os
import secrets
import subprocess
import sys
import time

import httpx
import pytest

from gatewaylab.chat import Room, chat_app
from gatewaylab.servers import free_port
from gatewaylab.websocket import WebSocketServer
from test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, wait_until_serving

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]

HALF = {"width": 640, "height": 320}  # two pages side by side: 1280 px, a laptop


@pytest.fixture
def room():
    """A chat room on the course's WebSocket server, in a thread of this process."""
    chat = Room()
    server = WebSocketServer(chat_app(chat), "127.0.0.1", 0, lifespan="off").start()
    chat.port = server.server_address[1]
    yield chat
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM.exists(), "the browser test needs Debian's Chromium: apt-get install chromium"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_pages(browser, url, count=2):
    pages = []
    for _ in range(count):
        page = browser.new_page(viewport=HALF)
        page.goto(url)
        page.locator("#state").get_by_text("connected").wait_for(timeout=15_000)
        pages.append(page)
    return pages


def say(page, text):
    page.locator("#text").fill(text)
    page.locator("#text").press("Enter")


def wait_for_line(page, line):
    page.locator("#log div", has_text=line).first.wait_for(timeout=15_000)


def chat_between(pages, room):
    """Each page says something; both see both lines, in the order they were said, and so does the room."""
    first, second = pages
    wait_for_line(second, "joined")  # both are members before anything is said
    say(first, "hello from the first page")
    for page in pages:
        wait_for_line(page, "hello from the first page")
    say(second, "and hello back from the second")
    for page in pages:
        wait_for_line(page, "and hello back from the second")
    said = [line for line in room.history if "hello" in line]
    assert len(said) == 2 and said[0].endswith(": hello from the first page"), list(room.history)
    for page in pages:
        lines = page.locator("#log div").all_inner_texts()
        assert [line for line in lines if "hello" in line] == said
    assert len(room) == 2


def test_two_pages_chat_through_the_course_server(browser, room):
    pages = open_pages(browser, f"http://127.0.0.1:{room.port}/")
    try:
        chat_between(pages, room)
        shots = [page.screenshot() for page in pages]
    finally:
        for page in pages:
            page.close()
    from PIL import Image

    halves = [Image.open(io.BytesIO(shot)) for shot in shots]
    both = Image.new("RGB", (sum(h.width for h in halves), max(h.height for h in halves)), "white")
    both.paste(halves[0], (0, 0))
    both.paste(halves[1], (halves[0].width, 0))
    assert both.width == 1280
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    both.save(SCREENSHOTS / "09_chat.png")
    deadline = time.monotonic() + 10
    while len(room) and time.monotonic() < deadline:  # closing the pages ended both members' sessions
        time.sleep(0.05)
    assert len(room) == 0


@pytest.fixture
def jupyter_server(tmp_path):
    """A Jupyter server with jupyter-server-proxy (enabled by its own config on install), as on Binder."""
    port, token = free_port(), secrets.token_hex(16)
    log = open(tmp_path / "jupyter.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "server", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
         "--ServerApp.allow_root=True"],
        env={**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config")}, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, token, process, tmp_path / "jupyter.log")
        yield base, token
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def test_the_page_works_through_jupyter_server_proxy(browser, room, jupyter_server):
    base, token = jupyter_server
    # What the lesson's page_link() prints on JupyterHub: <prefix>proxy/<port>/ (here the prefix is /).
    assert httpx.get(f"{base}/proxy/{room.port}/", params={"token": token}).text.startswith("<!doctype html>")
    pages = open_pages(browser, f"{base}/proxy/{room.port}/?token={token}")
    try:
        chat_between(pages, room)
    finally:
        for page in pages:
            page.close()
