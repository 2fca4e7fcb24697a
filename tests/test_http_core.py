"""The HTTP/1.1 core (gatewaylab.http1) as both servers drive it: every parser gets the whole input, the input one byte
at a time, and the input with trailing data after it (the next request), through a blocking file and through an
asyncio stream. The trailing data must be left exactly where it was: it belongs to the next request."""

import asyncio
import io

import pytest

from gatewaylab.http1 import (DATA, LINE, ChunkedBody, HTTPError, build_head, choose_framing,
                              encode_chunk, parse_request, read_chunked, request_body_length, with_date)

NEXT = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"  # what a pipelining client sends after the message under test


class OneByteAtATime(io.RawIOBase):
    """A raw stream that hands out one byte per read, as a slow network might."""

    def __init__(self, data: bytes):
        self.data = data

    def readable(self):
        return True

    def readinto(self, buffer):
        if not self.data or not len(buffer):
            return 0
        buffer[0], self.data = self.data[0], self.data[1:]
        return 1


def blocking_files(data: bytes):
    """The same bytes as a blocking server sees them: all at once, or trickling in one byte at a time."""
    return {"whole": io.BufferedReader(io.BytesIO(data)), "byte by byte": io.BufferedReader(OneByteAtATime(data))}


async def stream_of(data: bytes, one_byte_at_a_time: bool) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=2**16)

    async def feed():
        for i in range(len(data)) if one_byte_at_a_time else [None]:
            reader.feed_data(data[i:i + 1] if i is not None else data)
            await asyncio.sleep(0)
        reader.feed_eof()

    asyncio.get_running_loop().create_task(feed())
    return reader


async def read_chunked_from_stream(reader: asyncio.StreamReader, max_body: int) -> bytes:
    """ChunkedBody driven by an asyncio stream, as the ASGI server drives it: the same decoder, other reads."""
    decoder, body = ChunkedBody(max_body), bytearray()
    while not decoder.done:
        kind, size = decoder.next_read()
        if kind == LINE:
            try:
                data = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as error:
                data = error.partial  # the connection ended: the decoder says what that means
        else:
            try:
                data = await reader.readexactly(size)
            except asyncio.IncompleteReadError as error:
                data = error.partial
        body += decoder.feed(data)
    return bytes(body)


def decode_every_way(data: bytes, max_body: int = 10**6):
    """Decode `data + NEXT` every way there is; return the body, after checking every way agrees and leaves NEXT."""
    results = {}
    for name, rfile in blocking_files(data + NEXT).items():
        results[name] = read_chunked(rfile, max_body)
        assert rfile.read() == NEXT, f"{name}: the bytes after the body were not left for the next request"

    async def from_streams():
        for trickle in (False, True):
            reader = await stream_of(data + NEXT, trickle)
            results[f"stream, trickle={trickle}"] = await read_chunked_from_stream(reader, max_body)
            assert await reader.read() == NEXT
    asyncio.run(from_streams())
    assert len(set(results.values())) == 1, results
    return results["whole"]


def refused_every_way(data: bytes, max_body: int = 10**6) -> int:
    """The status every way of decoding `data` refuses it with (they must all refuse, with the same status)."""
    statuses = set()
    for rfile in blocking_files(data).values():
        with pytest.raises(HTTPError) as caught:
            read_chunked(rfile, max_body)
        statuses.add(caught.value.status)

    async def from_streams():
        for trickle in (False, True):
            with pytest.raises(HTTPError) as caught:
                await read_chunked_from_stream(await stream_of(data, trickle), max_body)
            statuses.add(caught.value.status)
    asyncio.run(from_streams())
    assert len(statuses) == 1, statuses
    return statuses.pop()


# --- chunked bodies ---------------------------------------------------------------------------------------------------

def test_a_chunked_body_decodes_the_same_every_way_and_stops_at_its_end():
    assert decode_every_way(b"3\r\nabc\r\n0\r\n\r\n") == b"abc"
    assert decode_every_way(b"0\r\n\r\n") == b""


def test_extensions_trailers_and_16_digits():
    body = b"3;name=value;flag\r\nabc\r\n0000000000000002\r\nde\r\n0\r\nX-Checksum: 1f\r\nX-Empty:\r\n\r\n"
    assert decode_every_way(body) == b"abcde"


def test_a_large_chunk_arrives_in_bounded_pieces():
    decoder = ChunkedBody(max_body=10**6)
    decoder.feed(b"30000\r\n")  # 196,608 bytes in one chunk
    assert decoder.next_read() == (DATA, 65536)  # never more than 64 KiB held at once
    assert decode_every_way(b"30000\r\n" + b"x" * 0x30000 + b"\r\n0\r\n\r\n") == b"x" * 0x30000


