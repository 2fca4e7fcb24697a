"""How does the course's server hold real-time connections? (python benchmarks/realtime.py)

Compares the course's WebSocket server (python -m gatewaylab.websocket, gatewaylab.asgi's server with
gatewaylab.websocket's upgrade) with uvicorn and its default WebSocket protocol on websockets 17 (--ws
websockets-sansio, --http h11, --loop asyncio), each in its own process, lifespan off; the clients are raw asyncio
connections that mask their frames with gatewaylab.websocket's encode_frame:

1. a chat room (gatewaylab.chat, joins not announced) with 1,000 members connected at once: the time from one
   member's message to its arrival at the last of the 1,000, a warm-up message first, then --repeat timed ones;
2. memory per idle WebSocket: a fresh server echoes a warm-up, then 1,000 connections are opened and left idle; the
   growth of the server process's PSS (and RSS), divided by 1,000;
3. echo round trips per second: 10 connections, each sending a 32-byte text message and waiting for its echo, for
   --duration seconds; the servers run side by side and are measured in turns, best of --repeat;
4. server-sent events: 1,000 open streams (an event every 0.25 s) on the course's ASGI server, and 200 on the course's
   threaded WSGI server (python -m gatewaylab.wsgi --threads 200), with its threads counted while they are open, and
   a 201st stream that must wait for a thread.

Every ratio printed comes from this one run. The script exits with status 1 if a target is missed:
- one message reaches all 1,000 chat members within 1 s on the course's server (every timed message);
- its PSS per idle WebSocket is no more than uvicorn's;
- its echo round trips per second are at least 0.8x uvicorn's;
- all 1,000 SSE streams on the ASGI server, and all 200 on the WSGI server, are open at once and deliver their next
  event; the WSGI server then runs at least 200 threads.

    python benchmarks/realtime.py [--duration 3] [--repeat 3] [--quick]
"""

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time

import psutil

# The ASGI benchmark's helpers: the open-files limit, the servers' environment, a server process, its footprint.
from asgi_server import HERE, Server, footprint, free_port, most_files, server_env
from wsgi_server import report_targets

from gatewaylab.chat import Room, chat_app
from gatewaylab.websocket import CLOSE, TEXT, encode_frame, read_frame

MEMBERS = 1000  # chat members connected at once
IDLE = 1000  # idle WebSocket connections for the memory figure
ECHO_CLIENTS = 10
ASGI_STREAMS, WSGI_STREAMS = 1000, 200
TICK = 0.25  # seconds between two events of a stream
OPENING = 200  # connections being opened at once (well under every backlog)
BACKLOG = 2048
IDLE_TIMEOUT = 60
SERVERS = ("gatewaylab", "uvicorn")


# --- the apps (the server processes import this file as the module realtime) ----------------------------------------

chat = chat_app(Room(keep=0, announce=False))  # a thousand joins announced to everyone would be a million messages


async def app(scope, receive, send):
    """/ws: the chat room; /echo: every message back; /events?n=: n server-sent events, TICK seconds apart."""
    if scope["type"] == "websocket" and scope["path"] == "/ws":
        await chat(scope, receive, send)
    elif scope["type"] == "websocket":
        await echo(receive, send)
    elif scope["type"] == "http":
        await events(scope, send)


async def echo(receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})


def event_count(query):
    return int(re.search(r"n=(\d+)", query)[1]) if "n=" in query else 40


