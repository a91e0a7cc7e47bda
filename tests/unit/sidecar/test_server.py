from __future__ import annotations

import contextlib
import resource
import socket
import struct
import threading
import time
import urllib.error
import urllib.request

import pytest

from sidecar.server import MAX_CONNECTIONS, TEXT, HttpServer, Request, default_connection_limit
from sidecar.settings.model import Listen


def fetch(port: int, path: str, method: str = "GET") -> tuple[int, bytes, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers["Content-Type"]


@pytest.fixture
def server():
    def broken(_):
        raise RuntimeError("bug")

    server = HttpServer(
        Listen("127.0.0.1", 0),
        {
            "/hello": lambda _: (200, TEXT, b"hi\n"),
            "/down": lambda _: (503, TEXT, b"not ready\n"),
            "/broken": broken,
        },
    )
    server.start()
    yield server
    server.stop()


def test_routes_statuses_and_bodies(server):
    assert fetch(server.port, "/hello") == (200, b"hi\n", TEXT)
    assert fetch(server.port, "/hello?verbose=1")[0] == 200
    assert fetch(server.port, "/down") == (503, b"not ready\n", TEXT)
    assert fetch(server.port, "/nope")[0] == 404
    assert fetch(server.port, "/broken")[:2] == (500, b"internal error\n")
    assert fetch(server.port, "/hello", method="HEAD") == (200, b"", TEXT)


def test_a_taken_port_fails_at_construction(server):
    with pytest.raises(OSError, match="in use"):
        HttpServer(Listen("127.0.0.1", server.port), {})


# -- what a client in the cluster cannot do: hold threads or connections, stall answers ----


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return sock


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def timed_fetch(port: int, path: str = "/hello") -> tuple[int, float]:
    started = time.monotonic()
    status = fetch(port, path)[0]
    return status, time.monotonic() - started


@pytest.fixture
def small_server():
    release = threading.Event()

    def slow(_):
        release.wait(10)
        return 200, TEXT, b"slow\n"

    server = HttpServer(
        Listen("127.0.0.1", 0),
        {
            "/hello": lambda _: (200, TEXT, b"hi\n"),
            "/slow": slow,
            "/leak": lambda _: (200, TEXT, b"see http://user:pw@h/x?token=t0k\n"),
        },
        max_connections=8,
        read_timeout=0.5,
    )
    server.start()
    yield server
    release.set()
    server.stop()


def test_a_request_head_must_arrive_whole_within_the_read_timeout(small_server):
    slow = connect(small_server.port)
    started = time.monotonic()
    cut = False
    for byte in b"GET /hello HTTP/1.1\r\n":  # one byte every 0.1 s: 2 s for the line
        try:
            slow.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            cut = True
            break
        time.sleep(0.1)
    assert cut or closed_by_server(slow, 1)
    assert time.monotonic() - started < 1.5
    slow.close()


def test_idle_connections_beyond_the_limit_make_room_oldest_first(small_server):
    idle = [connect(small_server.port) for _ in range(40)]
    try:
        assert timed_fetch(small_server.port) == (200, pytest.approx(0, abs=0.5))
        assert closed_by_server(idle[0], 1)  # the oldest was closed for the newer ones
        assert not closed_by_server(idle[-1], 0.1)  # the newest still waits
        threads = {t.name for t in threading.enumerate()}
        assert len([name for name in threads if name.startswith("http")]) <= 1 + 4
    finally:
        for sock in idle:
            sock.close()


def test_a_slow_route_does_not_stall_the_others(small_server):
    def fetch_slow() -> None:
        with contextlib.suppress(OSError):  # the server stops before answering it
            fetch(small_server.port, "/slow")

    waiting = threading.Thread(target=fetch_slow, daemon=True)
    waiting.start()
    time.sleep(0.1)
    status, seconds = timed_fetch(small_server.port)
    assert (status, seconds < 0.5) == (200, True)


def test_only_get_and_head_and_bodies_are_redacted(small_server):
    assert fetch(small_server.port, "/hello", method="POST")[0] == 405
    assert fetch(small_server.port, "/leak")[1] == b"see http://***@h/x?token=***\n"


def test_the_default_connection_limit_follows_the_file_limit():
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert default_connection_limit() == max(4, min(MAX_CONNECTIONS, soft // 4))


def test_a_route_sees_the_path_and_the_accept_header():
    seen: list[Request] = []

    def echo(request: Request):
        seen.append(request)
        return 200, TEXT, b"ok\n"

    server = HttpServer(Listen("127.0.0.1", 0), {"/echo": echo})
    server.start()
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/echo?x=1", headers={"Accept": "application/openmetrics-text"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        assert fetch(server.port, "/echo")[0] == 200
    finally:
        server.stop()
    assert seen[0] == Request(path="/echo", accept="application/openmetrics-text")
    assert seen[1].accept in {"", "*/*"}
