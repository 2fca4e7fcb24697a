"""gatewaylab.wire, the strict client the probe and the checks read servers' answers with."""

import socket
import time

import h11
import pytest

from gatewaylab.wire import Connection, exchange, request


def answering(reply: bytes):
    """A connected socket pair: the far end has already sent `reply` (and closed, if it ends with None)."""
    near, far = socket.socketpair()
    far.sendall(reply)
    return near, far


def test_two_pipelined_responses_on_one_socket():
    near, far = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 404 Not Found\r\n"
                          b"Content-Length: 0\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
    with near, far:
        connection = Connection.around(near, time.monotonic() + 2)
        first, second = connection.read_response(), connection.read_response()
    assert (first.status, first.body, first.keep_alive) == (200, b"hi", True)
    assert (second.status, second.reason, second.headers["x-a"]) == (404, "Not Found", "1, 2")


def test_a_body_until_close_ends_at_the_close_or_the_reset():
    near, far = answering(b"HTTP/1.1 200 OK\r\n\r\nall of it")
    far.close()
    with near:
        reply = Connection.around(near, time.monotonic() + 2).read_response()
    assert (reply.body, reply.keep_alive) == (b"all of it", False)


def test_silence_runs_into_the_deadline_and_a_close_without_answer_is_a_connection_error():
    near, far = answering(b"")
    with near, far:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            Connection.around(near, time.monotonic() + 0.3).read_response()
        assert time.monotonic() - started < 1.5
    near, far = answering(b"")
    far.close()
    with near, pytest.raises(ConnectionError):
        Connection.around(near, time.monotonic() + 2).read_response()


def test_a_malformed_answer_is_a_protocol_error():
    near, far = answering(b"HTTP/1.1 2000 OK\r\n\r\n")
    with near, far, pytest.raises(h11.RemoteProtocolError):
        Connection.around(near, time.monotonic() + 2).read_response()


def test_exchange_sends_raw_bytes_and_reads_the_answer():
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        def serve():
            conn, _ = listener.accept()
            with conn:
                assert conn.recv(1024).startswith(b"GET /x HTTP/1.1\r\nHost: probe\r\n")
                conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
        import threading
        thread = threading.Thread(target=serve)
        thread.start()
        reply = exchange(listener.getsockname(), time.monotonic() + 2, request("GET", "/x"))
        thread.join(2)
    assert reply.status == 204 and reply.body == b""
