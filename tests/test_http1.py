"""gatewaylab.http1 against valid and hostile request heads, and the responses it builds."""

import io
import socket
import threading

import h11
import pytest

from gatewaylab import http1
from gatewaylab.http1 import HTTPError


def parse(raw: bytes):
    return http1.parse_request(io.BytesIO(raw))


def status_of(raw: bytes) -> int:
    with pytest.raises(HTTPError) as caught:
        parse(raw)
    return caught.value.status


# --- valid requests ---------------------------------------------------------------------------------------------------

def test_parses_a_simple_request():
    request = parse(b"GET /items?id=7&x=%20 HTTP/1.1\r\nHost: example.org\r\nAccept: */*\r\n\r\n")
    assert (request.method, request.target, request.version) == ("GET", "/items?id=7&x=%20", "HTTP/1.1")
    assert request.headers == [("Host", "example.org"), ("Accept", "*/*")]
    assert (request.path, request.query) == ("/items", "id=7&x=%20")
    assert request.keep_alive


def test_query_splits_at_the_first_question_mark_only():
    request = parse(b"GET /a?b=?c HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (request.path, request.query) == ("/a", "b=?c")
    assert parse(b"GET /plain HTTP/1.1\r\nHost: h\r\n\r\n").query == ""


def test_header_lookup_is_case_insensitive_and_joins_repeats_in_order():
    request = parse(b"GET / HTTP/1.1\r\nHost: h\r\nAccept: a\r\nX-Y: 1\r\naccept: b\r\n\r\n")
    assert request.header("ACCEPT") == "a, b"
    assert request.header("x-y") == "1"
    assert request.header("missing") is None
    assert request.header("missing", "dflt") == "dflt"
    # names are kept as sent, order and repeats too
    assert [name for name, _ in request.headers] == ["Host", "Accept", "X-Y", "accept"]


def test_optional_whitespace_around_values_is_stripped_but_inner_spaces_kept():
    request = parse(b"GET / HTTP/1.1\r\nHost:h\r\nUser-Agent: \t my  agent \t\r\nEmpty:\r\n\r\n")
    assert request.headers == [("Host", "h"), ("User-Agent", "my  agent"), ("Empty", "")]


def test_bare_lf_line_endings_are_accepted():
    request = parse(b"GET / HTTP/1.1\nHost: h\nX: 1\n\n")
    assert request.headers == [("Host", "h"), ("X", "1")]


def test_empty_lines_before_the_request_line_are_ignored():
    assert parse(b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n").method == "GET"


def test_latin1_bytes_become_native_strings():
    request = parse(b"GET / HTTP/1.1\r\nHost: h\r\nX-Name: caf\xe9\r\n\r\n")
    assert request.header("x-name") == "caf\xe9"


def test_http10_needs_no_host_and_closes_unless_keep_alive():
    request = parse(b"GET / HTTP/1.0\r\n\r\n")
    assert request.version == "HTTP/1.0" and not request.keep_alive
    assert parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive


@pytest.mark.parametrize("connection, expected", [
    ("close", False), ("Close", False), ("keep-alive", True), ("Upgrade, close", False), ("upgrade", True),
])
def test_http11_keep_alive_unless_connection_close(connection, expected):
    raw = f"GET / HTTP/1.1\r\nHost: h\r\nConnection: {connection}\r\n\r\n".encode()
    assert parse(raw).keep_alive is expected


def test_clean_eof_before_any_byte_gives_none():
    assert parse(b"") is None
    assert http1.read_head(io.BytesIO(b"")) is None


def test_read_head_leaves_the_body_and_next_request_in_the_file():
    rfile = io.BytesIO(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
                       b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n")
    first = http1.parse_request(rfile)
    assert first.path == "/a"
    assert rfile.read(int(first.header("Content-Length"))) == b"hello"
    assert http1.parse_request(rfile).path == "/b"
    assert http1.parse_request(rfile) is None


def test_lines_exactly_at_the_limit_are_accepted():
    target = b"/" + b"a" * (http1.MAX_LINE - len(b"GET  HTTP/1.1") - 1)
    line = b"GET " + target + b" HTTP/1.1"
    assert len(line) == http1.MAX_LINE
    assert parse(line + b"\r\nHost: h\r\n\r\n").target == target.decode()
    value = b"v" * (http1.MAX_LINE - len(b"X: "))
    assert parse(b"GET / HTTP/1.1\r\nHost: h\r\nX: " + value + b"\r\n\r\n").header("x") == value.decode()


def test_exactly_max_headers_are_accepted():
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(http1.MAX_HEADERS - 1))
    assert len(parse(b"GET / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n").headers) == http1.MAX_HEADERS


def test_parse_request_line_returns_native_strings():
    assert http1.parse_request_line(b"OPTIONS * HTTP/1.1") == ("OPTIONS", "*", "HTTP/1.1")
    assert http1.parse_request_line(b"GET http://example.org/x HTTP/1.0") == ("GET", "http://example.org/x", "HTTP/1.0")


# --- hostile requests: every status the module answers ----------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",           # whitespace before the colon
    b"GET / HTTP/1.1\r\nHost\t: h\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",  # obs-fold
    b"GET / HTTP/1.1\r\nHost: h\r\n\tfolded\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\n: empty-name\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nBad(Name): v\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",   # bare CR inside a value
    b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",  # NUL inside a value
    b"GET / HTTP/1.1\r\n\r\n",                        # HTTP/1.1 without Host
    b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",  # two Host lines
    b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",            # double space
    b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n",            # trailing space
    b"GET /\r\nHost: h\r\n\r\n",                      # HTTP/0.9 style, no version
    b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",             # method not a token
    b"GET /caf\xe9 HTTP/1.1\r\nHost: h\r\n\r\n",      # non-ASCII target
    b"GET / http/1.1\r\nHost: h\r\n\r\n",             # version is case-sensitive
    b"GET / HTTP/1.10\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\n",                 # EOF before the blank line
    b"GET / HTTP/1.1\r\nHost: h",                     # EOF in the middle of a line
    b"GET / HT",
])
def test_malformed_requests_get_400(raw):
    assert status_of(raw) == 400