async def events(scope, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
    for number in range(event_count(scope["query_string"].decode())):
        if number:
            await asyncio.sleep(TICK)
        await send({"type": "http.response.body", "body": b"data: %d\n\n" % number, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def events_wsgi(environ, start_response):
    """The same stream from a WSGI app: each open stream holds one of the server's threads."""
    start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
    for number in range(event_count(environ.get("QUERY_STRING", ""))):
        if number:
            time.sleep(TICK)
        yield b"data: %d\n\n" % number


# --- the servers ----------------------------------------------------------------------------------------------------

def command(kind, port):
    if kind == "gatewaylab":
        return [sys.executable, "-m", "gatewaylab.websocket", "realtime:app", "--host", "127.0.0.1",
                "--port", str(port), "--lifespan", "off", "--timeout", str(IDLE_TIMEOUT)]
    if kind == "uvicorn":
        return [sys.executable, "-m", "uvicorn", "realtime:app", "--host", "127.0.0.1", "--port", str(port),
                "--loop", "asyncio", "--http", "h11", "--ws", "websockets-sansio", "--lifespan", "off",
                "--log-level", "warning", "--no-access-log", "--backlog", str(BACKLOG),
                "--timeout-keep-alive", str(IDLE_TIMEOUT)]
    if kind == "gatewaylab-wsgi":
        return [sys.executable, "-m", "gatewaylab.wsgi", "realtime:events_wsgi", "--port", str(port),
                "--threads", str(WSGI_STREAMS), "--backlog", str(BACKLOG)]
    raise ValueError(kind)


class RealtimeServer(Server):
    """asgi_server's Server (a child process, started and stopped the same way) running this file's apps."""

    def __init__(self, kind, env):
        self.kind, self.port = kind, free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process = subprocess.Popen(command(kind, self.port), cwd=HERE, env=env, preexec_fn=most_files,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ps = psutil.Process(self.process.pid)


# --- the clients ----------------------------------------------------------------------------------------------------

HANDSHAKE = ("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


async def open_websocket(port, path, gate):
    async with gate:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HANDSHAKE.format(path=path).encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"the handshake got {head[:40]!r}")
        return reader, writer


async def open_many(port, path, count):
    gate = asyncio.Semaphore(OPENING)
    return await asyncio.gather(*(open_websocket(port, path, gate) for _ in range(count)))


def send_text(writer, text):
    writer.write(encode_frame(TEXT, text.encode(), mask=os.urandom(4)))


async def close_all(connections):
    for reader, writer in connections:
        with contextlib.suppress(OSError):
            writer.write(encode_frame(CLOSE, (1000).to_bytes(2, "big"), mask=os.urandom(4)))
            writer.close()
    await asyncio.sleep(0.5)


async def broadcast_times(port, rounds):
    """Seconds from one member's message to its arrival at the last of MEMBERS members, for each round after a
    warm-up (which also makes sure every member has joined the room)."""
    connections = await open_many(port, "/ws", MEMBERS)
    arrived = {}  # round -> members that have it
    done = {number: asyncio.Event() for number in range(rounds + 1)}

    async def member(reader):
        while True:
            frame = await read_frame(reader, 1 << 20, masked=False)
            number = int(frame.payload.rsplit(b" ", 1)[1])
            arrived[number] = arrived.get(number, 0) + 1
            if arrived[number] == MEMBERS:
                done[number].set()

    readers = [asyncio.create_task(member(reader)) for reader, _ in connections]
    times = []
    try:
        for number in range(rounds + 1):
            started = time.monotonic()
            send_text(connections[0][1], f"round {number}")
            await asyncio.wait_for(done[number].wait(), 30)
            times.append(time.monotonic() - started)
    finally:
        for task in readers:
            task.cancel()
        await close_all(connections)
    return times[1:]


async def echo_rate(port, duration):
    """Round trips per second: ECHO_CLIENTS connections, each sending a message and waiting for its echo."""
    connections = await open_many(port, "/echo", ECHO_CLIENTS)
    counts = [0] * ECHO_CLIENTS
    message = encode_frame(TEXT, b"x" * 32, mask=b"\x01\x02\x03\x04")

    async def client(index, reader, writer):
        end = time.monotonic() + duration
        while time.monotonic() < end:
            writer.write(message)
            await read_frame(reader, 1 << 20, masked=False)
            counts[index] += 1

    started = time.monotonic()
    await asyncio.gather(*(client(i, *connection) for i, connection in enumerate(connections)))
    elapsed = time.monotonic() - started
    await close_all(connections)
    return sum(counts) / elapsed


def idle_memory(kind, env):
    """(PSS, RSS) growth in bytes per idle WebSocket, over IDLE of them, on a fresh, warmed-up server."""
    async def measure(server):
        await echo_rate(server.port, 0.5)  # warm up: handshakes, messages, closes
        warm = await open_many(server.port, "/echo", 100)
        await close_all(warm)
        before = footprint(server.ps)
        connections = await open_many(server.port, "/echo", IDLE)
        try:
            await asyncio.sleep(1)
            after = footprint(server.ps)
            if after[2] - before[2] < IDLE or any(reader.at_eof() for reader, _ in connections):
                raise RuntimeError(f"{kind} closed idle WebSockets")
        finally:
            await close_all(connections)
        return (after[0] - before[0]) / IDLE, (after[1] - before[1]) / IDLE

    with RealtimeServer(kind, env) as server:
        return asyncio.run(measure(server))


# --- server-sent events ---------------------------------------------------------------------------------------------

async def open_stream(port, count, gate):
    """A GET /events stream, once its first event has come: (reader, writer)."""
    async with gate:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /events?n={count} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        if not head.startswith(b"HTTP/1.1 200") or b"text/event-stream" not in head:
            raise RuntimeError(f"the stream got {head[:60]!r}")
        await asyncio.wait_for(reader.readuntil(b"\n\n"), 30)
        return reader, writer


async def next_events(streams, timeout):
    """How many of the streams deliver their next event within `timeout` seconds."""
    async def one(reader):
        try:
            await asyncio.wait_for(reader.readuntil(b"\n\n"), timeout)
            return True
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return False
    return sum(await asyncio.gather(*(one(reader) for reader, _ in streams)))


async def sse_run(server, count, events, extra=False):
    """Open `count` streams of `events` events; then: how many delivered their next event, the server's threads
    while they were open, the open time, and (extra) seconds until a stream beyond them got its first event."""
    gate = asyncio.Semaphore(OPENING)
    started = time.monotonic()
    streams = await asyncio.gather(*(open_stream(server.port, events, gate) for _ in range(count)))
    opened = time.monotonic() - started
    threads = server.ps.num_threads()
    live = await next_events(streams, 5 * TICK + 5)
    waited = None
    if extra:
        started = time.monotonic()
        streams.append(await open_stream(server.port, 1, asyncio.Semaphore(1)))
        waited = time.monotonic() - started
    for _, writer in streams:
        writer.close()
    return live, threads, opened, waited


# --- the run --------------------------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=3, help="seconds per echo measurement (default 3)")
    parser.add_argument("--repeat", type=int, default=3, help="timed chat messages, and echo runs (default 3)")
    parser.add_argument("--quick", action="store_true", help="--duration 1 --repeat 2")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.repeat = 1, 2
    if most_files() < 2 * max(MEMBERS, IDLE, ASGI_STREAMS) + 256:
        sys.exit("this system allows too few open files for 1,000 connections")
    env = server_env(None)
    targets = []  # (what, met): met None is a figure for the record, not a target

    print(f"Chat: {MEMBERS} members, one message to all: seconds until the last has it", flush=True)
    broadcast = {}
    for kind in SERVERS:
        with RealtimeServer(kind, env) as server:
            broadcast[kind] = asyncio.run(broadcast_times(server.port, args.repeat))
        print(f"  {kind:12} " + ", ".join(f"{t:.3f}" for t in broadcast[kind]), flush=True)
    ours, theirs = max(broadcast["gatewaylab"]), max(broadcast["uvicorn"])
    targets.append((f"{MEMBERS} chat members: the slowest message reached all in {ours:.3f} s (target <= 1 s)",
                    ours <= 1))
    targets.append((f"{MEMBERS} chat members vs uvicorn: {ours:.3f} vs {theirs:.3f} s = {ours / theirs:.2f}x", None))

    print(f"\nMemory per idle WebSocket ({IDLE} open; growth of the server's PSS / RSS)", flush=True)
    memory = {}
    for kind in SERVERS:
        memory[kind] = idle_memory(kind, env)
        print(f"  {kind:12} PSS {memory[kind][0] / 1024:5.1f} KiB, RSS {memory[kind][1] / 1024:5.1f} KiB", flush=True)
    ratio = memory["gatewaylab"][0] / memory["uvicorn"][0]
    targets.append((f"PSS per idle WebSocket vs uvicorn: {ratio:.2f}x ({memory['gatewaylab'][0] / 1024:.1f} vs "
                    f"{memory['uvicorn'][0] / 1024:.1f} KiB; target <= 1x)", ratio <= 1))

    print(f"\nEcho: {ECHO_CLIENTS} connections, round trips per second, best of {args.repeat} x {args.duration:g} s",
          flush=True)
    rates = {kind: 0.0 for kind in SERVERS}
    with contextlib.ExitStack() as stack:
        servers = {kind: stack.enter_context(RealtimeServer(kind, env)) for kind in SERVERS}
        for _ in range(args.repeat):
            for kind, server in servers.items():  # in turns: a burst of other work hurts one run, not one server
                rates[kind] = max(rates[kind], asyncio.run(echo_rate(server.port, args.duration)))
    for kind in SERVERS:
        print(f"  {kind:12} {rates[kind]:8.0f} round trips/s")
    ratio = rates["gatewaylab"] / rates["uvicorn"]
    targets.append((f"echo round trips/s vs uvicorn: {ratio:.2f}x ({rates['gatewaylab']:.0f} vs "
                    f"{rates['uvicorn']:.0f}; target >= 0.8x)", ratio >= 0.8))

    print(f"\nServer-sent events: open streams, an event every {TICK:g} s", flush=True)
    with RealtimeServer("gatewaylab", env) as server:
        live, threads, opened, _ = asyncio.run(sse_run(server, ASGI_STREAMS, 40))
    print(f"  gatewaylab (ASGI)       {ASGI_STREAMS} streams opened in {opened:.2f} s, {live} delivered their next "
          f"event; the server ran {threads} thread{'s' * (threads != 1)}", flush=True)
    targets.append((f"{ASGI_STREAMS} SSE streams on the ASGI server: {live} live at once (target all)",
                    live == ASGI_STREAMS))
    with RealtimeServer("gatewaylab-wsgi", env) as server:
        live, threads, opened, waited = asyncio.run(sse_run(server, WSGI_STREAMS, 20, extra=True))
    print(f"  gatewaylab.wsgi (WSGI)  {WSGI_STREAMS} streams opened in {opened:.2f} s, {live} delivered their next "
          f"event; the server ran {threads} threads; stream {WSGI_STREAMS + 1} waited {waited:.2f} s for a thread",
          flush=True)
    targets.append((f"{WSGI_STREAMS} SSE streams on the WSGI server (--threads {WSGI_STREAMS}): {live} live at once, "
                    f"{threads} threads (target all, and >= {WSGI_STREAMS} threads)",
                    live == WSGI_STREAMS and threads >= WSGI_STREAMS))
    targets.append((f"SSE stream {WSGI_STREAMS + 1} on the WSGI server waited {waited:.2f} s for a thread, while "
                    f"the ASGI server held {ASGI_STREAMS} streams on one", None))

    return report_targets(targets)


if __name__ == "__main__":
    sys.exit(main())