@pytest.mark.parametrize("broken", [
    b"x\r\nabc\r\n0\r\n\r\n",  # not hex
    b"0x3\r\nabc\r\n0\r\n\r\n",  # a 0x prefix int(x, 16) would accept
    b"3\r\nabcd\r\n0\r\n\r\n",  # data longer than its size
    b"3\r\nab",  # the connection ends in the data
    b"3\r\nabc\r\n0\r\n",  # ... or before the end of the trailer section
    b"3\nabc\r\n0\r\n\r\n",  # bare LF after the size
    b"3\r\r\nabc\r\n0\r\n\r\n",  # a stray CR before the CRLF
    b"3\r\nabc\n0\r\n\r\n",  # bare LF after the data
    b"3\r\nabc\rx0\r\n\r\n",  # CR and something else after the data
    b" 3\r\nabc\r\n0\r\n\r\n",  # leading whitespace
    b"3 \r\nabc\r\n0\r\n\r\n",  # trailing whitespace
    b"+3\r\nabc\r\n0\r\n\r\n",  # a sign int() would accept
    b"3;a\rb\r\nabc\r\n0\r\n\r\n",  # a CR inside an extension
    b"3\r\nabc\r\n0\n\r\n",  # bare LF after the last chunk
    b"3\r\nabc\r\n0\r\n\n",  # bare LF ending the trailers
    b"3\r\nabc\r\n0\r\nX-T: 1\n\r\n",  # a trailer field ending in a bare LF
    b"3\r\nabc\r\n0\r\nnot a field\r\n\r\n",  # a trailer line that is no field
    b"1" * 17 + b"\r\n",  # more than the server's 16 digits
    b"",  # nothing at all
])
def test_anything_but_the_exact_grammar_is_a_400_every_way(broken):
    assert refused_every_way(broken) == 400


def test_too_large_a_body_is_413_before_its_data_is_read():
    assert refused_every_way(b"a\r\n0123456789\r\n0\r\n\r\n", max_body=9) == 413
    assert refused_every_way(b"5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n", max_body=9) == 413


def test_too_many_trailer_fields_is_431():
    assert refused_every_way(b"0\r\n" + b"X-T: 1\r\n" * 101 + b"\r\n") == 431


def test_feeding_an_ended_body_is_a_programming_error():
    decoder = ChunkedBody()
    decoder.feed(b"0\r\n")
    decoder.feed(b"\r\n")
    assert decoder.done
    with pytest.raises(RuntimeError):
        decoder.feed(b"1\r\n")


# --- request heads, every way -----------------------------------------------------------------------------------------

HEADS = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /form?a=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
    b"GET / HTTP/1.1\nHost: x\n\n",  # bare LF line endings, which RFC 9112 2.2 lets a server accept
    b"\r\nGET / HTTP/1.0\r\n\r\n",  # an empty line before the request line is skipped
]


@pytest.mark.parametrize("head", HEADS)
def test_a_head_parses_the_same_every_way_and_leaves_what_follows(head):
    parsed = set()
    for name, rfile in blocking_files(head + b"hello" + NEXT).items():
        request = parse_request(rfile)
        parsed.add((request.method, request.target, request.version, tuple(request.headers)))
        assert rfile.read() == b"hello" + NEXT, name
    assert len(parsed) == 1


@pytest.mark.parametrize("head, status", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n", 400),  # no blank line: incomplete
    (b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
])
def test_a_bad_head_is_refused_the_same_every_way(head, status):
    for rfile in blocking_files(head).values():
        with pytest.raises(HTTPError) as caught:
            parse_request(rfile)
        assert caught.value.status == status


# --- how a request body is framed -------------------------------------------------------------------------------------

def request_with(*headers, version="HTTP/1.1"):
    head = f"POST / {version}\r\nHost: x\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
    return parse_request(io.BytesIO(head.encode("latin-1")))


@pytest.mark.parametrize("headers, expect", [
    ((), 0),
    ((("Content-Length", "5"),), 5),
    ((("Content-Length", "0"),), 0),
    ((("Transfer-Encoding", "chunked"),), None),
    ((("Transfer-Encoding", "Chunked"),), None),
])
def test_request_body_length(headers, expect):
    assert request_body_length(request_with(*headers)) == expect


@pytest.mark.parametrize("headers, status", [
    ((("Content-Length", "5"), ("Transfer-Encoding", "chunked")), 400),  # smuggling: refuse, then close
    ((("Content-Length", "+3"),), 400),
    ((("Content-Length", " 5"),), 400),  # (OWS is stripped by the parser; this is a value with inner space)
    ((("Content-Length", "1_0"),), 400),
    ((("Content-Length", "-1"),), 400),
    ((("Content-Length", "٣"),), 400),  # a digit to str.isdigit(), not to HTTP
    ((("Content-Length", "5"), ("Content-Length", "5")), 400),
    ((("Content-Length", "20"),), 413),
    ((("Transfer-Encoding", "chunked, gzip"),), 400),
    ((("Transfer-Encoding", "chunked, chunked"),), 400),
    ((("Transfer-Encoding", "gzip, chunked"),), 501),
])
def test_request_body_length_refuses(headers, status):
    if headers[0][1] == " 5":
        request = request_with()
        request.headers.append(("Content-Length", " 5"))
    else:
        request = request_with(*[(n, v.encode("utf-8").decode("latin-1")) for n, v in headers])
    with pytest.raises(HTTPError) as caught:
        request_body_length(request, max_body=10)
    assert caught.value.status == status


