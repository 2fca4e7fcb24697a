"""The conformance probe (gatewaylab.probe): its verdicts on known servers, its time limits, and how it renders."""

import base64
import hashlib
import re
import socket
import time

import httpx
import pytest

from gatewaylab.probe import (CHECKS, REALTIME_CHECKS, TEXT_WIDTH, CheckResult, ProbeReport, SideBySide, column_widths,
                              content_type, parse_address, probe, probe_app, probe_asgi_app, probe_side_by_side, route)
from gatewaylab.servers import serve_asgi, serve_socket, serve_wsgi

CHECK_NAMES = [one.name for one in CHECKS]


def results_by_name(report):
    return {result.name: result for result in report.results}


WEBSOCKET_CHECKS = [one.name for one in REALTIME_CHECKS if one.needs == "websocket"]


def test_the_course_server_passes_every_check_and_serves_in_parallel():
    with serve_wsgi(probe_app, "probe-course", server="gatewaylab", threads=8) as server:
        report = probe(server.url)
        realtime = probe(server.url, realtime=True)
    failed = [(r.name, r.got) for r in report.failed]
    assert report.passed and not failed, failed
    assert [r.name for r in report.results] == CHECK_NAMES
    concurrency = report.results[-1]
    assert concurrency.passed is None and "in parallel" in concurrency.got
    assert realtime.passed and [r.name for r in realtime.results] == CHECK_NAMES + [
        "server-sent events"] + WEBSOCKET_CHECKS
    results = results_by_name(realtime)
    assert results["server-sent events"].passed  # a WSGI app streams events too, a thread held for each stream
    for name in WEBSOCKET_CHECKS:  # a WSGI app offers no WebSocket: the checks are facts, not failures
        assert results[name].passed is None and results[name].got == "not run: the app does not offer websocket"


def test_the_course_asgi_server_passes_every_check_websocket_included():
    with serve_asgi(probe_asgi_app, "probe-course-asgi", server="gatewaylab", lifespan="on") as server:
        report = probe(server.url, realtime=True)
    assert report.passed, [(r.name, r.got) for r in report.failed]
    assert len(WEBSOCKET_CHECKS) == 9 and all(results_by_name(report)[name].passed for name in WEBSOCKET_CHECKS)
    results = results_by_name(report)
    assert results["WebSocket refused by the app"].got == "403"
    assert results["WebSocket frame too big"].got == "close 1009"
    assert results["WebSocket fragments"].got == "opcode 0xa b'between', opcode 0x1 b'fragments'"
    assert "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in results_by_name(report)["WebSocket handshake"].got


def test_side_by_side_with_the_realtime_checks():
    with serve_asgi(probe_asgi_app, "probe-side-asgi", server="gatewaylab") as asgi, \
            serve_wsgi(probe_app, "probe-side-wsgi", server="gatewaylab", threads=2) as wsgi:
        side = probe_side_by_side({"asgi": asgi.url, "wsgi": wsgi.url}, checks=["GET /"], realtime=True)
        everything = probe_side_by_side({"asgi": asgi.url}, realtime=True)
    assert [name for name, _ in side.rows()] == ["GET /"]  # named checks: only those
    rows = dict(everything.rows())
    assert set(rows) == set(CHECK_NAMES) | {one.name for one in REALTIME_CHECKS}
    assert "WebSocket echo" in str(everything) and "INFO" not in "".join(r.mark for r in rows["WebSocket echo"])


def test_an_asgi_server_without_websocket_fails_the_websocket_checks():
    from gatewaylab.asgi import ASGIServer

    with ASGIServer(probe_asgi_app, port=0) as server:  # serves the handshake as a plain GET: 404
        results = results_by_name(probe(server.server_address, checks=WEBSOCKET_CHECKS + ["server-sent events"]))
    assert results["server-sent events"].passed
    assert all(results[name].passed is False for name in WEBSOCKET_CHECKS)
    assert results["WebSocket handshake"].got.startswith("404")


