"""Server-Sent Events: the event-stream parser of the WHATWG HTML standard, and a small client on httpx.

    >>> parser = Parser()
    >>> parser.feed("id: 7\\ndata: one\\ndata: two\\n\\n")
    [Event(data='one\\ntwo', event='message', id='7', retry=None)]

    >>> for event in Client(url).events(limit=3):    # reconnects with Last-Event-ID after the stream ends
    ...     print(event.id, event.data)

The rules, from the standard's "Server-sent events" section (9.2, "Parsing an event stream" and "Interpreting an event
stream"):

* the stream is UTF-8 (a leading byte order mark is dropped); a line ends with CRLF, LF or CR;
* a blank line dispatches the event that the lines before it built; a line starting with ":" is a comment (servers
  send one now and then as a heartbeat, so that proxies keep the connection open);
* other lines are "field: value" (one space after the colon is dropped; a line with no colon is a field with an empty
  value): ``data`` appends its value and a newline to the data buffer, ``event`` sets the event type, ``id`` sets the
  last event ID (unless the value contains NULL), ``retry`` sets the reconnection time in milliseconds (only if the
  value is all ASCII digits); any other field is ignored;
* on dispatch, the last event ID is kept even when no event fires; an event with an empty data buffer is not fired;
  the data's last newline is removed and the type defaults to "message"; an event not ended by a blank line when the
  stream ends is discarded.

The client (:class:`Client`) is an ``EventSource`` in Python: when the stream ends or the connection fails it waits the
reconnection time and asks again, sending ``Last-Event-ID`` when it has one; a response that is not 200 with
``Content-Type: text/event-stream`` fails the connection for good (a server sends 204 to say "don't reconnect").
"""

from __future__ import annotations

import codecs
import time
from dataclasses import dataclass, field
from typing import Iterator

import httpx

__all__ = ["Event", "Parser", "parse", "Client", "StreamFailed", "format_event", "comment", "CONTENT_TYPE",
           "DEFAULT_RETRY_MS"]

CONTENT_TYPE = "text/event-stream"
DEFAULT_RETRY_MS = 3000  # the standard leaves the initial reconnection time to the user agent; a few seconds


@dataclass
class Event:
    """One dispatched event: its data, its type, the last event ID when it fired, and the reconnection time (ms)
    the stream had set by then (None: not set)."""

    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None


@dataclass
class Parser:
    """An incremental event-stream parser: feed it text (or bytes, decoded as UTF-8) as it arrives, get the events
    that are complete. ``last_event_id``, ``retry`` and ``comments`` (how many comment lines came) are kept."""

    last_event_id: str = ""
    retry: int | None = None
    comments: int = 0
    _data: list[str] = field(default_factory=list)
    _type: str = ""
    _id: str = ""
    _line: str = ""
    _after_cr: bool = False  # the last character fed was a CR: a LF right after it ends no second line
    _started: bool = False
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))

    def __post_init__(self):
        self._id = self.last_event_id

    def feed(self, chunk: str | bytes) -> list[Event]:
        """The events that the text fed so far completes (a line or an event may span chunks)."""
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        events = []
        start = 0
        for index, char in enumerate(text):
            if char not in "\r\n":
                continue
            if char == "\n" and self._after_cr and index == start:
                self._after_cr = False  # the LF of a CRLF
                start = index + 1
                continue
            event = self._line_done(self._line + text[start:index])
            if event is not None:
                events.append(event)
            self._line, self._after_cr, start = "", char == "\r", index + 1
        if start < len(text):
            self._line += text[start:]
            self._after_cr = False
        return events

    def _line_done(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry":
            if value and value.isascii() and value.isdigit():
                self.retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        self.last_event_id = self._id
        data, kind = self._data, self._type
        self._data, self._type = [], ""
        if not data:
            return None
        return Event("\n".join(data), kind or "message", self.last_event_id, self.retry)


def parse(text: str | bytes) -> list[Event]:
    """The events of a whole stream (an event the stream does not end with a blank line is discarded)."""
    return Parser().feed(text)


def format_event(data: str, *, event: str | None = None, id: str | None = None, retry: int | None = None) -> bytes:
    """One event as the bytes a server sends: a data line per line of `data`, then a blank line."""
    lines = []
    if event is not None:
        lines.append(f"event: {event}")
    if id is not None:
        if any(c in id for c in "\0\r\n"):
            raise ValueError(f"an event id cannot hold NULL, CR or LF: {id!r}")
        lines.append(f"id: {id}")
    if retry is not None:
        lines.append(f"retry: {int(retry)}")
    lines += [f"data: {line}" for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def comment(text: str = "") -> bytes:
    """A comment line (a heartbeat): clients ignore it, proxies see traffic."""
    return f": {text}\n".encode("utf-8") if text else b":\n"


class StreamFailed(Exception):
    """The server answered something other than an event stream: the client does not reconnect."""


class Client:
    """An ``EventSource`` on httpx: `events()` yields events as they arrive, reconnecting when the stream ends or the
    connection drops, after the reconnection time (the server's ``retry:``, else `retry_ms`), with ``Last-Event-ID``.

    timeout: seconds with no bytes at all (not even a heartbeat) before the connection is taken as dead.
    reconnects: how many times to try again, after the first attempt, before giving up (None: for ever); an attempt that
    got no answer counts too.
    """

    def __init__(self, url: str, *, last_event_id: str = "", retry_ms: int = DEFAULT_RETRY_MS,
                 timeout: float = 30.0, reconnects: int | None = None, headers: dict | None = None):
        self.url, self.timeout, self.reconnects = url, timeout, reconnects
        self.headers = dict(headers or {})
        self.last_event_id, self.retry_ms = last_event_id, retry_ms
        self.connections = 0  # how many times a stream began (a 200 event stream came back)
        self.attempts = 0  # how many times it asked, answered or not
        self.comments = 0  # heartbeats (comment lines) seen, over all connections
        self.last_seen: float | None = None  # time.monotonic() of the last bytes read

    def events(self, limit: int | None = None) -> Iterator[Event]:
        """Events as they come; stops after `limit` events, or when the server says no more."""
        seen = 0
        with httpx.Client(timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))) as http:
            while True:
                try:
                    for event in self._one_connection(http):
                        yield event
                        seen += 1
                        if limit is not None and seen >= limit:
                            return
                except (httpx.TransportError, httpx.StreamError):
                    pass  # the connection dropped or went silent: reconnect, as a browser would
                if self.reconnects is not None and self.attempts > self.reconnects:
                    return
                time.sleep(self.retry_ms / 1000)

    def _one_connection(self, http: httpx.Client) -> Iterator[Event]:
        headers = {"Accept": CONTENT_TYPE, "Cache-Control": "no-cache", **self.headers}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        self.attempts += 1
        with http.stream("GET", self.url, headers=headers) as response:
            self.connections += 1
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if response.status_code != 200 or kind != CONTENT_TYPE:
                raise StreamFailed(f"{self.url} answered {response.status_code} with Content-Type "
                                   f"{kind or 'none'!r}, not 200 {CONTENT_TYPE}: not reconnecting")
            parser = Parser(last_event_id=self.last_event_id)
            for chunk in response.iter_bytes():
                self.last_seen = time.monotonic()
                comments = parser.comments
                events = parser.feed(chunk)
                self.comments += parser.comments - comments
                self.last_event_id = parser.last_event_id
                if parser.retry is not None:
                    self.retry_ms = parser.retry
                yield from events