def test_transfer_encoding_in_http_1_0_is_refused():
    with pytest.raises(HTTPError) as caught:
        request_body_length(request_with(("Transfer-Encoding", "chunked"), version="HTTP/1.0"))
    assert caught.value.status == 400


# --- the response's framing -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method, version, code, headers, body_length, keep_alive, expect", [
    ("GET", "HTTP/1.1", 200, [], 5, True, ([("Content-Length", "5")], True, False, None, True)),
    ("GET", "HTTP/1.1", 200, [], None, True, ([("Transfer-Encoding", "chunked")], True, True, None, True)),
    ("GET", "HTTP/1.0", 200, [], None, True, ([("Connection", "close")], True, False, None, False)),
    ("GET", "HTTP/1.0", 200, [], 5, True, ([("Content-Length", "5"), ("Connection", "keep-alive")], True,
                                            False, None, True)),
    ("GET", "HTTP/1.1", 200, [("Content-Length", "3")], 5, False, ([("Connection", "close")], True, False, 3, False)),
    ("HEAD", "HTTP/1.1", 200, [("Content-Length", "3")], None, True, ([], False, False, None, True)),
    ("GET", "HTTP/1.1", 304, [], None, True, ([], False, False, None, True)),
    ("GET", "HTTP/1.1", 204, [], None, True, ([], False, False, None, True)),
    ("GET", "HTTP/1.1", 101, [], None, True, ([], False, False, None, True)),
], ids=["length known", "chunked", "1.0 until close", "1.0 keep-alive", "app's length", "HEAD", "304", "204", "1xx"])
def test_choose_framing(method, version, code, headers, body_length, keep_alive, expect):
    assert tuple(choose_framing(method, version, code, headers, body_length, keep_alive)) == expect


def test_choose_framing_refuses_a_bad_content_length():
    for declared in (["-1"], ["5", "5"], ["+5"], ["٣"]):
        with pytest.raises(ValueError, match="invalid Content-Length"):
            choose_framing("GET", "HTTP/1.1", 200, [("Content-Length", value) for value in declared], None, True)


def test_build_head_adds_date_and_server_unless_given():
    head = build_head("404 Not Found", [("Content-Type", "text/plain")]).decode("latin-1")
    assert head.startswith("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nDate: ") and head.endswith(
        " GMT\r\nServer: gatewaylab\r\n\r\n")
    given = [("Date", "Tue, 01 Jul 2025 00:00:00 GMT"), ("Server", "mine")]
    assert build_head("200 OK", given) == b"HTTP/1.1 200 OK\r\n" + b"".join(
        f"{name}: {value}\r\n".encode() for name, value in given) + b"\r\n"


def test_encode_chunk_and_with_date():
    assert encode_chunk(b"hello") == b"5\r\nhello\r\n"
    assert encode_chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert encode_chunk(b"") == b""  # an empty chunk would end the body
    dated = with_date(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\nbad")
    assert dated.startswith(b"HTTP/1.1 400 Bad Request\r\nDate: ") and dated.endswith(
        b" GMT\r\nConnection: close\r\n\r\nbad")


def test_response_body_frames_cuts_and_ends_as_the_framing_says():
    from gatewaylab.http1 import ResponseBody

    chunked = ResponseBody(choose_framing("GET", "HTTP/1.1", 200, [], None, True))
    assert chunked.frame(b"hello") == b"5\r\nhello\r\n" and chunked.frame(b"") == b""
    assert chunked.end() == b"0\r\n\r\n" and not chunked.cut_short
    declared = ResponseBody(choose_framing("GET", "HTTP/1.1", 200, [("Content-Length", "4")], None, True))
    assert declared.frame(b"abc") + declared.frame(b"defg") == b"abcd"  # never more than the app declared
    assert declared.end() == b"" and not declared.cut_short
    short = ResponseBody(choose_framing("GET", "HTTP/1.1", 200, [("Content-Length", "4")], None, True))
    short.frame(b"ab")
    assert short.cut_short  # the client waits for 2 more bytes: only a close ends that
    head = ResponseBody(choose_framing("HEAD", "HTTP/1.1", 200, [("Content-Length", "4")], None, True))
    assert head.frame(b"abcd") == b"" and not head.cut_short  # HEAD: no body, nothing owed


def test_an_error_answer_to_head_is_the_head_alone():
    from gatewaylab.http1 import HTTPError, error_answer

    whole = error_answer(HTTPError(500, "the application failed"))
    head_only = error_answer(HTTPError(500, "the application failed"), "HEAD")
    assert whole.startswith(head_only) and whole != head_only and head_only.endswith(b"\r\n\r\n")
    assert b"Date: " in head_only and b"Content-Length: " in head_only  # the length a GET would get
