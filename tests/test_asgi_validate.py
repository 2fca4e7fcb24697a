"""The ASGI validator: apps that keep the spec pass, and each broken rule raises ASGIValidationError naming who broke
it (server or app) and how. The last tests run it between real servers (uvicorn, the course's) and an app."""

import asyncio

import pytest

from gatewaylab.asgi_validate import ASGIValidationError, validator
from gatewaylab.servers import serve_asgi
from gatewaylab.wire import exchange, request


def http_scope(**changes):
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": "/", "raw_path": b"/", "query_string": b"",
             "root_path": "", "headers": [(b"host", b"x")], "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8000)}
    scope.update(changes)
    return scope


def run(app, scope=None, events=({"type": "http.request", "body": b"", "more_body": False},)):
    """Call validator(app) by hand; return what it sent."""
    incoming, sent = list(events), []

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(validator(app)(scope or http_scope(), receive, send))
    return sent


def app_sending(*messages, read=True):
    async def app(scope, receive, send):
        if read:
            await receive()
        for message in messages:
            await send(message)
    return app


START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
BODY = {"type": "http.response.body", "body": b"hi"}


def fails(match, app, **kwargs):
    with pytest.raises(ASGIValidationError, match=match):
        run(app, **kwargs)


def test_a_correct_app_passes_and_its_events_reach_the_server():
    assert run(app_sending(START, {**BODY, "more_body": True}, BODY)) == [START, {**BODY, "more_body": True}, BODY]


def test_it_is_an_assertion_error_as_wsgiref_validates_are():
    assert issubclass(ASGIValidationError, AssertionError)


@pytest.mark.parametrize("messages, match", [
    ((BODY,), "app: sent http.response.body before http.response.start"),
    ((START, START), "http.response.start twice"),
    ((START, BODY, BODY), "after the response had ended"),
    (({**START, "status": "200"},), "status must be an int"),
    (({**START, "status": 42},), "status must be an int from 100 to 599"),
    (({**START, "headers": [("content-type", "text/plain")]},), "must be bytes"),
    (({**START, "headers": [(b"Content-Type", b"text/plain")]},), r"must be lower-case \(b'content-type'\)"),
    (({**START, "headers": [(b"a", b"1", b"2")]},), r"\[name, value\] pair"),
    (({**START, "headers": [(b":status", b"200")]},), "pseudo header"),
    (({**START, "headers": {b"a": b"1"}},), "list of"),
    ((START, {**BODY, "body": "hi"}), "body must be bytes"),
    ((START, {**BODY, "more_body": 1}), "more_body must be True or False"),
    (({"type": "http.response.begin", "status": 200},), "'http.response.begin'"),
    ((("http.response.start", 200),), "not a dict"),
    ((START,), "returned with the response started"),
    ((), "returned with the response not started"),
])
def test_each_broken_rule_of_the_app_is_named(messages, match):
    fails(match, app_sending(*messages))


def test_request_header_names_need_not_be_lower_case():
    # www spec: request header names "should be lowercased, but it is not required".
    run(app_sending(START, BODY), scope=http_scope(headers=[(b"Host", b"x")]))
    fails("must be bytes", app_sending(START, BODY), scope=http_scope(headers=[("host", "x")]))


@pytest.mark.parametrize("changes, match", [
    ({"method": "get"}, "upper-case"), ({"asgi": {"version": "2.0"}}, "'3.0'"), ({"http_version": "1"}, "http_version"),
    ({"path": b"/"}, r"scope\['path'\] must be str"), ({"query_string": ""}, "query_string"),
    ({"client": "127.0.0.1"}, r"\[host, port\]"), ({"state": []}, "state"),
    ({"headers": [(b":authority", b"x")]}, "pseudo header"),
])
def test_a_server_s_broken_scope_is_named(changes, match):
    fails("server: .*" + match, app_sending(START, BODY), scope=http_scope(**changes))


def test_a_server_s_broken_events_are_named():
    more = {"type": "http.request", "body": b"a", "more_body": True}
    last = {"type": "http.request", "body": b"b", "more_body": False}

    async def reader(scope, receive, send):
        for _ in range(3):
            await receive()
    fails("server: an http.request event came after the body had ended", reader, events=[last, last])
    fails("server: http.request's body must be bytes", reader, events=[{**more, "body": "a"}])
    fails("server: receive.. gave 'websocket.connect'", reader, events=[{"type": "websocket.connect"}])
    run(app_sending(START, BODY), events=[more, last])


def test_an_app_may_end_without_a_response_once_the_client_has_gone():
    async def long_poll(scope, receive, send):
        while (await receive())["type"] != "http.disconnect":
            pass
    run(long_poll)


def test_trailers_follow_the_body_only_when_announced():
    trailers = {"type": "http.response.trailers", "headers": [(b"x-checksum", b"1")]}
    run(app_sending({**START, "trailers": True}, BODY, trailers))
    fails("'http.response.trailers'", app_sending(START, BODY, trailers))
    # A second body after the last, trailers announced: named so, not as a body before the start.
    fails("after the body had ended .more_body False.; it announced trailers",
          app_sending({**START, "trailers": True}, BODY, BODY))


def test_lifespan_order_is_checked():
    async def app(scope, receive, send):
        assert (await receive())["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})
        assert (await receive())["type"] == "lifespan.shutdown"
        await send({"type": "lifespan.shutdown.complete"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    events = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    run(app, scope=scope, events=events)
    fails("app: sent 'lifespan.shutdown.complete' in the lifespan scope; it answers startup",
          app_sending({"type": "lifespan.shutdown.complete"}), scope=scope, events=events)
    fails("server: receive.. gave 'lifespan.shutdown' in the lifespan scope, where 'lifespan.startup' was due",
          app, scope=scope, events=events[::-1])


def test_an_app_that_is_not_async_is_named():
    fails("app: calling it gave None, not something to await", lambda scope, receive, send: None)


def test_an_app_that_returns_an_app_s_coroutine_unawaited_is_named():
    inner = app_sending(START, BODY)

    async def outer(scope, receive, send):
        return inner(scope, receive, send)  # the await left out

    fails("app: returned app.* coroutine, not awaited, so that app never ran", outer)


def test_websocket_scopes_pass_through():
    run(app_sending({"type": "websocket.accept"}, read=False), scope={"type": "websocket"})


@pytest.mark.parametrize("server", ["uvicorn", "gatewaylab"])
def test_real_servers_keep_the_spec_under_the_validator(server):
    async def echo(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    import time
    with serve_asgi(validator(echo), name=f"test-validate-{server}", server=server) as running:
        raw = request("POST", "/", [("Transfer-Encoding", "chunked")], b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        reply = exchange(running.address, time.monotonic() + 3, raw)
    assert (reply.status, reply.body) == (200, b"abcde")
