"""Lesson 02's exercises: WSGI apps and middleware, checked by what they do.

Every answer is run two ways, always behind ``wsgiref.validate.validator``:

* called directly by :func:`call_app`, which plays the server's side of PEP 3333 strictly: it enforces the
  start_response rules (a second call only with exc_info; re-raise once the headers are out), accepts only bytes, and
  calls the body's ``close()``. The request body comes from :class:`StalledInput`, which behaves like the socket of a
  kept-alive connection: exactly CONTENT_LENGTH bytes, then silence, because the client is waiting for the answer;
* served by wsgiref in a background thread (:func:`gatewaylab.servers.serve_wsgi`) and asked with httpx.

Cases that touch sockets bound every wait with a timeout (httpx's), because the grader cannot interrupt a thread
blocked in a socket call.
"""

from __future__ import annotations

import io
import json
import re
import sys
import time
import traceback
import wsgiref.validate
from contextlib import ExitStack
from dataclasses import dataclass, field
from wsgiref.util import is_hop_by_hop, setup_testing_defaults

import httpx

from gatewaylab.grading import CaseFailed, Exercise, expect_equal
from gatewaylab.servers import serve_wsgi

STALL = 1.0  # seconds StalledInput waits, like a socket whose client sends no more, before failing the case
HTTP_TIMEOUT = 3.0  # seconds httpx waits for wsgiref's answer
SERVER_CASE_TIMEOUT = 10.0  # a case that starts a server: HTTP_TIMEOUT plus starting and stopping, with room to spare
MAX_CHUNKS = 10_000  # a body with more pieces than this is taken for one that never ends (and would fill the memory)
MAX_BYTES = 100_000  # the same, for what httpx receives
TEXT = ("Content-Type", "text/plain; charset=utf-8")
_AUTO = object()  # make_environ: "CONTENT_LENGTH is the body's length"


# --- playing the server -----------------------------------------------------------------------------------------------

class StalledInput:
    """``wsgi.input`` as a socket gives it: the body's bytes, then a wait for bytes the client will never send.

    PEP 3333 lets a server give EOF at CONTENT_LENGTH but does not require it (wsgiref's simple_server does not), and
    says the app should not read past it. Reading past it here waits ``stall`` seconds and then fails the case with an
    explanation, where a real server would hang until the client gave up.
    """

    def __init__(self, data: bytes, content_length: str | None, stall: float = STALL):
        self._data = data
        self._position = 0
        self.content_length = content_length  # as the environ gives it, for the message
        self.stall = stall

    def _remaining(self) -> int:
        return len(self._data) - self._position

    def _take(self, size: int) -> bytes:
        piece = self._data[self._position:self._position + size]
        self._position += len(piece)
        return piece

    def _wait_for_ever(self, call: str):
        time.sleep(self.stall)
        if self.content_length:
            announced = f"after reading {self._position} of the {len(self._data)} bytes that CONTENT_LENGTH announced"
        else:
            announced = (f"although CONTENT_LENGTH is {'empty' if self.content_length == '' else 'missing'}, which "
                         "means there is no body")
        raise CaseFailed(
            f"your app called wsgi.input.{call} {announced}, so it asked for bytes the client never sends. On a real "
            "connection the client is now waiting for your answer and this read would wait for ever (here it gave up "
            f"after {self.stall:g} s). Read exactly int(environ.get('CONTENT_LENGTH') or 0) bytes: "
            "environ['wsgi.input'].read(length).")

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self._remaining():
            self._wait_for_ever(f"read({'' if size is None or size < 0 else size})")
        return self._take(size)

    def readline(self, size: int = -1) -> bytes:
        end = self._data.find(b"\n", self._position)
        if end != -1 and (size is None or size < 0 or end + 1 - self._position <= size):
            return self._take(end + 1 - self._position)
        if size is not None and 0 <= size <= self._remaining():
            return self._take(size)
        self._wait_for_ever("readline()")

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines, total = [], 0
        while hint is None or hint <= 0 or total < hint:  # without a hint, readlines() reads to the end of the stream
            lines.append(self.readline())
            total += len(lines[-1])
        return lines

    def __iter__(self):
        while True:  # iterating reads to the end of the stream, which a socket reaches only when the client closes
            yield self.readline()


def make_environ(method: str = "GET", path: str = "/", query: str = "", body: bytes = b"", *,
                 content_type: str | None = None, content_length=_AUTO, headers=()) -> dict:
    """A complete PEP 3333 environ for one request, with a :class:`StalledInput` holding ``body``.

    ``content_length``: the body's length by default, a string to send as is, or None to leave CONTENT_LENGTH out.
    """
    environ = {"REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": query,
               "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.errors": io.StringIO()}
    if content_type is not None:
        environ["CONTENT_TYPE"] = content_type
    if content_length is _AUTO:
        if body:
            environ["CONTENT_LENGTH"] = str(len(body))
    elif content_length is not None:
        environ["CONTENT_LENGTH"] = content_length
    environ["wsgi.input"] = StalledInput(body, environ.get("CONTENT_LENGTH"))
    for name, value in headers:
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    setup_testing_defaults(environ)
    return environ


