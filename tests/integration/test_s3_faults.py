"""S3Store behind a fault-injecting proxy in front of the real SeaweedFS.

The proxy relays every request unchanged (signatures stay valid) unless told to misbehave:
answer 503 SlowDown a few times, break a download off halfway, or answer 501 to
conditional writes like a store without If-None-Match. It also counts the requests in
flight, which shows that CARETAKER_S3_CONCURRENCY really bounds them.
"""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from structlog.testing import capture_logs

from restore.backends.s3.store import S3Store
from restore.errors import TransientBackendError
from tests.support.seaweed import SeaweedServer

pytestmark = pytest.mark.integration

_ERROR = "<?xml version='1.0'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
_HOP_BY_HOP = {"connection", "transfer-encoding", "content-length", "keep-alive"}


class FaultProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: int) -> None:
        super().__init__(("127.0.0.1", 0), _Relay)
        self.upstream = upstream
        self.lock = threading.Lock()
        self.slow_down = 0  # answer this many requests with 503 SlowDown
        self.cut_downloads = 0  # break this many GET bodies off halfway
        self.reject_conditional = False  # 501 to If-None-Match / If-Match, like an old store
        self.in_flight = self.peak = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def fault_for(self, method: str, headers: http.client.HTTPMessage) -> tuple[int, str, str] | None:
        with self.lock:
            if self.slow_down:
                self.slow_down -= 1
                return 503, "SlowDown", "Please reduce your request rate."
        if (
            self.reject_conditional
            and ("If-None-Match" in headers or "If-Match" in headers)
            and method == "PUT"
        ):
            return (
                501,
                "NotImplemented",
                "A header you provided implies functionality that is not implemented",
            )
        return None

    def take_cut(self, method: str) -> bool:
        with self.lock:
            if method == "GET" and self.cut_downloads:
                self.cut_downloads -= 1
                return True
            return False


class _Relay(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultProxy

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _relay(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        proxy = self.server
        with proxy.lock:
            proxy.in_flight += 1
            proxy.peak = max(proxy.peak, proxy.in_flight)
        try:
            fault = proxy.fault_for(self.command, self.headers)
            if fault is not None:
                self._answer(
                    fault[0],
                    {"Content-Type": "application/xml"},
                    _ERROR.format(code=fault[1], message=fault[2]).encode(),
                )
                return
            upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=30)
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() != "expect":  # answered by us; not part of the signature
                    upstream.putheader(name, value)
            upstream.endheaders(body)
            answer = upstream.getresponse()
            data = answer.read()
            headers = {k: v for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP}
            if self.command == "HEAD":
                headers["Content-Length"] = answer.getheader("Content-Length", "0")
            self._answer(answer.status, headers, data, cut=proxy.take_cut(self.command))
            upstream.close()
        finally:
            with proxy.lock:
                proxy.in_flight -= 1

    def _answer(self, status: int, headers: dict[str, str], data: bytes, *, cut: bool = False) -> None:
        self.send_response_only(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "HEAD":
            return
        self.wfile.write(data[: len(data) // 2] if cut else data)
        if cut:
            self.close_connection = True

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay  # noqa: N815 - http.server names them


@pytest.fixture
def proxy(s3_server: SeaweedServer) -> Iterator[FaultProxy]:
    server = FaultProxy(int(urlsplit(s3_server.endpoint).port or 0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def store_via(proxy: FaultProxy, s3_url: str, s3_env: dict[str, str], **extra: str) -> S3Store:
    return S3Store.from_url(urlsplit(s3_url), {**s3_env, "CARETAKER_S3_ENDPOINT": proxy.endpoint, **extra})


def test_throttling_is_retried_with_backoff(proxy: FaultProxy, s3_url: str, s3_env: dict[str, str]) -> None:
    store = store_via(proxy, s3_url, s3_env, CARETAKER_S3_MAX_ATTEMPTS="3")
    proxy.slow_down = 2
    store.put("k", b"value")
    assert store.get("k") == b"value"
    proxy.slow_down = 3
    with pytest.raises(TransientBackendError, match="SlowDown"):
        store.get("k")
    store.close()


def test_a_download_broken_off_midway_is_fetched_again(
    proxy: FaultProxy, s3_url: str, s3_env: dict[str, str]
) -> None:
    store = store_via(proxy, s3_url, s3_env, CARETAKER_S3_MAX_ATTEMPTS="3")
    data = os.urandom(3_000_000)
    store.put("pack", data)
    proxy.cut_downloads = 2
    assert store.get("pack") == data
    proxy.cut_downloads = 3
    with pytest.raises(TransientBackendError, match="unreachable"):
        store.get("pack")
    store.close()


def test_store_without_conditional_writes_is_detected_and_emulated(
    proxy: FaultProxy, s3_url: str, s3_env: dict[str, str]
) -> None:
    proxy.reject_conditional = True
    store = store_via(proxy, s3_url, s3_env)
    with capture_logs() as logs:
        assert store.create("lease", b"first") is True
        assert store.create("lease", b"second") is False
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["s3.conditional_writes.unsupported"]
    current = store.stat("lease")
    assert current is not None
    assert store.replace("lease", b"renewed", version=current.version) is True
    assert store.replace("lease", b"stale", version=current.version) is False
    assert store.get("lease") == b"renewed"
    assert [item.key for item in store.list("")] == ["lease"]
    store.close()


def test_concurrency_bounds_requests_in_flight(
    proxy: FaultProxy, s3_url: str, s3_env: dict[str, str]
) -> None:
    store = store_via(proxy, s3_url, s3_env, CARETAKER_S3_CONCURRENCY="3")
    blobs = [os.urandom(400_000) for _ in range(24)]
    with ThreadPoolExecutor(12) as pool:
        list(pool.map(lambda n: store.put(f"data/{n}", blobs[n]), range(24)))
        assert list(pool.map(lambda n: store.get(f"data/{n}"), range(24))) == blobs
    assert proxy.peak == 3
    store.close()