def test_the_sequential_course_server_is_reported_as_one_at_a_time_not_failed():
    with serve_wsgi(probe_app, "probe-sequential", server="gatewaylab", threads=1) as server:
        report = probe(server, checks=["GET /", "5 slow requests at once"])
    concurrency = results_by_name(report)["5 slow requests at once"]
    # One at a time takes 5 x 0.5 s; a busy machine may stretch that a little: "about 0.9 at a time", not "about 1"
    at_once = re.search(r"about ([\d.]+) at a time", concurrency.got)
    assert concurrency.passed is None and at_once and 0.7 <= float(at_once[1]) <= 1.2, concurrency.got
    assert report.passed


def test_wsgiref_shows_its_known_gaps():
    checks = ["GET /", "POST with a chunked body", "two requests on one connection", "HEAD /"]
    with serve_wsgi(probe_app, "probe-wsgiref", server="wsgiref") as server:
        results = results_by_name(probe(server.url, checks=checks))
    assert results["GET /"].passed
    assert results["POST with a chunked body"].passed is False  # wsgiref does not de-chunk request bodies
    assert results["two requests on one connection"].passed is False  # it speaks HTTP/1.0: one request per connection
    assert results["HEAD /"].passed is False and "bytes of body" in results["HEAD /"].got


def test_uvicorn_with_the_asgi_probe_app():
    checks = ["GET /", "HEAD /", "query string", "percent-encoded path", "POST with Content-Length",
              "POST with a chunked body", "two requests on one connection", "streaming", "5 slow requests at once"]
    with serve_asgi(probe_asgi_app, "probe-uvicorn", lifespan="on") as server:
        report = probe(server.url, checks=checks)
        websocket = results_by_name(probe(server.url, checks=WEBSOCKET_CHECKS + ["server-sent events"]))
    assert report.passed, [(r.name, r.got) for r in report.failed]
    assert "in parallel" in results_by_name(report)["5 slow requests at once"].got
    assert websocket["server-sent events"].passed
    # Seen with uvicorn 0.54 and websockets 17.4: a wrong version gets 400 without the Sec-WebSocket-Version header
    # RFC 6455 4.4 requires; every other WebSocket check passes.
    assert websocket["WebSocket version 8"].passed is False and websocket["WebSocket version 8"].got == (
        "400, Sec-WebSocket-Version None")
    assert all(websocket[name].passed for name in WEBSOCKET_CHECKS if name != "WebSocket version 8")


def sloppy_server(listener):
    """Answers every request with the same 200 and closes, whatever was asked."""
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(1)
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            except OSError:
                pass


def test_a_sloppy_server_fails_the_checks_it_should_fail():
    checks = ["GET /", "bad request line", "HTTP/1.1 without Host", "two requests on one connection"]
    with serve_socket(sloppy_server, "probe-sloppy") as server:
        results = results_by_name(probe(server.url, checks=checks))
    assert results["GET /"].passed is False and "b'ok'" in results["GET /"].got
    assert results["bad request line"].passed is False and results["bad request line"].got == "200 OK"
    assert results["HTTP/1.1 without Host"].passed is False
    assert results["two requests on one connection"].passed is False
    assert "closed" in results["two requests on one connection"].got


def sloppy_websocket_server(listener):
    """Offers WebSocket and gets it all wrong: an accept key without the GUID, 400 without the version it speaks,
    every frame sent back as it came (masked, pings as pings, no close answered); server-sent events buffered."""
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(2)
            try:
                serve_sloppily(conn)
            except OSError:
                pass


def serve_sloppily(conn):
    head = b""
    while b"\r\n\r\n" not in head:
        piece = conn.recv(4096)
        if not piece:
            return
        head += piece
    head, _, rest = head.partition(b"\r\n\r\n")
    if head.startswith(b"GET /offers"):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\nConnection: close\r\n\r\nsse websocket\n")
    elif head.startswith(b"GET /events"):
        time.sleep(0.8)  # all the events at once, after the last is made
        events = b"".join(b"id: %d\ndata: event %d of 4\n\n" % (i, i) for i in range(1, 5))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (len(events), events))
    elif b"Sec-WebSocket-Version: 8" in head:
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    else:
        key = re.search(rb"Sec-WebSocket-Key: (\S+)", head)[1]
        wrong = base64.b64encode(hashlib.sha1(key).digest())  # the GUID left out
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + wrong + b"\r\n\r\n" + rest)
        while piece := conn.recv(65536):
            conn.sendall(piece)


