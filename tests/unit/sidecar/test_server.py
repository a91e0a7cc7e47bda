from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from sidecar.server import TEXT, HttpServer
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
    def broken():
        raise RuntimeError("bug")

    server = HttpServer(
        Listen("127.0.0.1", 0),
        {
            "/hello": lambda: (200, TEXT, b"hi\n"),
            "/down": lambda: (503, TEXT, b"not ready\n"),
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