def test_eof_inside_the_head_says_incomplete():
    with pytest.raises(HTTPError, match="incomplete request head") as caught:
        parse(b"GET / HTTP/1.1\r\nHost: h\r\n")
    assert caught.value.message == "incomplete request head"


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/3.0", b"HTTP/0.9"])
def test_versions_other_than_1x_get_505(version):
    assert status_of(b"GET / " + version + b"\r\nHost: h\r\n\r\n") == 505


def test_too_long_request_line_gets_414():
    assert status_of(b"GET /" + b"a" * http1.MAX_LINE + b" HTTP/1.1\r\nHost: h\r\n\r\n") == 414


def test_a_100kB_header_gets_431():
    assert status_of(b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 100_000 + b"\r\n\r\n") == 431


def test_too_many_headers_get_431():
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(http1.MAX_HEADERS))
    assert status_of(b"GET / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n") == 431


def test_too_large_head_gets_431_even_with_short_lines():
    rfile = io.BytesIO(b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 1000 + b"\r\nY: " + b"b" * 1000 + b"\r\n\r\n")
    with pytest.raises(HTTPError) as caught:
        http1.read_head(rfile, max_head=1500)
    assert caught.value.status == 431


def test_an_endless_stream_of_empty_lines_is_cut_off():
    with pytest.raises(HTTPError) as caught:
        http1.read_head(io.BytesIO(b"\r\n" * 40_000))
    assert caught.value.status == 431