def test_a_sloppy_websocket_server_fails_every_websocket_check():
    with serve_socket(sloppy_websocket_server, "probe-sloppy-ws") as server:
        results = results_by_name(probe(server.url, checks=WEBSOCKET_CHECKS + ["server-sent events"], timeout=1.5))
    failed = {name: result.got for name, result in results.items() if result.passed is False}
    assert set(failed) == set(WEBSOCKET_CHECKS) | {"server-sent events"}, results
    assert failed["WebSocket handshake"].startswith("101, Sec-WebSocket-Accept ")
    assert "masked frame" in failed["WebSocket echo"] and "masked frame" in failed["WebSocket ping"]
    assert failed["WebSocket version 8"] == "400, Sec-WebSocket-Version None"
    assert failed["server-sent events"].startswith("200 text/event-stream, 4 events at 0.8")


def handshake_then_silence(listener):
    """Completes a WebSocket handshake properly, then reads every frame and never answers one: a server that
    waits for the payload a frame announces, and neither pongs nor echoes."""
    held = []
    try:
        while True:
            conn, _ = listener.accept()
            held.append(conn)
            conn.settimeout(2)
            try:
                head = conn.recv(65536)
                if head.startswith(b"GET /offers"):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\nConnection: close\r\n\r\n"
                                 b"sse websocket\n")
                    continue
                key = re.search(rb"Sec-WebSocket-Key: (\S+)", head)[1].decode()
                accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest())
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            except (OSError, TypeError):
                pass
    finally:
        for conn in held:
            conn.close()


GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def test_a_server_that_waits_for_an_announced_payload_fails_the_size_and_fragment_checks():
    names = ["WebSocket handshake", "WebSocket frame too big", "WebSocket fragments"]
    with serve_socket(handshake_then_silence, "probe-ws-silent") as server:
        started = time.monotonic()
        results = results_by_name(probe(server.url, checks=names, timeout=1.0))
    assert time.monotonic() - started < 10
    assert results["WebSocket handshake"].passed
    assert results["WebSocket frame too big"].passed is False
    assert results["WebSocket frame too big"].got == "no complete answer within 1 s"
    assert results["WebSocket fragments"].passed is False


def test_the_app_says_what_it_offers():
    from gatewaylab.probe import app_offers

    with serve_wsgi(probe_app, "probe-offers-wsgi", server="gatewaylab") as wsgi, \
            serve_asgi(probe_asgi_app, "probe-offers-asgi", server="gatewaylab") as asgi:
        assert app_offers(wsgi.address) == {"sse"} and app_offers(asgi.address) == {"sse", "websocket"}
    with serve_socket(sloppy_server, "probe-offers-sloppy") as server:
        assert app_offers(server.address) == {"ok"}  # whatever it says: no check needs "ok"
        result = results_by_name(probe(server.url, checks=["WebSocket echo"]))["WebSocket echo"]
    assert result.passed is None and result.got == "not run: the app does not offer websocket"
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        assert app_offers(placeholder.getsockname()) == set()  # nothing listening: nothing offered


def silent_server(listener):
    """Accepts connections and never answers: the probe must give up, not hang."""
    held = []
    try:
        while True:
            held.append(listener.accept()[0])  # accept() raises OSError once the listener is shut down
    finally:
        for conn in held:
            conn.close()


def test_a_server_that_never_answers_fails_within_the_time_limit():
    with serve_socket(silent_server, "probe-silent") as server:
        started = time.monotonic()
        report = probe(server.address, checks=["GET /", "bad request line", "streaming"], timeout=0.5)
        elapsed = time.monotonic() - started
    assert elapsed < 3
    assert all(r.passed is False and r.got == "no complete answer within 0.5 s" for r in report.results)


