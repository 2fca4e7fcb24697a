"""gatewaylab.sse: the WHATWG event-stream parser (every line ending, split anywhere) and the reconnecting client
against real servers."""

import asyncio
import threading

import pytest

from gatewaylab.servers import serve_asgi
from gatewaylab.sse import Client, Event, Parser, StreamFailed, comment, format_event, parse

STREAM = ("\ufeff: hello\n"
          "retry: 1500\n"
          "event: reading\n"
          "id: 1\n"
          "data: first line\n"
          "data:second line\n"
          "data:  two spaces, one kept\n"
          "\n"
          "data\n"
          "\n"
          "id: 2\n"
          "data: {\"t\": 20.5}\n"
          "unknown: ignored\n"
          "retry: soon\n"
          "\n"
          "id\n"
          "\n"
          "data: not ended")
EXPECTED = [Event("first line\nsecond line\n two spaces, one kept", "reading", "1", 1500),
            Event("", "message", "1", 1500),
            Event('{"t": 20.5}', "message", "2", 1500)]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_the_whole_stream_with_each_line_ending(newline):
    text = STREAM.replace("\n", newline)
    assert parse(text) == EXPECTED
    parser = Parser()
    assert parser.feed(text.encode("utf-8")) == EXPECTED
    assert parser.last_event_id == "" and parser.retry == 1500 and parser.comments == 1  # "id" alone reset it


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_one_character_at_a_time_and_one_byte_at_a_time(newline):
    text = STREAM.replace("\n", newline)
    parser = Parser()
    assert [event for char in text for event in parser.feed(char)] == EXPECTED
    parser = Parser()
    data = text.encode("utf-8")
    assert [event for i in range(len(data)) for event in parser.feed(data[i:i + 1])] == EXPECTED


def test_a_crlf_split_between_chunks_is_one_line_end_and_cr_cr_is_two():
    parser = Parser()
    assert parser.feed("data: a\r") == []
    assert parser.feed("\n\r\n") == [Event("a")]
    assert parse("data: a\r\rdata: b\r\r") == [Event("a"), Event("b")]


def test_ids_with_null_are_ignored_and_an_empty_data_line_makes_an_event():
    assert parse("id: 5\n\nid: a\0b\ndata:\n\n") == [Event("", "message", "5", None)]
    assert parse("data: x\nid: 9\n\n")[0].id == "9"  # the id applies to the event it is in


def test_retry_takes_only_digits():
    for value, expected in (("250", 250), ("2.5", None), ("-1", None), (" 10", None), ("10", 10), ("", None), ("١٢", None)):
        assert Parser().feed(f"retry: {value}\ndata: x\n\n")[0].retry == expected, value


def test_format_event_round_trips_and_refuses_a_newline_in_the_id():
    sent = format_event("one\ntwo", event="tick", id="42", retry=100) + comment("beat") + format_event("3")
    assert sent.startswith(b"event: tick\nid: 42\nretry: 100\ndata: one\ndata: two\n\n: beat\n")
    assert parse(sent) == [Event("one\ntwo", "tick", "42", 100), Event("3", "message", "42", 100)]
    with pytest.raises(ValueError):
        format_event("x", id="1\n2")


# --- the client against a server ----------------------------------------------------------------------------------

def feed_app(log):
    """Sends 3 events per connection (ids go on from Last-Event-ID), with a heartbeat, then ends the stream."""
    async def app(scope, receive, send):
        headers = dict(scope["headers"])
        log.append(headers.get(b"last-event-id"))
        if scope["path"] == "/gone":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        start = int(headers.get(b"last-event-id", b"0")) + 1
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8")]})
        await send({"type": "http.response.body", "body": b"retry: 50\n" + comment("hi"), "more_body": True})
        for n in range(start, start + 3):
            await asyncio.sleep(0.01)
            await send({"type": "http.response.body", "body": format_event(f"value {n}", id=str(n)),
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    return app


@pytest.mark.parametrize("kind", ["uvicorn", "gatewaylab"])
def test_the_client_reconnects_with_last_event_id_after_the_retry_it_was_given(kind):
    log = []
    with serve_asgi(feed_app(log), name="sse-test", server=kind, lifespan="off") as server:
        client = Client(server.url + "/feed", timeout=5)
        events = list(client.events(limit=7))
    assert [e.data for e in events] == [f"value {n}" for n in range(1, 8)]
    assert [e.id for e in events] == [str(n) for n in range(1, 8)]
    assert log == [None, b"3", b"6"] and client.connections == 3
    assert client.retry_ms == 50 and client.comments == 3


def test_a_204_or_a_wrong_content_type_stops_the_client():
    log = []
    with serve_asgi(feed_app(log), name="sse-test", lifespan="off") as server:
        with pytest.raises(StreamFailed, match="204"):
            list(Client(server.url + "/gone", timeout=5).events())
    assert log == [None]  # no second try


def test_reconnects_is_a_limit():
    log = []
    with serve_asgi(feed_app(log), name="sse-test", lifespan="off") as server:
        events = list(Client(server.url, timeout=5, reconnects=1, retry_ms=10).events())
    assert len(events) == 6 and len(log) == 2


def test_nothing_is_left_running():
    before = threading.active_count()
    test_reconnects_is_a_limit()
    assert threading.active_count() <= before


def test_a_server_that_never_answers_counts_as_an_attempt():
    import socket

    from gatewaylab.servers import serve_socket

    held = []

    def silent(listener):
        while True:
            held.append(listener.accept()[0])  # reads nothing, answers nothing

    with serve_socket(silent, name="sse-silent") as server:
        client = Client(server.url, timeout=0.3, reconnects=1, retry_ms=10)
        assert list(client.events()) == []
    assert client.attempts == 2 and client.connections == 0
    for sock in held:
        sock.close()