@dataclass
class Response:
    """What a client of the app would receive, and when each piece of the body came out."""

    status: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)  # body pieces in order, write() calls included
    times: list[float] = field(default_factory=list)  # seconds from calling the app to each chunk coming out
    finished: float | None = None  # seconds from calling the app to the end of its body (None: it did not end)
    headers_sent: bool = False
    problems: list[str] = field(default_factory=list)  # PEP 3333 rules broken, even where the app caught our error

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def code(self) -> int | None:
        """The status code, or None when the status is not three ASCII digits, a space and a reason phrase (int()
        alone would take ' 200 OK' or '+200 OK')."""
        if not isinstance(self.status, str) or not re.fullmatch(r"[0-9]{3} .+", self.status):
            return None
        return int(self.status[:3])

    def header(self, name: str) -> str | None:
        """The header's value (repeats joined with ", "), or None when the app did not send it."""
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return ", ".join(values) if values else None


def _violation(response: Response, message: str):
    response.problems.append(message)
    raise CaseFailed(message)


def call_app(app, environ: dict, response: Response | None = None, *, leave_after: int | None = None) -> Response:
    """Call ``app`` behind wsgiref.validate the way a server does, and return the response it produced.

    Raises CaseFailed when the app breaks a rule of PEP 3333. An exception the app raises propagates (after close()),
    as it would reach a server; pass ``response`` to see what had been produced by then. ``leave_after``: the client
    leaves once that many non-empty chunks were sent, so the server stops iterating and calls close() at once.
    """
    response = Response() if response is None else response
    started = time.perf_counter()

    def send(chunk: bytes) -> None:
        if chunk:
            response.headers_sent = True  # PEP 3333: headers go out with the first non-empty piece of body
        response.chunks.append(chunk)
        response.times.append(time.perf_counter() - started)

    def start_response(status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if response.headers_sent:
                    # Too late for another status: PEP 3333 says re-raise, so the server can drop the connection.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # don't keep a traceback -> frame -> exc_info reference cycle alive
        elif response.status is not None:
            _violation(response, "start_response was called a second time without exc_info. PEP 3333 allows a second "
                                 "call only to replace the headers after an error, passing the error as "
                                 "start_response(status, headers, sys.exc_info()).")
        for name, _ in headers:
            if is_hop_by_hop(name) or name.lower() == "trailer":  # wsgiref spells it "trailers", after RFC 2616
                _violation(response, f"the app set the hop-by-hop header {name!r}; PEP 3333 leaves connection "
                                     "management (Connection, Keep-Alive, Transfer-Encoding, ...) to the server")
        response.status, response.headers = status, list(headers)
        return send

    try:
        body = wsgiref.validate.validator(app)(environ, start_response)
        try:
            for chunk in body:
                send(chunk)
                if len(response.chunks) > MAX_CHUNKS:
                    raise CaseFailed(f"the body did not end after {MAX_CHUNKS} chunks: does a loop in it never stop?")
                if leave_after is not None and sum(1 for piece in response.chunks if piece) >= leave_after:
                    break  # the client has gone: sending more would fail
            else:
                response.finished = time.perf_counter() - started
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
    except AssertionError as error:
        message = None if isinstance(error, CaseFailed) else validator_message(error)
        if message is None:
            raise
        raise CaseFailed(message) from None
    if response.problems:  # the app caught the CaseFailed we raised, but the rule was still broken
        raise CaseFailed(response.problems[0])
    if response.status is None:
        raise CaseFailed("the app returned without calling start_response(status, headers): the server has no status "
                         "line to send. Call start_response before returning the body.")
    return response


_VALIDATE_FILE = wsgiref.validate.__file__
# wsgiref.validate's asserts that carry no message of their own, by the function they sit in.
_SILENT_ASSERTS = {
    "read": "wsgi.input.read() was called without a size. wsgiref.validate insists on read(size) because 'read "
            "everything' on a socket waits until the client closes the connection, which it won't while it waits for "
            "your answer. Read int(environ.get('CONTENT_LENGTH') or 0) bytes.",
    "__call__": "the write() callable that start_response returns takes bytes",
    "write": "wsgi.errors.write() takes a str (it is a text stream, the server's log)",
    "check_headers": "each header must be a (name, value) tuple of two str",
}


def validator_message(error: AssertionError) -> str | None:
    """A learner-facing explanation of an AssertionError raised by wsgiref.validate; None if it did not raise it."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames or frames[-1].filename != _VALIDATE_FILE:
        return None
    # The innermost frame is validate's assert_() helper; the one before it says which rule was checked.
    frame = frames[-2] if frames[-1].name == "assert_" and len(frames) > 1 else frames[-1]
    detail = str(error) or _SILENT_ASSERTS.get(frame.name) or f"the check `{frame.line}` in validate.{frame.name}"
    return f"wsgiref.validate rejected the app: {detail}"


def _watch(app, errors: list):
    """``app``, with every exception it raises (while called or iterated) kept in ``errors`` and answered here.

    Under a real server an app's error only reaches the server's log, which would print a traceback into the learner's
    notebook from the server's thread; the case reports it from ``errors`` instead. The app's own wsgi.errors log goes
    to a buffer for the same reason.
    """
    def watched(environ, start_response):
        environ["wsgi.errors"] = io.StringIO()
        try:
            body = app(environ, start_response)
        except Exception as error:
            errors.append(error)
            return _failed(start_response)
        return _WatchedBody(body, errors, start_response)
    return watched


def _failed(start_response) -> list[bytes]:
    start_response("500 Internal Server Error", [TEXT], sys.exc_info())
    return [b"the app failed: the check says why\n"]


class _WatchedBody:
    def __init__(self, body, errors: list, start_response):
        self._body, self._errors, self._start_response = body, errors, start_response

    def __iter__(self):
        try:
            yield from self._body
        except Exception as error:
            self._errors.append(error)
            try:
                yield from _failed(self._start_response)
            except Exception:
                pass  # the headers had gone out, so wsgiref re-raised: end the body here, cut short

    def close(self):
        close = getattr(self._body, "close", None)
        if close is not None:
            close()


def _explain(error: BaseException) -> str:
    if isinstance(error, CaseFailed):
        return error.message
    if isinstance(error, AssertionError) and validator_message(error):
        return validator_message(error)
    return f"{type(error).__name__}: {error}"


def over_http(app, exercise_id: str, send):
    """Serve validator(app) with wsgiref, return ``send(client, url)`` (client: an httpx.Client), stop the server.

    Raises CaseFailed when the app failed under the server, or httpx got no proper answer.
    """
    errors: list[BaseException] = []
    failure = None
    with ExitStack() as stack:
        server = stack.enter_context(serve_wsgi(_watch(wsgiref.validate.validator(app), errors),
                                                name=f"check-{exercise_id}"))
        # Entered last, so closed first: a handler still waiting for request bytes sees EOF before stop() waits for it.
        client = stack.enter_context(httpx.Client(timeout=HTTP_TIMEOUT))
        try:
            result = send(client, server.url)
        except httpx.HTTPError as error:
            failure = error
    if errors:
        raise CaseFailed(f"served by wsgiref, your app failed: {_explain(errors[0])}")
    if isinstance(failure, httpx.TimeoutException):
        raise CaseFailed(f"served by wsgiref, your app gave no answer within {HTTP_TIMEOUT:g} s: is it waiting to "
                         "read request bytes that never come?")
    if failure is not None:
        raise CaseFailed(f"served by wsgiref, httpx could not read the answer: {type(failure).__name__}: {failure}")
    return result


# --- what the cases check again and again -----------------------------------------------------------------------------

def expect_status(response: Response, code: int, what: str = "the status") -> None:
    if response.code is None:
        raise CaseFailed(f"{what} must be a str like '{code} ...', a code, a space and a reason phrase",
                         got=response.status)
    if response.code != code:
        raise CaseFailed(f"{what} should have code {code}", expected=f"{code} ...", got=response.status)


def expect_content_type(response: Response, media_type: str) -> None:
    """The Content-Type's media type (before any ';') must be ``media_type``."""
    value = response.header("Content-Type")
    if value is None or value.split(";")[0].strip().lower() != media_type:
        raise CaseFailed(f"the Content-Type header should say {media_type}", expected=media_type, got=value)


def expect_content_length(response: Response, required: bool = True) -> None:
    """A Content-Length header, when present (or required), must be the body's length in bytes."""
    value = response.header("Content-Length")
    if value is None:
        if required:
            raise CaseFailed("the response has no Content-Length header; add ('Content-Length', str(len(body))), "
                             "where body is the encoded bytes", got=response.headers)
        return
    if value != str(len(response.body)):
        raise CaseFailed(f"Content-Length says {value} but the body is {len(response.body)} bytes: count the "
                         "encoded bytes, len(body), not the characters of the text",
                         expected=str(len(response.body)), got=value)


def _app_from(middleware, app, name: str):
    wrapped = middleware(app)
    if not callable(wrapped):
        raise CaseFailed(f"{name}(app) must return a WSGI app: a function taking (environ, start_response)",
                         got=wrapped)
    return wrapped


class AppCrash(Exception):
    """What the checks' own apps raise to play an app with a bug."""


class RecordedBody:
    """A response body that remembers whether the server closed it."""

    def __init__(self, chunks):
        self.chunks = list(chunks)
        self.closed = False

    def __iter__(self):
        yield from self.chunks

    def close(self):
        self.closed = True


# --- 02.1 Hello, WSGI ---------------------------------------------------------------------------------------------------

hello = Exercise(
    "02.1", "Hello, WSGI",
    points=2,
    answer="a WSGI app hello_app(environ, start_response)",
    params=2,
    hints=[
        "A WSGI app does two things: it calls start_response(status, headers) once, then returns an iterable of bytes, "
        "the body. The status is a str like \"200 OK\"; headers is a list of (name, value) tuples of str.",
        "Encode the body first, body = \"Hello, WSGI!\".encode(\"utf-8\"), so that Content-Length can be "
        "str(len(body)): a length in bytes, written as a str.",
        "body = b\"Hello, WSGI!\"; start_response(\"200 OK\", [(\"Content-Type\", \"text/plain; charset=utf-8\"), "
        "(\"Content-Length\", str(len(body)))]); return [body]",
    ],
)


@hello.case("answers 200 with text/plain; charset=utf-8 and the body b'Hello, WSGI!'")
def _(answer):
    response = call_app(answer, make_environ())
    expect_status(response, 200)
    value = response.header("Content-Type")
    if value is None or value.replace(" ", "").lower() != "text/plain;charset=utf-8":
        raise CaseFailed("the Content-Type header is not right", expected="text/plain; charset=utf-8", got=value)
    expect_equal(response.body, b"Hello, WSGI!", "the body")


@hello.case("Content-Length is the body's length in bytes")
def _(answer):
    expect_content_length(call_app(answer, make_environ()), required=True)


@hello.case("served by wsgiref, httpx gets the same answer", timeout=SERVER_CASE_TIMEOUT)
def _(answer):
    reply = over_http(answer, "02.1", lambda client, url: client.get(url + "/"))
    expect_equal(reply.status_code, 200, "the status code httpx received")
    expect_equal(reply.content, b"Hello, WSGI!", "the body httpx received")


# --- 02.2 Echo a form ---------------------------------------------------------------------------------------------------

echo = Exercise(
    "02.2", "Echo a form",
    points=3,
    answer="a WSGI app echo_form(environ, start_response)",
    params=2,
    hints=[
        "The form's bytes are in environ['wsgi.input'], and CONTENT_LENGTH (a str, maybe '' or missing) says how many "
        "there are. Don't read 'until the end': on a kept-alive connection the end never comes, the client is waiting "
        "for you.",
        "length = int(environ.get('CONTENT_LENGTH') or 0) copes with a missing or empty value; then "
        "environ['wsgi.input'].read(length). urllib.parse.parse_qsl(data.decode('utf-8')) turns 'a=1&b=x+y' into "
        "[('a', '1'), ('b', 'x y')], and json.dumps(dict(...)) makes the answer.",
        "if environ['REQUEST_METHOD'] != 'POST': start_response('405 Method Not Allowed', [('Allow', 'POST'), "
        "('Content-Type', 'text/plain; charset=utf-8')]); return [b'POST a form here\\n']. Otherwise read the body as "
        "in hint 2, body = json.dumps(fields).encode('utf-8'), and answer 200 with Content-Type application/json and "
        "Content-Length str(len(body)).",
    ],
)

FORM = b"name=Ada+Lovelace&city=Z%C3%BCrich&lang=python"
FORM_FIELDS = {"name": "Ada Lovelace", "city": "Zürich", "lang": "python"}
FORM_TYPE = "application/x-www-form-urlencoded"


def _json_fields(response: Response, expected: dict) -> None:
    expect_status(response, 200)
    expect_content_type(response, "application/json")
    expect_content_length(response, required=True)
    try:
        fields = json.loads(response.body)
    except ValueError:
        raise CaseFailed("the body is not JSON", expected=json.dumps(expected), got=response.body) from None
    expect_equal(fields, expected, "the JSON object in the body")


@echo.case("a POSTed form comes back as a JSON object, with status 200 and Content-Length")
def _(answer):
    _json_fields(call_app(answer, make_environ("POST", body=FORM, content_type=FORM_TYPE)), FORM_FIELDS)


@echo.case("reads exactly CONTENT_LENGTH bytes of a 20 kB form: no more, no less")
def _(answer):
    note = "x" * 20_000
    body = f"note={note}&page=2".encode()
    response = call_app(answer, make_environ("POST", body=body, content_type=FORM_TYPE))
    try:
        got = json.loads(response.body).get("note", "")
    except (ValueError, AttributeError):
        got = None  # _json_fields below says what is wrong
    if isinstance(got, str) and len(got) < len(note):
        raise CaseFailed(f"the note field came back with {len(got)} of its {len(note)} characters: the app read only "
                         "part of the body. Read int(CONTENT_LENGTH) bytes, not a fixed amount")
    _json_fields(response, {"note": note, "page": "2"})


@echo.case("copes with a missing or empty CONTENT_LENGTH (an empty form: {})")
def _(answer):
    for content_length in (None, ""):
        response = call_app(answer, make_environ("POST", content_type=FORM_TYPE, content_length=content_length))
        try:
            fields = json.loads(response.body)
        except ValueError:
            fields = None
        if response.code != 200 or fields != {}:
            shown = "absent" if content_length is None else "''"
            raise CaseFailed(f"with CONTENT_LENGTH {shown}, a POST has an empty body: expected 200 and {{}}",
                             expected="200 ... {}", got=f"{response.status} {response.body!r}")


@echo.case("answers 405 Method Not Allowed, with Allow: POST, to GET and PUT")
def _(answer):
    for method in ("GET", "PUT"):
        response = call_app(answer, make_environ(method, body=FORM if method == "PUT" else b"",
                                                 content_type=FORM_TYPE if method == "PUT" else None))
        expect_status(response, 405, f"the status for a {method}")
        allow = response.header("Allow")
        if allow is None or "POST" not in [m.strip() for m in allow.split(",")]:
            raise CaseFailed("a 405 must say which methods the resource accepts, in an Allow header (method names "
                             "are case-sensitive: POST, not post)", expected="Allow: POST", got=response.headers)


@echo.case("served by wsgiref, httpx.post(url, data=...) gets the fields back", timeout=SERVER_CASE_TIMEOUT)
def _(answer):
    reply = over_http(answer, "02.2", lambda client, url: client.post(url + "/", data=FORM_FIELDS))
    expect_equal(reply.status_code, 200, "the status code httpx received")
    try:
        fields = reply.json()
    except ValueError:
        raise CaseFailed("the body httpx received is not JSON", got=reply.content) from None
    expect_equal(fields, FORM_FIELDS, "the JSON httpx received")


# --- 02.3 Countdown -----------------------------------------------------------------------------------------------------

countdown = Exercise(
    "02.3", "Countdown: a streaming response",
    points=3,
    answer="a WSGI app countdown(environ, start_response) that streams its body",
    params=2,
    hints=[
        "A list is ready all at once; a generator hands the server one piece at a time, and the server sends each "
        "piece as it comes. Any function with yield in it returns a generator.",
        "The app itself can be the generator: call start_response first, then yield each line as bytes. The server "
        "calls next() on it, so start_response still runs before the first piece goes out. time.sleep(0.2) after a "
        "yield makes the pause.",
        "start_response('200 OK', [('Content-Type', 'text/plain; charset=utf-8')]); for line in (b'3\\n', b'2\\n', "
        "b'1\\n'): yield line; time.sleep(0.2) -- then, after the loop, yield b'liftoff\\n'",
    ],
)

COUNTDOWN = [b"3\n", b"2\n", b"1\n", b"liftoff\n"]


def _late_first_chunk(times: list[float]) -> str:
    """Why '3' came out late: two mistakes do that, and they need different fixes."""
    if times[-1] - times[0] < 0.15:  # everything came out at once: the body was built before being handed over
        return (f"all four chunks came out together, {times[0]:.2f} s after the call: the app prepared the whole "
                "countdown before handing over the first line. Yield each line as soon as it is ready, so the "
                "server can send '3' while the app waits")
    return (f"the first chunk came out {times[0]:.2f} s after the call, and the others followed one by one: the app "
            "paused before yielding '3'. Pause after each of the first three lines, not before, so that the client "
            "gets '3' at once")


@countdown.case("yields b'3\\n', b'2\\n', b'1\\n', b'liftoff\\n' as four separate chunks, as text/plain")
def _(answer):
    response = call_app(answer, make_environ())
    expect_status(response, 200)
    expect_content_type(response, "text/plain")
    expect_content_length(response, required=False)
    expect_equal([chunk for chunk in response.chunks if chunk], COUNTDOWN, "the list of body chunks")


@countdown.case("hands over each chunk at once, then pauses about 0.2 s")
def _(answer):
    response = call_app(answer, make_environ())
    times = [t for t, chunk in zip(response.times, response.chunks) if chunk]
    if len(times) != len(COUNTDOWN):
        raise CaseFailed(f"expected {len(COUNTDOWN)} chunks, got {len(times)}: see the case above")
    if times[0] > 0.15:
        raise CaseFailed(_late_first_chunk(times))
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    if min(gaps) < 0.15:
        raise CaseFailed("the chunks should come about 0.2 s apart (time.sleep(0.2) between them)",
                         expected="gaps of ~0.2 s", got=", ".join(f"{gap:.2f} s" for gap in gaps))
    if response.finished is not None and response.finished - times[-1] > 0.1:
        raise CaseFailed(f"the body ended {response.finished - times[-1]:.2f} s after 'liftoff': the app paused after "
                         "the last line too. Without a Content-Length the client knows the response is complete only "
                         "when the body ends, so it waited for nothing. Pause after each of the first three lines only")


@countdown.case("served by wsgiref, '3' reaches httpx well before 'liftoff'", timeout=SERVER_CASE_TIMEOUT)
def _(answer):
    def stream(client, url):
        arrivals = []
        started = time.perf_counter()
        with client.stream("GET", url + "/") as reply:
            for piece in reply.iter_raw():
                arrivals.append((time.perf_counter() - started, piece))
                if sum(len(piece) for _, piece in arrivals) > MAX_BYTES:
                    raise CaseFailed(f"the body did not end after {MAX_BYTES} bytes: does a loop in it never stop?")
        return reply, arrivals

    reply, arrivals = over_http(answer, "02.3", stream)
    expect_equal(b"".join(piece for _, piece in arrivals), b"".join(COUNTDOWN), "the body httpx received")
    first, last = arrivals[0][0], arrivals[-1][0]
    if last - first < 0.3:  # the right answer spreads them over 0.6 s; pausing before each line, over 0.4 s
        raise CaseFailed(f"httpx received the first bytes at {first:.2f} s and the last at {last:.2f} s: the "
                         "countdown arrived in one go instead of line by line")


# --- 02.4 Timing middleware ---------------------------------------------------------------------------------------------

timing = Exercise(
    "02.4", "Timing middleware",
    points=4,
    answer="a function timing_middleware(app) that returns a WSGI app",
    params=1,
    hints=[
        "A middleware is a function that takes an app and returns a new app. The only moment it can add a header is "
        "when the inner app calls start_response: so give the inner app your own start_response, which adds the "
        "header and calls the server's.",
        "Note the time when your app is called for a request (inside it: timing_middleware itself runs once, when "
        "it wraps the app, long before any request); in your start_response, compute the milliseconds since then "
        "and add ('X-Response-Time', f'{ms:.1f}ms') to the headers. Accept exc_info=None and pass it on, and return "
        "what the server's start_response returns (old apps call that write() function). Return the inner app's "
        "iterable itself: the server then streams it and closes it.",
        "def timed(environ, start_response): started = time.perf_counter(); def timed_start(status, headers, "
        "exc_info=None): ms = (time.perf_counter() - started) * 1000; return start_response(status, headers + "
        "[('X-Response-Time', f'{ms:.1f}ms')], exc_info) -- then return app(environ, timed_start), and return timed.",
    ],
)

_MILLISECONDS = re.compile(r"([0-9]+(?:\.[0-9]+)?)ms")


def _response_time(response: Response) -> float:
    value = response.header("X-Response-Time")
    if value is None:
        raise CaseFailed("the response has no X-Response-Time header", got=response.headers)
    match = _MILLISECONDS.fullmatch(value)
    if match is None:
        spaced = _MILLISECONDS.fullmatch(value.replace(" ", ""))
        advice = (": no spaces, neither between the number and ms nor around them (f'{ms:.1f}ms')" if spaced
                  else "")
        raise CaseFailed(f"X-Response-Time should be a number of milliseconds followed by ms{advice}",
                         expected="e.g. 103.2ms", got=value)
    return float(match.group(1))


_COLLECTED = ("the middleware collected the body instead of passing it on. Return the app's iterable itself and add "
              "the header in your start_response")


def _plain_app(body: RecordedBody):
    def plain_app(environ, start_response):
        start_response("200 OK", [TEXT, ("X-Inner", "kept")])
        return body
    return plain_app


def _slow_app(environ, start_response):
    time.sleep(0.1)  # think of a database query
    start_response("200 OK", [TEXT])
    return [b"done"]


def _streaming_app(environ, start_response):
    # A generator: start_response runs at the server's first next(), after the middleware has returned.
    start_response("200 OK", [TEXT])
    for index, line in enumerate([b"one\n", b"two\n", b"three\n"]):
        if index:
            time.sleep(0.15)
        yield line


def _app_replacing_its_status(environ, start_response):
    start_response("200 OK", [TEXT])
    try:
        raise AppCrash("the template failed to render")
    except AppCrash:
        try:
            start_response("500 Internal Server Error", [TEXT], sys.exc_info())
        except TypeError as error:
            raise CaseFailed(f"the app called start_response(status, headers, exc_info) and got TypeError: {error}. "
                             "A start_response must accept exc_info: def start(status, headers, exc_info=None)")
    return [b"sorry\n"]


def _quick_app(environ, start_response):
    start_response("200 OK", [TEXT])
    return [b"quick"]


def _legacy_app(environ, start_response):
    write = start_response("200 OK", [TEXT])
    if not callable(write):
        raise CaseFailed("start_response returned " + repr(write) + " to the app instead of the server's write() "
                         "callable: a middleware's start_response must return what the server's start_response "
                         "returned (old apps send their body with it)")
    write(b"written, ")
    return [b"then returned"]


@timing.case("adds X-Response-Time and keeps the app's status, headers and body")
def _(answer):
    response = call_app(_app_from(answer, _plain_app(RecordedBody([b"hello"])), "timing_middleware"), make_environ())
    expect_status(response, 200)
    expect_equal(response.header("X-Inner"), "kept", "the app's own X-Inner header")
    expect_equal(response.body, b"hello", "the body")
    _response_time(response)


@timing.case("measures: an app that takes 0.1 s before start_response gets about 100ms")
def _(answer):
    response = call_app(_app_from(answer, _slow_app, "timing_middleware"), make_environ())
    elapsed = _response_time(response)
    if not 95 <= elapsed < 1000:
        raise CaseFailed("X-Response-Time should be the milliseconds from the call to start_response: about 100 "
                         "here (is it in seconds, or measured at the wrong moment?)", expected="about 100ms",
                         got=response.header("X-Response-Time"))


PAUSE = 0.3  # seconds between the two requests of the case below


@timing.case(f"times each request from its own call: wrapped once, called twice {PAUSE:g} s apart")
def _(answer):
    wrapped = _app_from(answer, _quick_app, "timing_middleware")  # wrapped once, as a server's app is at start-up
    call_app(wrapped, make_environ())
    time.sleep(PAUSE)
    response = call_app(wrapped, make_environ())
    if _response_time(response) >= PAUSE * 1000 / 2:
        raise CaseFailed(f"the app was wrapped once and called twice, {PAUSE:g} s apart. It answers at once, but the "
                         "second request's X-Response-Time counts the pause before that request arrived: the timer "
                         "started when timing_middleware wrapped the app, not when the request came in. Note the time "
                         "inside the wrapped app, each time it is called", expected="a few ms",
                         got=response.header("X-Response-Time"))


@timing.case("keeps streaming: each chunk passes as soon as the app yields it")
def _(answer):
    response = call_app(_app_from(answer, _streaming_app, "timing_middleware"), make_environ())
    chunks = [chunk for chunk in response.chunks if chunk]
    if response.body == b"one\ntwo\nthree\n" and len(chunks) != 3:
        raise CaseFailed(f"the app yielded 3 chunks, 0.15 s apart, and the server got {len(chunks)}: {_COLLECTED}",
                         expected=[b"one\n", b"two\n", b"three\n"], got=chunks)
    expect_equal(chunks, [b"one\n", b"two\n", b"three\n"], "the body chunks")
    if response.times[0] > 0.1:
        raise CaseFailed(f"the first chunk came out {response.times[0]:.2f} s after the call, only once the app "
                         f"had produced everything: {_COLLECTED}")
    _response_time(response)


@timing.case("passes exc_info on: an app replacing its 200 with a 500 after an error")
def _(answer):
    response = call_app(_app_from(answer, _app_replacing_its_status, "timing_middleware"), make_environ())
    expect_status(response, 500)
    _response_time(response)


@timing.case("returns the server's write() to apps that use it")
def _(answer):
    response = call_app(_app_from(answer, _legacy_app, "timing_middleware"), make_environ())
    expect_equal(response.body, b"written, then returned", "the body")


@timing.case("passes close() on: the app's iterable is closed when the server closes yours")
def _(answer):
    body = RecordedBody([b"a", b"b"])
    call_app(_app_from(answer, _plain_app(body), "timing_middleware"), make_environ())
    if not body.closed:
        raise CaseFailed("the server called close() on your middleware's iterable, but the app's iterable was never "
                         "closed (apps release database connections and files in close()). Return the app's iterable "
                         "itself, or call its close() from yours")


def _closed_when_the_client_leaves(answer, name: str) -> None:
    """The server stops after the first chunk (its client left) and calls close(): the app's body must be closed."""
    body = RecordedBody([b"first ", b"second ", b"third"])
    try:
        call_app(_app_from(answer, _plain_app(body), name), make_environ(), leave_after=1)
    except RuntimeError as error:
        if "GeneratorExit" not in str(error):
            raise
        raise CaseFailed("the client left after the first chunk and the server called close() on your generator, "
                         f"which answered {type(error).__name__}: {error}. close() raises GeneratorExit inside the "
                         "generator, at its paused yield: a bare `except:` (or `except BaseException:`) catches it "
                         "and yields again. Catch Exception, and close the app's iterable in `finally:`") from None
    if not body.closed:
        raise CaseFailed("the client left after the first chunk, so the server stopped iterating and called close() "
                         "on your iterable; the app's iterable was never closed. PEP 3333: close() must be called "
                         "however the response ends. If your iterable is a generator, close the app's iterable in a "
                         "`finally:` block (code after the loop does not run when the generator is closed half-way), "
                         "or return the app's iterable itself")


@timing.case("passes close() on when the client leaves after the first chunk")
def _(answer):
    _closed_when_the_client_leaves(answer, "timing_middleware")


@timing.case("served by wsgiref, httpx sees X-Response-Time", timeout=SERVER_CASE_TIMEOUT)
def _(answer):
    reply = over_http(_app_from(answer, _plain_app(RecordedBody([b"hello"])), "timing_middleware"), "02.4",
                      lambda client, url: client.get(url + "/"))
    expect_equal(reply.status_code, 200, "the status code httpx received")
    if "X-Response-Time" not in reply.headers:
        raise CaseFailed("httpx received no X-Response-Time header", got=dict(reply.headers))


# --- 02.5 Error catcher (optional) --------------------------------------------------------------------------------------

catcher = Exercise(
    "02.5", "Error catcher (optional)",
    points=3,
    answer="a function error_catcher(app) that returns a WSGI app",
    params=1,
    hints=[
        "An app can fail in two places: while it is called, and while the server iterates its body (a generator app "
        "runs its code only then). Your middleware must watch both: call the app inside try, and iterate its body "
        "inside try too, in a generator of your own, closing the app's body in a finally.",
        "On an error, call start_response('500 Internal Server Error', [('Content-Type', 'text/plain; "
        "charset=utf-8')], sys.exc_info()) and return (or yield) a short message. Passing exc_info is what makes a "
        "second start_response legal; if the headers already went out, the server's start_response re-raises the "
        "error, which is what you want: let it propagate.",
        "def guarded(environ, start_response): try: body = app(environ, start_response) except Exception: return "
        "fail(environ, start_response) -- then return a generator: try: yield from body except Exception: yield from "
        "fail(environ, start_response) finally: close body; where fail writes traceback.format_exc() to "
        "environ['wsgi.errors'], calls start_response(..., sys.exc_info()) and returns [b'Internal Server Error\\n'].",
    ],
)

SECRET = "password=hunter2"


def _crashing_app(environ, start_response):
    raise AppCrash(f"cannot connect to the database with {SECRET}")


def _app_crashing_after_start(environ, start_response):
    start_response("200 OK", [TEXT])
    raise AppCrash(f"cannot connect to the database with {SECRET}")


class CrashingBody(RecordedBody):
    """A body whose iteration fails, as a template that breaks half-way does; after ``b"partial "`` if asked."""

    def __init__(self, after_first: bool):
        super().__init__([b"partial "] if after_first else [])

    def __iter__(self):
        yield from self.chunks
        raise AppCrash(f"cannot connect to the database with {SECRET}")


def _app_with(body):
    def app(environ, start_response):
        start_response("200 OK", [TEXT])
        return body
    return app


def _expect_plain_500(response: Response) -> None:
    expect_status(response, 500)
    expect_content_type(response, "text/plain")
    if not response.body.strip():
        raise CaseFailed("the 500 needs a short message in its body, e.g. b'Internal Server Error\\n'")
    if SECRET.encode() in response.body:
        raise CaseFailed("the 500's body shows the exception's text, which may hold secrets (this one holds a "
                         "password): give the client a plain message and write the details to environ['wsgi.errors']",
                         got=response.body)
    expect_content_length(response, required=False)


@catcher.case("passes a healthy response through unchanged, and closes it")
def _(answer):
    body = RecordedBody([b"all ", b"good"])
    response = call_app(_app_from(answer, _plain_app(body), "error_catcher"), make_environ())
    expect_status(response, 200)
    expect_equal(response.header("X-Inner"), "kept", "the app's own X-Inner header")
    expect_equal(response.body, b"all good", "the body")
    if not body.closed:
        raise CaseFailed("the app's iterable was never closed: call its close() when the server closes yours")


@catcher.case("passes close() on when the client leaves after the first chunk")
def _(answer):
    _closed_when_the_client_leaves(answer, "error_catcher")


@catcher.case("turns an exception raised by the app into a 500 with a plain-text message, logged in wsgi.errors")
def _(answer):
    environ = make_environ()
    log = environ["wsgi.errors"]  # the validator wraps it; what the app writes still lands here
    _expect_plain_500(call_app(_app_from(answer, _crashing_app, "error_catcher"), environ))
    if SECRET not in log.getvalue() and "AppCrash" not in log.getvalue():
        raise CaseFailed("the client got a plain 500, but nothing about the error reached environ['wsgi.errors'], the "
                         "server's log: the details are lost, and nobody can find the bug. Write them there, e.g. "
                         "environ['wsgi.errors'].write(traceback.format_exc())", got=log.getvalue())


@catcher.case("replaces a response the app had started: start_response(..., sys.exc_info())")
def _(answer):
    _expect_plain_500(call_app(_app_from(answer, _app_crashing_after_start, "error_catcher"), make_environ()))


@catcher.case("catches an error raised while the server iterates the body, before anything was sent")
def _(answer):
    body = CrashingBody(after_first=False)
    try:
        response = call_app(_app_from(answer, _app_with(body), "error_catcher"),
                            make_environ())
    except AppCrash:
        raise CaseFailed("the app's body raised while the server iterated it, before any byte was sent, and "
                         "the error got past your middleware: it happens after your function has returned. Iterate "
                         "the app's body inside a try, in a generator of your own") from None
    _expect_plain_500(response)
    if not body.closed:
        raise CaseFailed("the app's iterable was never closed: close it in a finally")


@catcher.case("lets an error after the first chunk reach the server, unchanged")
def _(answer):
    body = CrashingBody(after_first=True)
    response = Response()
    try:
        call_app(_app_from(answer, _app_with(body), "error_catcher"), make_environ(),
                 response)
    except AppCrash:
        pass  # right: the 200 and b"partial " are on the wire, so only the server can act (it drops the connection)
    else:
        raise CaseFailed("after the first chunk went out a 500 is impossible (the client already has a 200), so the "
                         "server must see the error and drop the connection. Call start_response(..., "
                         "sys.exc_info()) and let it raise, instead of adding to the body",
                         expected="the error reaches the server after b'partial '", got=response.body)
    expect_equal(response.body, b"partial ", "what the client received before the error")
    if not body.closed:
        raise CaseFailed("the app's iterable was never closed: close it in a finally")


@catcher.case("served by wsgiref, httpx gets your 500", timeout=SERVER_CASE_TIMEOUT)
def _(answer):
    reply = over_http(_app_from(answer, _crashing_app, "error_catcher"), "02.5",
                      lambda client, url: client.get(url + "/"))
    expect_equal(reply.status_code, 500, "the status code httpx received")
    if SECRET in reply.text:
        raise CaseFailed("the 500's body shows the exception's text", got=reply.text)
