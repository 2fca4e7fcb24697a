"""gatewaylab.servers: start, stop, restart under the same name, and leave nothing behind."""

import asyncio
import random
import socket
import sys
import textwrap
import threading
import time

import httpx
import pytest
from jupyter_client.manager import start_new_kernel

from gatewaylab import servers


def hello_wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello from wsgi"]


async def hello_asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello from asgi"})


def port_is_free(port):
    """Can a server bind the port again? (With SO_REUSEADDR, as servers do: closed connections linger in TIME_WAIT.)"""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def gatewaylab_threads():
    return [t for t in threading.enumerate() if t.name.startswith("gatewaylab-")]


@pytest.fixture(autouse=True)
def nothing_left_running():
    yield
    servers.stop_all()
    assert servers.running() == {}
    assert gatewaylab_threads() == []


@pytest.mark.parametrize("kind", ["wsgiref", "wsgiref-threaded", "gatewaylab-sequential", "gatewaylab"])
def test_wsgi_server_serves_and_stops(kind):
    server = servers.serve_wsgi(hello_wsgi, name="t", server=kind)
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert httpx.get(server.url).text == "hello from wsgi"
    assert servers.running() == {"t": server}
    server.stop()
    assert not server.running
    assert port_is_free(server.port)
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url)


def test_asgi_server_serves_with_lifespan_and_stops():
    server = servers.serve_asgi(hello_asgi, name="t", lifespan="on")
    assert httpx.get(server.url + "/x").text == "hello from asgi"
    server.stop()
    assert not server.running and port_is_free(server.port)


def test_asgi_server_that_fails_to_start_says_so():
    async def broken(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "no database"})

    with pytest.raises(RuntimeError, match="did not start"):
        servers.serve_asgi(broken, name="broken", lifespan="on")
    assert "broken" not in servers.running()


def test_socket_server_runs_a_learners_loop_and_stop_wakes_accept():
    def serve(listener):
        while True:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")

    server = servers.serve_socket(serve, name="mine")
    assert httpx.get(server.url).text == "hi"
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1, "stop() must wake a thread blocked in accept()"
    assert not server.running and server.error is None


def test_a_crashing_socket_server_keeps_its_error():
    def serve(listener):
        raise ValueError("oops")

    server = servers.serve_socket(serve, name="crash")
    server.thread.join(2)
    assert isinstance(server.error, ValueError)
    assert "ValueError: oops" in repr(server)


def test_starting_under_the_same_name_replaces_the_old_server_on_the_same_port():
    port = servers.free_port()
    first = servers.serve_wsgi(hello_wsgi, name="same", port=port)
    second = servers.serve_asgi(hello_asgi, name="same", port=port)  # would be "Address already in use" otherwise
    assert not first.running and second.running
    assert httpx.get(second.url).text == "hello from asgi"
    assert list(servers.running()) == ["same"]


def test_wrong_kind_of_app_is_a_clear_error():
    with pytest.raises(TypeError, match="WSGI app"):
        servers.serve_wsgi("not an app")
    with pytest.raises(ValueError, match="server must be one of"):
        servers.serve_wsgi(hello_wsgi, server="nginx")


def test_serve_command_runs_a_child_process_and_reports_a_crash():
    server = servers.serve_command([sys.executable, "-m", "http.server", "{port}", "--bind", "{host}"], name="p")
    assert httpx.get(server.url).status_code == 200
    server.stop()
    assert server.process.poll() is not None and port_is_free(server.port)
    with pytest.raises(RuntimeError, match="exited with code"):
        servers.serve_command([sys.executable, "-c", "raise SystemExit(3)"], name="dies")


def test_a_server_can_be_used_from_inside_a_running_event_loop():
    async def main():
        server = servers.serve_asgi(hello_asgi, name="in-loop")
        async with httpx.AsyncClient() as client:
            return (await client.get(server.url)).text

    assert asyncio.run(main()) == "hello from asgi"


RERUN_CELL = textwrap.dedent("""
    from gatewaylab.servers import serve_wsgi, serve_asgi
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    async def aapp(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    w = serve_wsgi(app, name="demo", port=PORT)
    a = serve_asgi(aapp, name="demo-async", port=APORT, lifespan="off")
    import httpx, threading
    assert httpx.get(w.url).text == "ok" and httpx.get(a.url).text == "ok"
    print(threading.active_count())
""")


def run_cell(kernel_client, code):
    reply = kernel_client.execute_interactive(code, timeout=60, output_hook=lambda msg: outputs.append(msg))
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply


outputs = []


def fixed_port() -> int:
    """A free port below the ephemeral range, like the 8000 a learner would type. (A port the OS hands out can be taken,
    between two re-runs, as the source port of one of the many client connections other tests make in parallel.)"""
    lowest_ephemeral = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    for port in random.sample(range(20000, min(lowest_ephemeral, 30000)), 200):
        if port_is_free(port):
            return port
    raise RuntimeError("no free port below the ephemeral range")


