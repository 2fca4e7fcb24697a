"""gatewaylab.notes_app: the upstream answers a tag after its delay; the database keeps notes with any text; the
Flask app and both Starlette apps speak the same API; the fixed app's lifespan watches its loop."""

import threading
import time

import httpx
import pytest

from gatewaylab import servers
from gatewaylab.notes_app import (create_db, fixed_starlette_app, flask_app, insert_note, list_notes,
                                  starlette_app, upstream_app)


@pytest.fixture
def upstream():
    with servers.serve_asgi(upstream_app, name="l08-test-upstream") as server:
        yield server.url


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "notes.db")
    create_db(path)
    create_db(path)  # twice is fine: IF NOT EXISTS
    return path


def test_the_upstream_answers_the_first_word_after_its_delay(upstream):
    started = time.perf_counter()
    assert httpx.get(upstream + "/tag", params={"text": "Buy milk"}).json() == {"tag": "buy"}
    assert time.perf_counter() - started >= 0.2
    started = time.perf_counter()
    assert httpx.get(upstream + "/tag", params={"text": "", "delay": "0"}).json() == {"tag": "empty"}
    assert time.perf_counter() - started < 0.2
    assert httpx.get(upstream + "/tag", params={"text": 'say "hi"', "delay": "0"}).json() == {"tag": "say"}


def test_notes_keep_any_text_and_are_committed(db):
    text = "It's 'quoted'; DROP TABLE notes"
    first, second = insert_note(db, text, "it's"), insert_note(db, "two", "two")
    assert (first, second) == (1, 2)
    assert list_notes(db) == [{"id": 1, "text": text, "tag": "it's"}, {"id": 2, "text": "two", "tag": "two"}]


@pytest.mark.parametrize("make", [starlette_app, fixed_starlette_app])
def test_both_starlette_apps_speak_the_api(make, db, upstream):
    app = make(db, upstream)
    with servers.serve_asgi(app, name="l08-test-notes", lifespan="on") as server:
        reply = httpx.post(server.url + "/notes", params={"text": "Call Ann"}, timeout=10)
        assert reply.status_code == 201 and reply.json() == {"id": 1, "text": "Call Ann", "tag": "call"}
        assert httpx.get(server.url + "/notes").json() == [{"id": 1, "text": "Call Ann", "tag": "call"}]
        assert app.state.monitor.lags  # the monitor beats on the server's loop


def test_the_flask_app_speaks_the_same_api(db, upstream):
    client = flask_app(db, upstream).test_client()
    reply = client.post("/notes?text=Water+plants")
    assert reply.status_code == 201 and reply.get_json() == {"id": 1, "text": "Water plants", "tag": "water"}
    assert client.get("/notes").get_json() == [{"id": 1, "text": "Water plants", "tag": "water"}]


def test_the_blocking_app_stalls_its_loop_and_the_fixed_one_does_not(db, upstream):
    worst = {}
    for make in (starlette_app, fixed_starlette_app):
        app = make(db, upstream)
        with servers.serve_asgi(app, name="l08-test-notes", lifespan="on") as server:
            httpx.get(server.url + "/notes")
            seen = len(app.state.monitor.lags)
            threads = [threading.Thread(target=httpx.post, args=(server.url + "/notes",),
                                        kwargs={"params": {"text": "x"}, "timeout": 10}) for _ in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            time.sleep(0.05)  # the heartbeat notes a stall when it wakes, just after it
            worst[make.__name__] = max(late for _, late in app.state.monitor.lags[seen:])
    assert worst["starlette_app"] >= 0.15 > worst["fixed_starlette_app"], worst
    assert len(list_notes(db)) == 6
