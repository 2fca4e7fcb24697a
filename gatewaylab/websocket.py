"""WebSocket (RFC 6455) for the course's ASGI server: the handshake, frames, messages, and the
ASGI websocket scope and events (asgiref's specs/www.rst).

    python -m gatewaylab.websocket module:app --host 127.0.0.1 --port 8000 --lifespan auto

The path of one WebSocket connection through it:

    a GET with Upgrade: websocket -> WebSocketServer.upgrade -> handshake_error (400, 426)
    websocket.connect -> the app accepts (101 Switching Protocols) or closes (403)
    bytes on the stream -> read_frame -> MessageAssembler -> websocket.receive
    websocket.send -> encode_frame -> the stream; a close frame each way ends the session

ASGIServer (gatewaylab.asgi) does everything else: it reads the request head with the course's
HTTP/1.1 core, and hands the connection over when upgrade(request) returns a handler.
Not done here: extensions (permessage-deflate), the websocket.http.response extension (an app
that refuses a connection with websocket.close gets 403), and pings of the server's own.
"""
import asyncio
import base64
import binascii
import hashlib
import logging
import sys
from typing import NamedTuple

from gatewaylab import asgi
from gatewaylab.asgi import ASGIServer, ClientDisconnected, make_scope, response_field
from gatewaylab.http1 import (HOP_BY_HOP, HTTPError, build_head, build_response,
                              connection_options, error_answer, with_date)

log = logging.getLogger(__name__)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3: the same for every server
MAX_MESSAGE = 1024 * 1024  # bytes in one message (all its frames); a bigger one is closed with 1009
# www spec 2.5: 2.3 added the close event's reason, 2.4 the OSError from send() on a closed
# connection, 2.5 the disconnect event's reason. This server does all three.
ASGI_VERSION = {"version": "3.0", "spec_version": "2.5"}

# Opcodes (RFC 6455 5.2); 3-7 and 11-15 are reserved.
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
OPCODES = {CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG}
CONTROL = {CLOSE, PING, PONG}  # opcodes 8 and up (RFC 6455 5.5)

# Close codes (RFC 6455 7.4.1)
NORMAL, GOING_AWAY, PROTOCOL_ERROR = 1000, 1001, 1002
NO_STATUS, ABNORMAL = 1005, 1006  # never sent: they stand for "no code came", "no close frame"
INVALID_DATA, TOO_BIG, INTERNAL_ERROR = 1007, 1009, 1011


# --- The opening handshake (RFC 6455 4) -------------------------------------------------------

def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2): proof that the server read
    the handshake as a WebSocket one, not as a plain HTTP request it answers blindly."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def is_handshake(request):
    """Does the request ask for WebSocket? (Upgrade lists protocols; RFC 6455 4.2.1 item 3.)"""
    return "websocket" in connection_options(request.header("Upgrade", ""))


def valid_key(key):
    """A Sec-WebSocket-Key is 16 random bytes in base64 (RFC 6455 4.1 item 7)."""
    try:
        return len(base64.b64decode(key or "", validate=True)) == 16
    except binascii.Error:
        return False


def handshake_error(request) -> HTTPError | None:
    """What is wrong with an opening handshake (RFC 6455 4.2.1), or None if nothing is."""
    if request.method != "GET" or request.version != "HTTP/1.1":
        return HTTPError(400, "a WebSocket handshake is a GET, in HTTP/1.1")
    if not is_handshake(request):
        return HTTPError(400, "the Upgrade header does not ask for websocket")
    if "upgrade" not in connection_options(request.header("Connection", "")):
        return HTTPError(400, "the Connection header has no upgrade option")
    if not valid_key(request.header("Sec-WebSocket-Key")):
        return HTTPError(400, "Sec-WebSocket-Key must be 16 bytes in base64")
    version = request.header("Sec-WebSocket-Version")
    if version is None:
        return HTTPError(400, "no Sec-WebSocket-Version header")
    if version.strip() != "13":  # RFC 6455 4.4: a version the server does not speak
        return HTTPError(426, f"this server speaks WebSocket version 13, not {version!r}")
    return None


def refusal(error):
    """The answer to a refused handshake. A 426 names the version the server speaks (RFC 6455
    4.4) and, as RFC 9110 15.5.22 requires of a 426, the protocol to upgrade to."""
    if error.status != 426:
        return error_answer(error)
    headers = [("Sec-WebSocket-Version", "13"), ("Upgrade", "websocket"),
               ("Connection", "Upgrade, close"), ("Content-Type", "text/plain; charset=utf-8")]
    return with_date(build_response(426, headers, f"{error}\n".encode()))


