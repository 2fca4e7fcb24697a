"""An ASGI validator, the counterpart of wsgiref.validate: a middleware that checks, against the ASGI
specs (ASGI 3.0, HTTP spec 2.x, lifespan 2.0), the scope a server gives, every event the server hands to
receive(), and every event the app passes to send(). A broken rule raises ASGIValidationError (an
AssertionError, as wsgiref.validate's are), whose message says who broke which rule. Lesson 06 builds it;
lesson 07 runs the learner's server under it.

    app = validator(app)     # then serve it, or call it by hand: await app(scope, receive, send)

WebSocket scopes pass through unchecked (lesson 09).
"""
import inspect


class ASGIValidationError(AssertionError):
    """A rule of the ASGI spec, broken: the message says by whom (server or app) and which rule."""


def require(condition, message):
    """Raise ASGIValidationError(message) unless `condition` holds."""
    if not condition:
        raise ASGIValidationError(message)


def check_headers(headers, where, lower_case):
    """A list of [name, value] pairs of bytes; in a response, names must be lower-case."""
    require(isinstance(headers, (list, tuple)),
            f"{where}: headers must be a list of [name, value] pairs, not {type(headers).__name__}")
    for pair in headers:
        require(isinstance(pair, (list, tuple)) and len(pair) == 2,
                f"{where}: each header must be a [name, value] pair, not {pair!r}")
        name, value = pair
        require(isinstance(name, bytes) and isinstance(value, bytes),
                f"{where}: header {pair!r}: name and value must be bytes (b'host'), not str")
        require(not name.startswith(b":"), f"{where}: {name!r} is an HTTP/2 pseudo header, "
                "which the spec keeps out of ASGI headers")
        if lower_case:
            require(name == name.lower(),
                    f"{where}: header name {name!r} must be lower-case ({name.lower()!r}): "
                    "the spec says response header names must be lowercased")


SCOPE_TYPES = (("scheme", str, True), ("path", str, False), ("raw_path", bytes, True),
               ("query_string", bytes, False), ("root_path", str, True), ("state", dict, True))


def check_http_scope(scope):
    """The keys the HTTP spec requires of an http scope, and their types."""
    asgi = scope.get("asgi")
    require(isinstance(asgi, dict) and str(asgi.get("version", "")).startswith("3."),
            f"server: scope['asgi'] must be a dict with 'version' '3.0', not {asgi!r}")
    version = scope.get("http_version")
    require(version in ("1.0", "1.1", "2"),
            f"server: scope['http_version'] must be '1.0', '1.1' or '2', not {version!r}")
    method = scope.get("method")
    require(isinstance(method, str) and method == method.upper() and method,
            f"server: scope['method'] must be an upper-case str, not {method!r}")
    for key, kind, optional in SCOPE_TYPES:
        value = scope.get(key)
        require((optional and value is None) or isinstance(value, kind),
                f"server: scope[{key!r}] must be {kind.__name__}, not {value!r}")
    for key in ("client", "server"):
        value = scope.get(key)
        require(value is None or (isinstance(value, (list, tuple)) and len(value) == 2),
                f"server: scope[{key!r}] must be [host, port] or None, not {value!r}")
    # Request header names "should be lowercased, but it is not required" (www spec): types only.
    check_headers(scope.get("headers"), "server: scope['headers']", lower_case=False)


class HTTPCycle:
    """One HTTP request between a server and an app: how far its events have gone."""

    def __init__(self):
        self.request_ended = False  # an http.request with more_body False has arrived
        self.disconnected = False  # http.disconnect has arrived
        self.response = "not started"  # then "started", "body ended" (trailers due), "ended"
        self.trailers = False  # the app said it will send trailers


def http_received(cycle, message):
    """Check an event the server handed to the app's receive()."""
    require(isinstance(message, dict), f"server: receive() returned {message!r}, not a dict")
    kind = message.get("type")
    if kind == "http.disconnect":
        cycle.disconnected = True
        return
    require(kind == "http.request",
            f"server: receive() gave {kind!r} in an http scope, "
            "where only 'http.request' or 'http.disconnect' may come")
    require(not cycle.request_ended,
            "server: an http.request event came after the body had ended (more_body False); "
            "after it, receive() waits for http.disconnect")
    require(isinstance(message.get("body", b""), bytes),
            f"server: http.request's body must be bytes, not {type(message.get('body')).__name__}")
    more_body = message.get("more_body", False)
    require(isinstance(more_body, bool),
            f"server: http.request's more_body must be True or False, not {more_body!r}")
    cycle.request_ended = not more_body


def http_sending(cycle, message):
    """Check an event the app passes to send(), before the server sees it."""
    require(isinstance(message, dict), f"app: send() was given {message!r}, not a dict")
    kind = message.get("type")
    require(cycle.response != "ended", f"app: sent {kind!r} after the response had ended "
            "(an http.response.body with more_body False ends it): nothing may follow")
    if kind == "http.response.start":
        response_start(cycle, message)
    elif kind == "http.response.body":
        response_body(cycle, message)
    elif kind == "http.response.trailers" and cycle.response == "body ended":
        check_headers(message.get("headers", []), "app: http.response.trailers", lower_case=True)
        if not message.get("more_trailers", False):
            cycle.response = "ended"
    else:
        require(False, f"app: sent {kind!r}: in an http scope the app sends 'http.response.start', "
                "then one or more 'http.response.body'")