def test_limits_are_keyword_arguments():
    with pytest.raises(HTTPError) as caught:
        http1.read_head(io.BytesIO(b"GET /abcdef HTTP/1.1\r\n\r\n"), max_line=10)
    assert caught.value.status == 414
    with pytest.raises(HTTPError) as caught:
        http1.read_head(io.BytesIO(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n"), max_headers=1)
    assert caught.value.status == 431


def test_text_mode_file_is_refused_clearly():
    with pytest.raises(TypeError, match="binary mode"):
        http1.read_head(io.StringIO("GET / HTTP/1.1\r\n\r\n"))


# --- over a real socket -----------------------------------------------------------------------------------------------

def test_a_slow_partial_request_times_out_instead_of_hanging():
    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        server_side.settimeout(0.2)
        client_side.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n")  # ... and never the blank line
        with server_side.makefile("rb") as rfile, pytest.raises(TimeoutError):
            http1.read_head(rfile)


def test_a_head_trickled_one_byte_at_a_time_is_read_whole():
    raw = b"GET /slow HTTP/1.1\r\nHost: h\r\nX: 1\r\n\r\nBODY"
    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        server_side.settimeout(5)

        def trickle():
            for i in range(len(raw)):
                client_side.send(raw[i:i + 1])

        sender = threading.Thread(target=trickle)
        sender.start()
        with server_side.makefile("rb") as rfile:
            request = http1.parse_request(rfile)
            body = rfile.read(4)
        sender.join()
    assert (request.path, request.header("X"), body) == ("/slow", "1", b"BODY")


# --- HTTPError and responses ------------------------------------------------------------------------------------------

def test_http_error_carries_status_reason_and_message():
    error = HTTPError(431, "too big")
    assert (error.status, error.reason, error.message) == (431, "Request Header Fields Too Large", "too big")
    assert "431" in str(error) and "too big" in str(error)
    with pytest.raises(ValueError, match="known HTTP status"):
        HTTPError(999, "nope")
    with pytest.raises(ValueError, match="known HTTP status"):
        HTTPError("400", "a string is not a status")


def test_reasons_use_the_rfc_9110_phrases():
    assert http1.REASONS[200] == "OK" and http1.REASONS[404] == "Not Found"
    assert http1.REASONS[414] == "URI Too Long" and http1.REASONS[413] == "Content Too Large"


def test_build_response_is_exact():
    assert http1.build_response(200, [("Content-Type", "text/plain")], b"hi") == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi")
    assert http1.build_response(404, version="HTTP/1.0") == b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"


def test_build_response_keeps_the_callers_framing_headers():
    assert http1.build_response(200, [("content-length", "2")], b"hi").count(b"ength:") == 1
    chunked = http1.build_response(200, [("Transfer-Encoding", "chunked")], b"2\r\nhi\r\n0\r\n\r\n")
    assert b"Content-Length" not in chunked


def test_no_content_length_on_bodyless_statuses():
    assert http1.build_response(204) == b"HTTP/1.1 204 No Content\r\n\r\n"
    assert b"Content-Length" not in http1.build_response(304)
    with pytest.raises(ValueError, match="cannot have a body"):
        http1.build_response(204, body=b"x")


@pytest.mark.parametrize("kwargs, error", [
    (dict(status=999), ValueError), (dict(status="200"), ValueError), (dict(status=True), ValueError),
    (dict(status=200, body="text"), TypeError), (dict(status=200, version="HTTP/2"), ValueError),
    (dict(status=200, headers=[("X", "a\r\nInjected: yes")]), ValueError),
    (dict(status=200, headers=[("Bad Name", "v")]), ValueError),
    (dict(status=200, headers=[("X", 5)]), ValueError),
])
def test_build_response_refuses_bad_input(kwargs, error):
    with pytest.raises(error):
        http1.build_response(**kwargs)


def test_responses_read_back_with_a_strict_client_parser():
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "h")]))
    client.receive_data(http1.build_response(201, [("X-Thing", "caf\xe9")], b"made"))
    response, data = client.next_event(), client.next_event()
    assert (response.status_code, response.reason) == (201, b"Created")
    assert (b"x-thing", "caf\xe9".encode("latin-1")) in list(response.headers)
    assert data.data == b"made" and isinstance(client.next_event(), h11.EndOfMessage)


def test_error_response_closes_and_explains():
    raw = http1.error_response(HTTPError(400, "missing Host header"))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"\r\nConnection: close" in head and b"\r\nContent-Type: text/plain" in head
    assert b"Content-Length: %d" % len(body) in head
    assert b"missing Host header" in body


# --- request-target forms (RFC 9112 3.2) -------------------------------------------------------------------------------