@pytest.mark.slow
def test_rerunning_a_server_cell_20_times_and_restarting_the_kernel_leaves_nothing_behind():
    port, aport = fixed_port(), fixed_port()
    assert port != aport
    cell = RERUN_CELL.replace("APORT", str(aport)).replace("PORT", str(port))
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        thread_counts = []
        for _ in range(20):
            outputs.clear()
            run_cell(client, cell)
            # One print() can arrive as several stream messages ("12", then "\n"): join them before reading.
            printed = "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream")
            thread_counts.append(int(printed.split()[-1]))
        assert len(set(thread_counts)) == 1, f"threads grew across re-runs: {thread_counts}"
        assert not port_is_free(port) and not port_is_free(aport)
        manager.restart_kernel(now=False)  # a polite restart, as JupyterLab's "Restart Kernel" does
        client.wait_for_ready(timeout=60)
        deadline = time.monotonic() + 10
        while not (port_is_free(port) and port_is_free(aport)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert port_is_free(port) and port_is_free(aport), "a restarted kernel left a port busy"
        outputs.clear()
        run_cell(client, cell)  # and the same cell works again in the new kernel
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_the_sequential_server_takes_no_threads():
    with pytest.raises(ValueError, match="no threads"):
        servers.serve_wsgi(hello_wsgi, name="t", server="gatewaylab-sequential", threads=4)


def test_the_course_asgi_server_serves_and_stops():
    server = servers.serve_asgi(hello_asgi, name="t", server="gatewaylab")
    assert server.kind == "gatewaylab"
    assert httpx.get(server.url).text == "hello from asgi"
    again = servers.serve_asgi(hello_asgi, name="t", server="gatewaylab")  # the same name: the old one stops first
    assert not server.running and httpx.get(again.url).text == "hello from asgi"
    again.stop()
    assert port_is_free(again.port) and servers.running() == {}
    with pytest.raises(TypeError, match="uvicorn options"):
        servers.serve_asgi(hello_asgi, name="t", server="gatewaylab", timeout_keep_alive=1)
    with pytest.raises(ValueError, match="server must be"):
        servers.serve_asgi(hello_asgi, name="t", server="hypercorn")


async def echo_websocket(scope, receive, send):
    """Accepts, echoes one text message, then waits for the client to leave."""
    if scope["type"] != "websocket":
        raise RuntimeError("only websocket")
    await receive()
    await send({"type": "websocket.accept"})
    message = await receive()
    await send({"type": "websocket.send", "text": f"echo: {message['text']}"})
    await receive()


@pytest.mark.parametrize("kind", ["gatewaylab", "uvicorn"])
def test_both_asgi_servers_speak_websocket(kind):
    from websockets.asyncio.client import connect

    async def client(url):
        async with connect(url) as ws:
            await ws.send("hi")
            return await asyncio.wait_for(ws.recv(), 10)

    with servers.serve_asgi(echo_websocket, name="ws", server=kind) as server:
        assert asyncio.run(client(server.url.replace("http://", "ws://") + "/")) == "echo: hi"
        assert httpx.get(server.url).status_code == 500  # an HTTP request to a WebSocket-only app
    assert port_is_free(server.port)


def test_kept_alive_connections_to_uvicorn_are_not_held_by_nagle():
    # The listener's proto must say TCP, or asyncio leaves Nagle's algorithm on for the connections
    # uvicorn accepts, and every kept-alive response (head and body written apart) waits ~40 ms on a
    # delayed ACK. The time bound is far above the ~1 ms a request takes, and far below the ~44.
    listener = servers._listening_socket("127.0.0.1", 0, 8)
    with listener:
        assert listener.proto == socket.IPPROTO_TCP
    server = servers.serve_asgi(hello_asgi, name="t", server="uvicorn", lifespan="off")
    with httpx.Client() as client:
        client.get(server.url)
        times = []
        for _ in range(15):
            started = time.perf_counter()
            assert client.get(server.url).text == "hello from asgi"
            times.append(time.perf_counter() - started)
    assert sorted(times)[len(times) // 2] < 0.025, f"median {sorted(times)[len(times) // 2] * 1000:.0f} ms"


def test_stopping_the_course_asgi_server_under_an_app_that_blocks_its_loop_returns_with_a_warning(capsys):
    release = threading.Event()

    async def blocks_the_loop(scope, receive, send):
        if scope["type"] == "http":
            release.wait(30)  # a time.sleep in an async app: the loop can do nothing else

    server = servers.serve_asgi(blocks_the_loop, name="t", server="gatewaylab", lifespan="off")
    with socket.create_connection(("127.0.0.1", server.port)) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)  # the request has reached the app, which holds the loop
        started = time.monotonic()
        server.stop(timeout=1)
        assert time.monotonic() - started < 5
        assert "did not stop within 1 s" in capsys.readouterr().err
        release.set()  # the loop goes on, sees the request to stop, and ends
        server.thread.join(10)
        assert not server.thread.is_alive()