def garbage_server(listener):
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n")


def test_an_invalid_response_fails_with_the_parsers_reason():
    with serve_socket(garbage_server, "probe-garbage") as server:
        result = probe(server.url, checks=["GET /"]).results[0]
    assert result.passed is False and result.got.startswith("not a valid HTTP/1.1 response")


def test_nothing_listening_is_a_failed_check_not_an_exception():
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]  # bound but not listening: connections are refused
        result = probe(f"127.0.0.1:{port}", checks=["GET /"]).results[0]
    assert result.passed is False and "refused" in result.got


def test_reports_render_as_html_and_text():
    with serve_wsgi(probe_app, "probe-render", server="gatewaylab", threads=4) as good, \
            serve_socket(sloppy_server, "probe-render-sloppy") as bad:
        side = probe_side_by_side({"course": good.url, "sloppy <b>": bad.url}, checks=["GET /", "bad request line"])
    good_report, bad_report = side.reports["course"], side.reports["sloppy <b>"]
    assert isinstance(good_report, ProbeReport) and good_report.passed and not bad_report.passed
    text = str(good_report)
    assert "2 of 2 checks passed" in text and "PASS" in text and "GET /" in text
    page = bad_report._repr_html_()
    assert page.count("<tr>") == 3 and "FAIL" in page and "0 of 2 checks passed" in page
    both = side._repr_html_()
    assert "sloppy &lt;b&gt;" in both and "<b>sloppy" not in both  # labels are escaped
    assert both.count("PASS") == 2 and both.count("FAIL") == 2
    plain = str(side)
    assert plain.splitlines()[0].split() == ["check", "course", "sloppy", "<b>"]
    assert "bad request line" in plain
    # every summary names its server as given, not by its URL
    assert plain.splitlines()[-2:] == ["course: 2 of 2 checks passed", "sloppy <b>: 0 of 2 checks passed"]
    assert good_report.summary() == "course: 2 of 2 checks passed" and good_report.target == good.url.rstrip("/")
    assert "<b>course: 2 of 2 checks passed</b>" in good_report._repr_html_()
    assert "course: 2 of 2 checks passed<br>sloppy &lt;b&gt;: 0 of 2 checks passed" in both
    assert "http://" not in plain and "http://" not in both


def test_a_probe_without_a_label_names_the_server_by_its_url_and_with_one_by_the_label():
    with serve_wsgi(probe_app, "probe-label", server="gatewaylab") as server:
        unnamed = probe(server.url, checks=["GET /"])
        named = probe(server.url, checks=["GET /"], label="yours")
    host, port = server.address
    assert unnamed.summary() == f"http://{host}:{port}: 1 of 1 checks passed"
    assert named.summary() == "yours: 1 of 1 checks passed" and str(named).splitlines()[0] == named.summary()


def fake_report(label, gots):
    results = [CheckResult(name, "kind", "expected", got, passed, 0.1)
               for (name, (got, passed)) in gots.items()]
    return ProbeReport(f"http://127.0.0.1:{len(label)}", results, label)


LONG = ("connection closed or reset without a complete answer (the server closed the connection without an "
        "answer)")


def test_the_text_table_wraps_long_cells_instead_of_cutting_them():
    side = SideBySide({
        "yours": fake_report("yours", {"Content-Length and Transfer-Encoding": (LONG, False), "GET /": ("200 OK", True)}),
        "course": fake_report("course", {"Content-Length and Transfer-Encoding": ("400 Bad Request", True),
                                         "GET /": ("200 OK, body b'Hello from the probe app\\n'", True)}),
        "wsgiref": fake_report("wsgiref", {"Content-Length and Transfer-Encoding": ("x" * 70, False),
                                           "GET /": ("200 OK", True)}),
    })
    text = str(side)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= TEXT_WIDTH
    assert lines[0].split() == ["check", "yours", "course", "wsgiref"] and set(lines[1]) == {"-", " "}
    assert lines[-3:] == ["yours: 1 of 2 checks passed", "course: 2 of 2 checks passed",
                          "wsgiref: 1 of 2 checks passed"]
    # Each column, read top to bottom, holds whole cells: "FAIL " + the 105-character answer, every word of it.
    starts = [lines[0].index(label) for label in ("check", "yours", "course", "wsgiref")]
    ends = starts[1:] + [None]
    columns = [" ".join(line[start:end].strip() for line in lines[2:-4] if line[start:end].strip())
               for start, end in zip(starts, ends)]
    assert f"FAIL {LONG}" in columns[1]
    assert "PASS 200 OK, body b'Hello from the probe app\\n'" in columns[2]
    assert "x" * 70 in columns[3].replace(" ", "")  # a word longer than its column is broken, not dropped
    assert "Content-Length and Transfer-Encoding" in columns[0]
    assert "" in lines  # wrapped rows are set apart by a blank line