@pytest.mark.parametrize("line, path, query, host", [
    (b"GET /a/b?x=1 HTTP/1.1", "/a/b", "x=1", "h"),
    (b"GET http://example.org/a/b?x=1 HTTP/1.1", "/a/b", "x=1", "example.org"),  # absolute-form: its authority wins
    (b"GET HTTP://example.org:8080?x=1 HTTP/1.1", "/", "x=1", "example.org:8080"),  # an empty path is "/"
    (b"GET https://example.org HTTP/1.1", "/", "", "example.org"),
    (b"OPTIONS * HTTP/1.1", "", "", "h"),
    (b"CONNECT example.org:443 HTTP/1.1", "", "", "h"),
])
def test_every_target_form_gives_a_path_query_and_host(line, path, query, host):
    request = parse(line + b"\r\nHost: h\r\n\r\n")
    assert (request.path, request.query, request.host) == (path, query, host)


@pytest.mark.parametrize("target, method", [
    (b"foo/bar", b"GET"),  # not origin-form
    (b"/a#frag", b"GET"),  # a fragment is never sent
    (b"*", b"GET"),  # asterisk-form is for OPTIONS only
    (b"example.org:443", b"GET"),  # authority-form is for CONNECT only
    (b"/x", b"CONNECT"),  # ... and CONNECT takes nothing else
    (b"ftp://example.org/", b"GET"),
    (b"http:///nohost", b"GET"),
    (b"http://:80/", b"GET"),  # an empty host (RFC 9110 4.2.1)
    (b"http://a b/", b"GET"),
    (b"a:b:443", b"CONNECT"),  # authority-form is host ":" port, once
    (b"user@example.org:443", b"CONNECT"),
    (b"example.org", b"CONNECT"),  # no port
    (b":443", b"CONNECT"),  # no host
])
def test_a_target_in_no_form_is_400(target, method):
    assert status_of(method + b" " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n") == 400


@pytest.mark.parametrize("value", [b"a\x07b", b"a\x7fb", b"a\x1bb", b"\x00", b"a\x0bb"])
def test_control_characters_other_than_tab_in_a_value_are_400(value):
    assert status_of(b"GET / HTTP/1.1\r\nHost: h\r\nX-V: " + value + b"\r\n\r\n") == 400
    assert parse(b"GET / HTTP/1.1\r\nHost: h\r\nX-V: a\tb\xe9\r\n\r\n").header("X-V") == "a\tb\xe9"


def test_userinfo_in_an_absolute_form_target_is_400():
    # RFC 9110 4.2.4: userinfo in an http(s) URI is to be treated as an error, not taken as the host
    for target in (b"http://user@evil.com/", b"https://bank.example:pw@evil.com/x"):
        with pytest.raises(HTTPError, match="userinfo") as caught:
            parse(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n")
        assert caught.value.status == 400


@pytest.mark.parametrize("value", [b"a b/c?d", b"a, b", b"user@x", b"a:b:80", b"x:80a", b"[::1", b"a%2"])
def test_an_invalid_host_value_is_400(value):
    # RFC 9112 3.2: 400 for a Host header field with an invalid field value (Host = uri-host [":" port])
    assert status_of(b"GET / HTTP/1.1\r\nHost: " + value + b"\r\n\r\n") == 400
    assert status_of(b"GET / HTTP/1.0\r\nHost: " + value + b"\r\n\r\n") == 400


@pytest.mark.parametrize("value", [b"example.org:8080", b"[::1]:8000", b"127.0.0.1", b"xn--caf-dma.example",
                                   b"a%20b", b"h:", b""])
def test_a_valid_host_value_is_kept(value):
    # an empty value is valid: a client sends one when the target URI has no authority (RFC 9112 3.2)
    assert parse(b"GET / HTTP/1.1\r\nHost: " + value + b"\r\n\r\n").host == value.decode()


def test_connection_options_are_a_lower_case_set():
    assert http1.connection_options("Keep-Alive, Upgrade") == {"keep-alive", "upgrade"}
    assert "close" in http1.connection_options("foo ,CLOSE")
    assert "close" not in http1.connection_options("closed")
