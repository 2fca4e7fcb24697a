"""A chat room as a raw ASGI app (no framework): GET / is the page, GET /ws (WebSocket) the room.

    >>> from gatewaylab.chat import app, room
    >>> server = serve_asgi(app, "chat", server="gatewaylab")    # or uvicorn: both speak WebSocket
    >>> len(room), room.history                                  # who is in, what was said

Every text message a member sends goes to every member, the sender too, as "name: text"; joins
and leaves are announced as "* name joined" and "* name left". A newcomer first gets the last
lines of the history. `chat_app(Room(...))` makes another room with its own app.
"""
import asyncio
import collections
import itertools
from urllib.parse import parse_qs

PAGE = b"""<!doctype html>
<meta charset="utf-8"><title>Chat</title>
<div id="log" style="height:16em;overflow:auto;border:1px solid #888;padding:4px"></div>
<form id="form"><input id="text" autocomplete="off" size="40" autofocus>
<button>Send</button> <span id="state">connecting...</span></form>
<script>
// The room is at ws, next to this page: the page's own URL with ws: for http: (wss: for https:)
// and /ws at the end, so it also works under a path prefix (jupyter-server-proxy's /proxy/8000/).
const url = new URL(location.href);
url.protocol = url.protocol.replace('http', 'ws');
url.pathname = url.pathname.replace(/\\/?$/, '/ws');
url.search = url.hash = '';
const socket = new WebSocket(url), log = document.getElementById('log');
const text = document.getElementById('text'), state = document.getElementById('state');
socket.onopen = () => { state.textContent = 'connected'; };
socket.onclose = (event) => { state.textContent = 'closed (' + event.code + ')'; };
socket.onmessage = (event) => {
  const line = document.createElement('div');
  line.textContent = event.data;  // text, not HTML: a message cannot inject markup
  log.append(line);
  log.scrollTop = log.scrollHeight;
};
document.getElementById('form').onsubmit = (event) => {
  event.preventDefault();
  if (text.value && socket.readyState === WebSocket.OPEN) socket.send(text.value);
  text.value = '';
};
</script>
"""


class Room:
    """The members (name -> their send), and the last `keep` lines said. `announce`: tell every
    member when someone joins or leaves (a benchmark with a thousand members turns it off)."""

    def __init__(self, keep=50, announce=True):
        self.members = {}
        self.history = collections.deque(maxlen=keep)
        self.announce = announce
        self.numbers = itertools.count(1)  # for guest names

    def __len__(self):
        return len(self.members)

    def name_for(self, wanted):
        """The name asked for, if free (at most 20 characters), or guest-N."""
        wanted = wanted.strip()[:20]
        return wanted if wanted and wanted not in self.members else f"guest-{next(self.numbers)}"

    async def broadcast(self, line):
        """Send a line to every member at once: a member whose connection is slow or gone
        (its send() raises) holds up no one, and is dropped when its own session ends."""
        self.history.append(line)
        sends = [send({"type": "websocket.send", "text": line}) for send in self.members.values()]
        await asyncio.gather(*sends, return_exceptions=True)

    async def join(self, name, send):
        for line in self.history:  # what was said before, for the newcomer only
            await send({"type": "websocket.send", "text": line})
        self.members[name] = send
        if self.announce:
            await self.broadcast(f"* {name} joined")

    async def leave(self, name):
        del self.members[name]
        if self.announce:
            await self.broadcast(f"* {name} left")


def chat_app(room):
    """The ASGI app of one room."""
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
        elif scope["type"] == "websocket" and scope["path"] == "/ws":
            await member(room, scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close"})  # no room here: 403
        elif scope["path"] == "/":
            await respond(send, 200, "text/html; charset=utf-8", PAGE)
        else:
            await respond(send, 404, "text/plain; charset=utf-8", b"not found\n")
    return app


async def member(room, scope, receive, send):
    """One member's session: join, then every text message is said to the room, until they go."""
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    query = parse_qs(scope["query_string"].decode("latin-1"))
    name = room.name_for(query.get("name", [""])[0])
    await room.join(name, send)
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("text"):  # (binary messages are not chat: ignored)
                await room.broadcast(f"{name}: {message['text']}")
    finally:  # leave however the session ends, even cancelled by a stopping server
        await room.leave(name)


async def respond(send, status, content_type, body):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def lifespan(receive, send):
    """Nothing to start or stop: each phase is answered as soon as it comes."""
    while True:
        phase = (await receive())["type"].removeprefix("lifespan.")
        await send({"type": f"lifespan.{phase}.complete"})
        if phase == "shutdown":
            return


room = Room()
app = chat_app(room)