def response_start(cycle, message):
    require(cycle.response == "not started",
            "app: sent http.response.start twice: a response has one status and one set of headers")
    status = message.get("status")
    require(isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599,
            f"app: http.response.start's status must be an int from 100 to 599, not {status!r}")
    check_headers(message.get("headers", []), "app: http.response.start", lower_case=True)
    cycle.trailers = message.get("trailers", False)
    require(isinstance(cycle.trailers, bool),
            "app: http.response.start's trailers must be True or False")
    cycle.response = "started"


def response_body(cycle, message):
    require(cycle.response != "body ended",
            "app: sent http.response.body after the body had ended (more_body False); it announced "
            "trailers (trailers True), so only http.response.trailers may follow")
    require(cycle.response == "started",
            "app: sent http.response.body before http.response.start: start the response first")
    require(isinstance(message.get("body", b""), bytes),
            f"app: http.response.body's body must be bytes, not "
            f"{type(message.get('body')).__name__} (encode a str: 'text'.encode())")
    more_body = message.get("more_body", False)
    require(isinstance(more_body, bool),
            f"app: http.response.body's more_body must be True or False, not {more_body!r}")
    if not more_body:
        cycle.response = "body ended" if cycle.trailers else "ended"


def http_returned(cycle):
    """Check the app's end: a complete response, unless the client had gone."""
    unsent = ""
    if cycle.response == "not started":
        unsent = " (a send() that is not awaited sends nothing)"
    require(cycle.response == "ended" or cycle.disconnected,
            f"app: returned with the response {cycle.response}: send http.response.start, then "
            f"http.response.body until more_body is False{unsent} (the server would answer 500, "
            "or cut it short)")


class LifespanCycle:
    """The lifespan scope: startup, then shutdown, each answered once by the app."""

    def __init__(self):
        self.phase = "waiting"  # then "startup", "started", "shutdown", "done"


def lifespan_received(cycle, message):
    require(cycle.phase in ("waiting", "started"),
            f"app: called receive() again before it answered lifespan.{cycle.phase} "
            f"(with lifespan.{cycle.phase}.complete, or .failed)")
    kind = message.get("type") if isinstance(message, dict) else message
    expected = {"waiting": "lifespan.startup", "started": "lifespan.shutdown"}[cycle.phase]
    require(kind == expected,
            f"server: receive() gave {kind!r} in the lifespan scope, where {expected!r} was due")
    cycle.phase = {"waiting": "startup", "started": "shutdown"}[cycle.phase]


def lifespan_sending(cycle, message):
    require(isinstance(message, dict), f"app: send() was given {message!r}, not a dict")
    kind = message.get("type")
    answers = {"startup": ("lifespan.startup.complete", "lifespan.startup.failed"),
               "shutdown": ("lifespan.shutdown.complete", "lifespan.shutdown.failed")}
    allowed = answers.get(cycle.phase, ())
    require(kind in allowed, f"app: sent {kind!r} in the lifespan scope; "
            + (f"it answers {cycle.phase} with {' or '.join(allowed)}" if allowed
               else "nothing is due: wait for the server's next event (receive())"))
    require(isinstance(message.get("message", ""), str),
            "app: a failed event's message must be a str")
    cycle.phase = {"startup": "started", "shutdown": "done"}[cycle.phase]


async def checked_call(app, scope, receive, send, cycle, on_receive, on_send):
    """Call the app with a receive and a send that check each event as it passes."""

    async def checked_receive():
        message = await receive()
        on_receive(cycle, message)
        return message

    async def checked_send(message):
        on_send(cycle, message)
        await send(message)

    result = app(scope, checked_receive, checked_send)
    require(inspect.isawaitable(result), f"app: calling it gave {result!r}, not something to "
            "await: an ASGI app is an `async def app(scope, receive, send)`")
    returned = await result
    if inspect.iscoroutine(returned):
        returned.close()  # it will never run: closed, Python does not warn it was never awaited
        require(False, f"app: returned {returned.__name__}()'s coroutine, not awaited, so "
                "that app never ran: `await` it (await app(scope, receive, send)), don't return it")


def validator(app):
    """Wrap an ASGI app: every scope, and every event either way, is checked against the spec."""

    async def validated(scope, receive, send):
        require(isinstance(scope, dict), f"server: the scope must be a dict, not {scope!r}")
        kind = scope.get("type")
        if kind == "http":
            check_http_scope(scope)
            cycle, on_receive, on_send = HTTPCycle(), http_received, http_sending
        elif kind == "lifespan":
            require(isinstance(scope.get("state", {}), dict),
                    "server: scope['state'] must be a dict")
            cycle, on_receive, on_send = LifespanCycle(), lifespan_received, lifespan_sending
        else:
            return await app(scope, receive, send)
        await checked_call(app, scope, receive, send, cycle, on_receive, on_send)
        if kind == "http":
            http_returned(cycle)

    return validated
