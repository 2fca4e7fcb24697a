"""gatewaylab.bridges: the two WSGI-to-ASGI adapters under uvicorn, measured, and kept as "10.bridges".

Timings are compared with generous margins (other work shares the cores): a serialised run can never be faster than
requests x delay, and a concurrent one is far below it."""

import threading

import httpx
import pytest

from gatewaylab import bridges, measurements
from gatewaylab.servers import running, serve_wsgi

pytestmark = pytest.mark.xdist_group("l10-checks")


@pytest.fixture(autouse=True)
def _no_server_left():
    yield
    assert not [name for name in running() if name.startswith("bridge")]


def test_thread_noting_answers_with_its_thread_and_notes_it():
    app = bridges.ThreadNoting()
    with serve_wsgi(app, name="bridge-test", server="gatewaylab", threads=2) as server:
        reply = httpx.get(f"{server.url}/?delay=0")
    assert reply.status_code == 200 and reply.headers["content-type"] == "text/plain"
    assert app.threads == [reply.text] and reply.text != threading.current_thread().name


@pytest.mark.parametrize("query", ["delay=x", "delay=-3"])
def test_thread_noting_takes_a_bad_delay_as_a_short_one(query):
    app = bridges.ThreadNoting()
    with serve_wsgi(app, name="bridge-test", server="gatewaylab") as server:
        reply = httpx.get(f"{server.url}/?{query}", timeout=5)
    assert reply.status_code == 200


def test_asgiref_serialises_and_a2wsgi_does_not():
    requests, delay = 4, 0.4
    run = bridges.race(requests, delay)
    assert set(run.results) == {"WsgiToAsgi", "a2wsgi"}
    assert all(result.ok == requests for result in run.results.values())
    assert run.threads["WsgiToAsgi"] and len(run.threads["WsgiToAsgi"]) == 1  # one shared thread
    assert len(run.threads["a2wsgi"]) == requests  # a pool: one thread per request at once
    assert run.results["WsgiToAsgi"].wall >= requests * delay * 0.95
    assert run.results["a2wsgi"].wall < requests * delay * 0.6


def test_figures_and_summary_say_what_was_measured():
    run = bridges.recorded_race(2, 0.1)
    kept = measurements.load()["10.bridges"]
    figures = kept["figures"]
    assert figures["requests"] == 2 and figures["delay_s"] == 0.1
    assert set(figures["wall_s"]) == {"WsgiToAsgi", "a2wsgi"}
    assert figures["wall_s"]["WsgiToAsgi"] == round(run.results["WsgiToAsgi"].wall, 3)
    assert figures["threads"] == {"WsgiToAsgi": 1, "a2wsgi": 2}
    assert kept["summary"].startswith("2 x 0.1 s under uvicorn: WsgiToAsgi ")
    assert "in 1 thread," in kept["summary"] and kept["summary"].endswith("in 2 threads")


def test_the_panel_measures_the_asgiref_adapter_and_plots_both():
    panel = bridges.bridge_panel(2, 0.1)
    run = panel.run(prediction=0.2)
    assert panel.last_plot is not None and "WsgiToAsgi" in panel.last_plot.summary
    assert "a2wsgi" in panel.last_plot.summary
    assert panel.comparison(0.2, run.results["WsgiToAsgi"].wall).startswith("you predicted 0.20 s")
    assert "10.bridges" in measurements.load()


SCOPE = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
         "path": "/app/café", "raw_path": b"/app/caf%C3%A9", "query_string": b"a=1&b=%20", "root_path": "/app",
         "headers": [(b"host", b"example.org"), (b"content-type", b"text/plain"), (b"content-length", b"99"),
                     (b"x-tag", b"one"), (b"x-tag", b"two")],
         "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}


def test_environ_for_keeps_pep_3333():
    from wsgiref.validate import check_environ

    environ = bridges.environ_for(SCOPE, b"hello")
    check_environ(environ)  # raises AssertionError on a broken rule
    assert environ["SCRIPT_NAME"] == "/app" and environ["PATH_INFO"] == "/caf\u00c3\u00a9"  # UTF-8 as latin-1
    assert environ["QUERY_STRING"] == "a=1&b=%20" and environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["CONTENT_TYPE"] == "text/plain" and "HTTP_CONTENT_TYPE" not in environ
    assert environ["CONTENT_LENGTH"] == "5"  # the body's own length, not the header's
    assert environ["HTTP_X_TAG"] == "one,two" and environ["HTTP_HOST"] == "example.org"
    assert environ["wsgi.input"].read() == b"hello" and environ["wsgi.multithread"] is True


def test_environ_for_a_scope_without_server_or_root_path():
    scope = {key: value for key, value in SCOPE.items() if key not in ("server", "root_path")}
    environ = bridges.environ_for(scope, b"")
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("localhost", "80")
    assert environ["SCRIPT_NAME"] == "" and environ["PATH_INFO"].startswith("/app/")


def test_scope_for_keeps_the_asgi_spec_and_comes_back():
    from gatewaylab.asgi_validate import check_http_scope

    environ = bridges.environ_for(SCOPE, b"hello")
    scope = bridges.scope_for(environ)
    check_http_scope(scope)  # raises ASGIValidationError on a broken rule
    assert scope["path"] == "/app/café" and scope["root_path"] == "/app" and "raw_path" not in scope
    assert scope["query_string"] == b"a=1&b=%20" and scope["method"] == "POST"
    headers = dict(scope["headers"])
    assert headers[b"x-tag"] == b"one,two" and headers[b"content-length"] == b"5"
    assert headers[b"content-type"] == b"text/plain" and scope["server"] == ("127.0.0.1", 8000)
    assert "client" not in scope  # environ_for sets no REMOTE_ADDR
    assert bridges.scope_for({**environ, "REMOTE_ADDR": "10.0.0.1", "REMOTE_PORT": "4000"})["client"] == \
        ("10.0.0.1", 4000)