def switching_protocols(request, subprotocol, fields):
    """The 101 answer that completes the handshake (RFC 6455 4.2.2 item 5)."""
    headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("Sec-WebSocket-Accept", accept_key(request.header("Sec-WebSocket-Key").strip()))]
    if subprotocol is not None:
        headers.append(("Sec-WebSocket-Protocol", subprotocol))
    return build_head("101 Switching Protocols", headers + fields)


# --- Frames (RFC 6455 5.2) ---------------------------------------------------------------------

class Frame(NamedTuple):
    fin: bool  # the last frame of its message
    opcode: int
    payload: bytes  # unmasked


class ProtocolError(Exception):
    """The peer broke a rule: the connection is closed with `code` (RFC 6455 7.4.1)."""

    def __init__(self, code, reason):
        super().__init__(f"{code}: {reason}")
        self.code, self.reason = code, reason


def apply_mask(data: bytes, mask: bytes) -> bytes:
    """data[i] ^ mask[i % 4] (RFC 6455 5.3), for every byte at once: one XOR of two big
    integers is about a hundred times faster than a Python loop over the bytes."""
    key = (mask * (len(data) // 4 + 1))[:len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(len(data), "big")


def encode_frame(opcode, payload: bytes, fin=True, mask: bytes | None = None) -> bytes:
    """One frame. A server's frames are unmasked; a client's carry a 4-byte mask (RFC 6455 5.1)."""
    mask_bit = 0x80 if mask is not None else 0
    length = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if length < 126:  # the three length forms: 7 bits, 126 + 16 bits, 127 + 64 bits
        head += bytes([mask_bit | length])
    elif length < 1 << 16:
        head += bytes([mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + length.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + apply_mask(payload, mask)


def check_first_byte(first):
    """FIN, three reserved bits and the opcode. Without an extension the bits must be 0, and
    an unknown opcode cannot be understood (RFC 6455 5.2): both fail the connection."""
    if first & 0x70:
        raise ProtocolError(PROTOCOL_ERROR, "reserved bits set, and no extension was agreed")
    if first & 0x0F not in OPCODES:
        raise ProtocolError(PROTOCOL_ERROR, f"reserved opcode {first & 0x0F:#x}")
    return bool(first & 0x80), first & 0x0F


async def read_length(reader, length):
    """The payload length: 7 bits, or 126 then 16 bits, or 127 then 64 bits (RFC 6455 5.2).
    A longer form than needed is not refused: the RFC does not forbid it."""
    if length == 126:
        return int.from_bytes(await reader.readexactly(2), "big")
    if length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
        if length >> 63:
            raise ProtocolError(PROTOCOL_ERROR, "the 64-bit length has its top bit set")
    return length


def check_size(fin, opcode, length, max_size):
    if opcode in CONTROL and (not fin or length > 125):  # RFC 6455 5.5
        raise ProtocolError(PROTOCOL_ERROR, "a control frame is one frame of at most 125 bytes")
    if length > max_size:  # refused before it is read: the limit protects the server's memory
        raise ProtocolError(TOO_BIG, f"a frame of {length} bytes, over the limit of {max_size}")


async def read_frame(reader, max_size, *, masked=True) -> Frame:
    """Read one frame from an asyncio stream, unmasked. A server reads client frames, which
    must be masked (RFC 6455 5.1); masked=False reads a server's frames (for a client)."""
    first, second = await reader.readexactly(2)
    fin, opcode = check_first_byte(first)
    if bool(second & 0x80) != masked:
        raise ProtocolError(PROTOCOL_ERROR, "a client frame must be masked, a server's not")
    length = await read_length(reader, second & 0x7F)
    check_size(fin, opcode, length, max_size)
    mask = await reader.readexactly(4) if masked else None
    payload = await reader.readexactly(length)
    return Frame(fin, opcode, apply_mask(payload, mask) if masked else payload)


# --- Messages and the closing handshake ---------------------------------------------------------

class MessageAssembler:
    """Joins data frames into messages (RFC 6455 5.4): a TEXT or BINARY frame starts one,
    CONTINUATION frames carry on, a frame with FIN ends it. feed() returns the message (a str for
    text, bytes for binary) when it is complete, else None."""

    def __init__(self, max_size=MAX_MESSAGE):
        self.max_size = max_size
        self.opcode, self.parts, self.size = None, [], 0  # the message under way, if any

    def feed(self, frame):
        if frame.opcode == CONTINUATION and self.opcode is None:
            raise ProtocolError(PROTOCOL_ERROR, "a continuation frame with no message to continue")
        if frame.opcode != CONTINUATION and self.opcode is not None:
            raise ProtocolError(PROTOCOL_ERROR, "a new message began before the last one ended")
        self.opcode = frame.opcode if self.opcode is None else self.opcode
        self.size += len(frame.payload)
        if self.size > self.max_size:
            raise ProtocolError(TOO_BIG, f"a message over the limit of {self.max_size} bytes")
        self.parts.append(frame.payload)
        if not frame.fin:
            return None
        opcode, payload = self.opcode, b"".join(self.parts)
        self.opcode, self.parts, self.size = None, [], 0
        return decode_text(payload) if opcode == TEXT else payload


def decode_text(payload):
    """A text message is UTF-8 (RFC 6455 5.6); anything else fails the connection (8.1)."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(INVALID_DATA, "a text message that is not valid UTF-8") from None


def sendable_close_code(code):
    """May this code travel in a close frame? RFC 6455 7.4.1-7.4.2: 1000-1003 and 1007-1011, three
    that IANA registered since (1012-1014), and 3000-4999 for libraries and apps."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


def parse_close(payload):
    """A close frame's (code, reason): no body means no code (1005); a body is a 2-byte code,
    then a UTF-8 reason (RFC 6455 5.5.1)."""
    if not payload:
        return NO_STATUS, ""
    code = int.from_bytes(payload[:2], "big")
    if len(payload) == 1 or not sendable_close_code(code):
        raise ProtocolError(PROTOCOL_ERROR, f"an invalid close frame body {payload[:2]!r}")
    try:
        return code, payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(INVALID_DATA, "a close reason that is not valid UTF-8") from None


def close_payload(code, reason=""):
    """The body of a close frame; NO_STATUS is sent as an empty body, as it means."""
    return b"" if code == NO_STATUS else code.to_bytes(2, "big") + reason.encode("utf-8")


# --- The ASGI side -----------------------------------------------------------------------------

def make_websocket_scope(request, server_address, client_address, state):
    """The scope of one WebSocket connection (asgiref's specs/www.rst): an HTTP scope's path,
    headers, client and server, without a method, with the subprotocols the client offers."""
    scope = make_scope(request, server_address, client_address, state)
    del scope["method"]  # (always GET: the handshake's, not the app's concern)
    offered = request.header("Sec-WebSocket-Protocol", "")
    scope.update(type="websocket", asgi=dict(ASGI_VERSION), scheme="ws",
                 subprotocols=[name.strip() for name in offered.split(",") if name.strip()])
    return scope


def accept_fields(message, scope):
    """websocket.accept's subprotocol and headers, checked. The subprotocol must be one the client
    offered (RFC 6455 4.2.2); it goes in its own key, never in the headers (www spec)."""
    subprotocol, headers = message.get("subprotocol"), message.get("headers", [])
    if subprotocol is not None and subprotocol not in scope["subprotocols"]:
        raise ValueError(f"subprotocol {subprotocol!r} is not one the client offered, "
                         f"{scope['subprotocols']}")
    fields = [response_field(pair) for pair in headers]
    if any(name.lower() == "sec-websocket-protocol" for name, _ in fields):
        raise ValueError("use websocket.accept's 'subprotocol', not a Sec-WebSocket-Protocol "
                         "header")
    return subprotocol, [field for field in fields if field[0].lower() not in HOP_BY_HOP]


def outgoing_frame(message):
    """websocket.send's frame: exactly one of text and bytes (www spec)."""
    text, data = message.get("text"), message.get("bytes")
    if (text is None) == (data is None):
        raise ValueError("websocket.send needs exactly one of 'text' (str) and 'bytes' (bytes)")
    if text is not None:
        if not isinstance(text, str):
            raise ValueError(f"websocket.send's text must be a str, got {type(text).__name__}")
        return encode_frame(TEXT, text.encode("utf-8"))
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError(f"websocket.send's bytes must be bytes, got {type(data).__name__}")
    return encode_frame(BINARY, bytes(data))


def close_fields(message):
    """websocket.close's code (default 1000) and reason, which must fit in a control frame."""
    code, reason = message.get("code", NORMAL), message.get("reason") or ""
    if type(code) is not int or not sendable_close_code(code):
        raise ValueError(f"websocket.close's code must be a close code one may send, got {code!r}")
    if not isinstance(reason, str) or len(reason.encode("utf-8")) > 123:
        raise ValueError("websocket.close's reason is a str of at most 123 bytes in UTF-8")
    return code, reason


def received_event(message):
    if isinstance(message, str):
        return {"type": "websocket.receive", "text": message}
    return {"type": "websocket.receive", "bytes": message}


CONNECTING, OPEN, CLOSING, CLOSED = "connecting", "open", "closing", "closed"


class WebSocketSession:
    """One WebSocket connection and the app that serves it: the app's receive() and send().

    The app's receive() reads the frames, as an HTTP app's reads its request body: pings are
    answered and close frames echoed while it waits for a message. States: CONNECTING (until the
    app accepts), OPEN, CLOSING (our close frame has gone; the client's has not come), CLOSED.
    """

    def __init__(self, connection, request, max_message=MAX_MESSAGE):
        self.connection, self.request = connection, request
        self.assembler = MessageAssembler(max_message)
        self.max_message = max_message
        self.state = CONNECTING
        self.connect_given = False  # has the app had websocket.connect?
        self.closed_by_app = False  # did the close begin with the app's websocket.close?
        self.code, self.reason = None, ""  # the disconnect, once the session is over
        self.reading = asyncio.Lock()  # one read at a time, however many tasks call receive()

    # -- receive() --

    async def receive(self):
        if not self.connect_given and self.state == CONNECTING:
            self.connect_given = True
            return {"type": "websocket.connect"}
        if self.state == CONNECTING:
            raise RuntimeError("receive() before websocket.accept: accept or close first")
        async with self.reading:
            return await self.next_event()

    async def next_event(self):
        """Read frames until a message is whole, or the session ends."""
        while self.state in (OPEN, CLOSING):
            try:
                frame = await read_frame(self.connection.reader, self.max_message)
                message = await self.handle(frame)
            except ProtocolError as error:
                await self.fail(error.code, error.reason)
            except (EOFError, OSError):  # the stream ended, or was reset: no close frame came
                self.end(ABNORMAL, "")
            else:
                if message is not None and self.state == OPEN:
                    return received_event(message)
        return {"type": "websocket.disconnect", "code": self.code, "reason": self.reason}

    async def handle(self, frame):
        """A control frame is answered at once (it may come between a message's frames); a data
        frame goes to the assembler, which returns a message when one is whole."""
        if frame.opcode == PING:  # RFC 6455 5.5.2: a pong with the ping's payload
            await self.write_frame(PONG, frame.payload)
        elif frame.opcode == CLOSE:
            code, reason = parse_close(frame.payload)
            if self.state == OPEN:  # RFC 6455 5.5.1: answer with a close, echoing the code
                await self.write_frame(CLOSE, close_payload(code))
            self.end(code, reason)
        elif frame.opcode != PONG:  # (an unasked pong is allowed, and needs no answer)
            return self.assembler.feed(frame)
        return None

    async def write_frame(self, opcode, payload):
        try:
            await self.connection.write(encode_frame(opcode, payload))
        except ClientDisconnected:
            self.end(ABNORMAL, "")

    async def fail(self, code, reason):
        """Fail the connection (RFC 6455 7.1.7): a close frame saying why, then no more reading."""
        log.info("closing a WebSocket with %d: %s", code, reason)
        if self.state == OPEN:
            await self.write_frame(CLOSE, close_payload(code, reason[:100]))
        self.end(code, reason)

    def end(self, code, reason):
        if self.state != CLOSED:
            self.state, self.code, self.reason = CLOSED, code, reason

    # -- send() --

    async def send(self, message):
        kind = asgi.event_type(message)
        if self.state == CONNECTING:
            await self.answer_handshake(kind, message)
        elif self.closed_by_app:
            raise RuntimeError(f"{kind!r} sent after websocket.close")
        elif self.state != OPEN:
            raise ClientDisconnected("the WebSocket connection is closed")
        elif kind == "websocket.send":
            await self.connection.write(outgoing_frame(message))
        elif kind == "websocket.close":
            self.closed_by_app = True
            await self.close(*close_fields(message))
        else:
            raise RuntimeError(f"expected 'websocket.send' or 'websocket.close', got {kind!r}")

    async def answer_handshake(self, kind, message):
        """websocket.accept completes the handshake with 101; websocket.close refuses it with 403
        (the www spec). websocket.http.response.* belongs to an extension this server does not
        offer in the scope, so an app has only close to refuse with. (An app may answer before it
        has read websocket.connect: the event is there from the start, as a request's head is.)"""
        if kind == "websocket.accept":
            subprotocol, fields = accept_fields(message, self.scope)
            await self.connection.write(switching_protocols(self.request, subprotocol, fields))
            self.state = OPEN
        elif kind == "websocket.close":
            await self.refuse(HTTPError(403, "the application refused the WebSocket connection"))
            self.closed_by_app = True
        else:
            raise RuntimeError(f"expected 'websocket.accept' or 'websocket.close', got {kind!r}")

    async def refuse(self, error):
        await self.connection.write_quietly(error_answer(error))
        self.end(ABNORMAL, error.message)  # (1006: what a browser reports for a refused handshake)

    async def close(self, code, reason=""):
        """Begin the closing handshake (RFC 6455 7.1.2); the client's close frame ends it."""
        self.state = CLOSING
        self.code, self.reason = code, reason  # what the app hears if the client never answers
        await self.write_frame(CLOSE, close_payload(code, reason))

    # -- the app's whole run --

    async def run(self, app, server):
        """Call the app with the websocket scope; then finish what it left (an accept it never
        sent is a 500, an open connection is closed, a close the client has not answered waited
        for)."""
        self.scope = make_websocket_scope(self.request, server.server_address,
                                          self.connection.client_address, server.state)
        failed = False
        try:
            await app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass  # send() on a closed connection, let through by the app: nothing to log
        except Exception:
            failed = True
            log.exception("error in the application, for WebSocket %s", self.request.target)
        await self.finish(failed, server.timeout)

    async def finish(self, failed, timeout):
        if self.state == CONNECTING:  # nothing went out: the client can still get an HTTP answer
            if not failed:
                log.error("the application returned without accepting or closing the WebSocket")
            await self.refuse(HTTPError(500, "the application failed"))
        elif self.state == OPEN:  # RFC 6455 7.4.1: 1011, the server met an unexpected condition
            await self.close(INTERNAL_ERROR if failed else NORMAL)
        if self.state == CLOSING:
            await self.until_closed(timeout)

    async def until_closed(self, timeout):
        """Wait (at most `timeout` seconds) for the client's answer to our close frame: the server
        closes the TCP connection after it (RFC 6455 7.1.1)."""
        try:
            async with asyncio.timeout(timeout), self.reading:
                await self.next_event()
        except TimeoutError:
            self.end(ABNORMAL, "")

    async def going_away(self):
        """The server stops: close an open session with 1001 (RFC 6455 7.4.1)."""
        if self.state == OPEN:
            await self.close(GOING_AWAY, "the server is stopping")


# --- The server ---------------------------------------------------------------------------------

class WebSocketServer(ASGIServer):
    """ASGIServer, which also serves WebSocket connections: upgrade() hands a handshake to
    serve_websocket, which runs the app with a websocket scope. max_message: bytes in a message."""

    def __init__(self, app, *args, max_message=MAX_MESSAGE, **kwargs):
        if max_message <= 0:  # (checked first: ASGIServer binds its port)
            raise ValueError("max_message must be > 0")
        super().__init__(app, *args, **kwargs)
        self.max_message = max_message
        self.sessions = set()  # open WebSocket sessions, closed with 1001 when the server stops

    def upgrade(self, request):
        return self.serve_websocket if is_handshake(request) else None

    async def serve_websocket(self, connection, request):
        error = handshake_error(request)
        if error is not None:
            await connection.write_quietly(refusal(error))
            return
        session = WebSocketSession(connection, request, self.max_message)
        self.sessions.add(session)
        try:
            await session.run(self.app, self)
        finally:
            self.sessions.discard(session)

    async def stop(self, server):
        """Say goodbye (1001) to every WebSocket client first: their apps hear
        websocket.disconnect and can end within the grace period ASGIServer.stop gives them."""
        await asyncio.gather(*(session.going_away() for session in list(self.sessions)),
                             return_exceptions=True)
        await super().stop(server)


def main(argv=None, prog="python -m gatewaylab.websocket"):
    """gatewaylab.asgi's command line, serving with WebSocketServer."""
    return asgi.main(argv, WebSocketServer, prog=prog)


if __name__ == "__main__":
    sys.exit(main())
