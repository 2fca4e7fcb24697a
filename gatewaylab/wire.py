"""A strict HTTP/1.1 client connection, for testing servers: the probe and the exercise checks read answers with it.

    >>> connection = Connection(("127.0.0.1", 8000), deadline=time.monotonic() + 3)
    >>> connection.send(request("GET", "/"))       # raw bytes: it can send what no well-behaved client would
    >>> connection.read_response()                 # a Reply, read with h11, the parser httpx uses

Every read and write is bounded by a deadline, so a server that hangs makes a call fail, never hang; h11 reads each
answer strictly, so a malformed answer fails too. One h11 connection reads the whole socket, so the bytes of a next
response that arrive early are kept for it (pipelining).
"""
import socket
import time
from dataclasses import dataclass

import h11

__all__ = ["Reply", "Connection", "exchange", "request"]


@dataclass
class Reply:
    """One response as a strict client received it."""

    status: int
    reason: str
    headers: dict  # lower-case name -> value (repeats joined with ", ")
    body: bytes
    first_data: float | None  # seconds from sending the request to the first body bytes
    elapsed: float  # seconds from sending the request to the end of the response
    keep_alive: bool  # False if the response said it is the last on this connection

    def summary(self):
        return f"{self.status} {self.reason}"


class Connection:
    """One connection to the server under test. Every read and write is bounded by the deadline, so nothing here
    can wait longer than its caller allows: a server that hangs makes read_response() raise TimeoutError.

    Connection(address, deadline) connects; Connection.around(sock, deadline) reads on a socket opened already.
    Raises ConnectionError when the server closes without an answer, h11.RemoteProtocolError when its answer is not
    valid HTTP/1.1."""

    def __init__(self, address, deadline, sock=None):
        self.deadline = deadline
        self.sock = sock if sock is not None else socket.create_connection(address, timeout=self.time_left())
        self.parser = h11.Connection(h11.CLIENT)  # reads the responses, strictly
        self.sent_at = time.monotonic()

    @classmethod
    def around(cls, sock, deadline):
        return cls(None, deadline, sock)

    def time_left(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no complete answer before the check's deadline")
        return left

    def send(self, data):
        self.sent_at = time.monotonic()
        try:
            self.sock.settimeout(self.time_left())
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may refuse before reading everything; its answer may still be there to read

    def receive(self):
        self.sock.settimeout(self.time_left())
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            return b""  # a reset ends the stream, as a close does

    def read_response(self, method="GET"):
        """Read one response. The raw request went out already: h11 only needs to know its method (HEAD's answer has
        no body), so it is told a stand-in request whose bytes go nowhere."""
        self.parser.send(h11.Request(method=method, target="/", headers=[("Host", "probe")]))
        self.parser.send(h11.EndOfMessage())
        response, body, first_data, closed = None, b"", None, False
        while True:
            event = self.parser.next_event()
            if event is h11.NEED_DATA:
                data = self.receive()
                closed = closed or not data
                if not data and response is None:
                    raise ConnectionError("the server closed the connection without an answer")
                self.parser.receive_data(data)
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                first_data = first_data if first_data is not None else time.monotonic() - self.sent_at
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        headers = {}
        for name, value in response.headers:
            name, value = name.decode("latin-1"), value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        # (A body that ended with the connection leaves h11 DONE too, but nothing more can come on it.)
        keep_alive = self.parser.our_state is h11.DONE and self.parser.their_state is h11.DONE and not closed
        if keep_alive:
            self.parser.start_next_cycle()
        return Reply(response.status_code, response.reason.decode("latin-1"), headers, body, first_data,
                     time.monotonic() - self.sent_at, keep_alive)

    def extra_bytes(self, wait):
        """Bytes the server sends after a complete response (there should be none), within `wait` seconds."""
        data = self.parser.trailing_data[0]
        self.sock.settimeout(min(wait, self.time_left()))
        try:
            data += self.sock.recv(65536)
        except (TimeoutError, ConnectionError):
            pass
        return data

    def closes_within(self, wait):
        """Does the server close the connection within `wait` seconds (without sending anything more)?"""
        if self.parser.trailing_data[1]:
            return True
        self.sock.settimeout(min(wait, self.time_left()))
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False
        except ConnectionError:
            return True  # a reset closes too

    def close(self):
        self.sock.close()


def exchange(address, deadline, raw, method="GET"):
    """Send `raw` on a new connection and read one response."""
    connection = Connection(address, deadline)
    try:
        connection.send(raw)
        return connection.read_response(method)
    finally:
        connection.close()


def request(method, target, headers=(), body=b"", version="HTTP/1.1", host="probe"):
    """The bytes of a request; headers are (name, value) pairs sent as they are."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