def test_column_widths_share_the_line_fairly():
    assert column_widths([10, 10], 100) == [10, 10]  # what fits keeps its width
    assert column_widths([20, 200, 200], 100) == [20, 40, 40]  # the narrow column keeps its width, the wide share
    assert column_widths([200] * 20, 100) == [12] * 20  # never narrower than 12


def test_parse_address_takes_urls_addresses_and_servers():
    assert parse_address("http://127.0.0.1:8123/some/path") == ("127.0.0.1", 8123)
    assert parse_address("localhost:9000") == ("localhost", 9000)
    assert parse_address(("127.0.0.1", 80)) == ("127.0.0.1", 80)
    with serve_wsgi(probe_app, "probe-address", server="gatewaylab") as server:
        assert parse_address(server) == server.address
    with pytest.raises(ValueError, match="plain HTTP"):
        parse_address("https://example.org")
    with pytest.raises(TypeError):
        parse_address(8000)
    with pytest.raises(ValueError, match="unknown checks"):
        probe("127.0.0.1:1", checks=["no such check"])
    assert not {one.name for one in CHECKS} & {one.name for one in REALTIME_CHECKS}
    assert all(one.needs in ("sse", "websocket") for one in REALTIME_CHECKS) and all(not one.needs for one in CHECKS)
    with pytest.raises(ValueError):
        probe_side_by_side({})


def test_the_probe_app_routes():
    assert route("GET", "/", "", b"") == ("200 OK", [b"Hello from the probe app\n"], 0.0)
    assert route("GET", "/query", "a=%20", b"")[1] == [b"a=%20"]
    assert route("POST", "/echo", "", b"body")[1] == [b"body"]
    status, parts, delay = route("GET", "/stream", "n=3&delay=0.1", b"")
    assert len(parts) == 3 and delay == 0.1
    assert route("GET", "/slow", "delay=100", b"")[2] == 5.0  # capped
    assert route("GET", "/stream", "n=x", b"")[0].startswith("400")
    assert route("GET", "/nowhere", "", b"")[0].startswith("404")
    status, events, delay = route("GET", "/events", "n=2&delay=0.1", b"")
    assert events == [b"id: 1\ndata: event 1 of 2\n\n", b"id: 2\ndata: event 2 of 2\n\n"] and delay == 0.1
    assert content_type("/events") == "text/event-stream" and content_type("/").startswith("text/plain")


def test_the_wsgi_and_asgi_probe_apps_agree():
    with serve_wsgi(probe_app, "probe-agree-wsgi", server="gatewaylab", threads=2) as wsgi, \
            serve_asgi(probe_asgi_app, "probe-agree-asgi") as asgi:
        for path in ["/", "/query?x=%41", "/path/%E2%9C%93", "/stream?n=2&delay=0", "/nowhere", "/events?delay=0"]:
            one, other = httpx.get(wsgi.url + path), httpx.get(asgi.url + path)
            assert (one.status_code, one.content) == (other.status_code, other.content), path
            assert one.headers["content-type"] == other.headers["content-type"], path
        one = httpx.post(wsgi.url + "/echo", content=b"same")
        other = httpx.post(asgi.url + "/echo", content=b"same")
        assert one.content == other.content == b"same"
