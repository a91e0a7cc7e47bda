"""Storage that hangs: socket servers on 127.0.0.1 that accept and then misbehave.

- `SilentServer` accepts every connection and never says a word: a black-holed load
  balancer, a stopped process behind a live port. An HTTPS or SSH client waits for the
  TLS handshake or the SSH banner; an HTTP client for the answer.
- `StallingServer` reads an HTTP request, answers with headers promising a body, sends
  its start (an S3 listing, or a git ref advertisement) and stalls: a server that dies
  mid-download without closing the connection.
- `StallingProxy` relays HTTP requests to a real server (SeaweedFS) and stalls the
  answers whose path holds a marker (`/data/`: the packs) after half their body, so a
  restore gets its listing and then hangs in its download threads.

All count what they received, so a test can compare the attempts a message claims with
the attempts the server saw. Stop them with `close()` (or use them as context managers).
"""

from __future__ import annotations

import http.client
import socket
import threading
from types import TracebackType
from typing import BinaryIO, Self

# What is sent of each body before the stall; the headers promise this much more.
_S3_START = b"<?xml version='1.0' encoding='UTF-8'?>\n<ListBucketResult><Name>"
_GIT_START = b"001e# service=git-upload-pack\n0000"
_MISSING = 4096
_HOP_BY_HOP = {"connection", "transfer-encoding", "content-length", "keep-alive"}


class SilentServer:
    """Accepts connections on 127.0.0.1 and holds them open without answering."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._held: list[socket.socket] = []
        self.connections = 0
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._held.append(conn)
            self.on_connection(conn)

    def on_connection(self, conn: socket.socket) -> None:
        """Say nothing (subclasses answer in part)."""

    def wait_for_connection(self, timeout: float = 10.0) -> bool:
        """Wait until a client has connected; return False if none did in time."""
        waited = 0.0
        while waited < timeout:
            if self.connections:
                return True
            self._closed.wait(0.05)
            waited += 0.05
        return False

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for conn in self._held:
                conn.close()
            self._held.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class StallingServer(SilentServer):
    """Answers each HTTP request with a 200, headers and the start of a body, then stalls."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        super().__init__()

    def on_connection(self, conn: socket.socket) -> None:
        threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        received = b""
        try:
            while b"\r\n\r\n" not in received:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                received += chunk
        except OSError:
            return
        request_line = received.split(b"\r\n", 1)[0].decode("latin-1")
        with self._lock:
            self.requests.append(request_line)
        git = "git-upload-pack" in request_line
        content_type = "application/x-git-upload-pack-advertisement" if git else "application/xml"
        start = _GIT_START if git else _S3_START
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(start) + _MISSING}\r\n\r\n"
        ).encode()
        try:
            conn.sendall(head + start)
        except OSError:
            return


class StallingProxy(SilentServer):
    """Relays HTTP/1.1 requests to `upstream`; answers to paths containing `marker` stall
    after half their body."""

    def __init__(self, upstream: int, marker: str) -> None:
        self.upstream = upstream
        self.marker = marker
        self.stalled = 0
        super().__init__()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def on_connection(self, conn: socket.socket) -> None:
        threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            while self._relay_one(conn, reader):
                pass
        except OSError:
            return

    def _relay_one(self, conn: socket.socket, reader: BinaryIO) -> bool:
        request_line = reader.readline().decode("latin-1").strip()
        if not request_line:
            return False
        method, path, _ = request_line.split(" ", 2)
        headers = http.client.parse_headers(reader)
        body = reader.read(int(headers.get("Content-Length") or 0))
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=30)
        upstream.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            if name.lower() != "expect":
                upstream.putheader(name, value)
        upstream.endheaders(body)
        answer = upstream.getresponse()
        data = answer.read()
        upstream.close()
        head = [f"HTTP/1.1 {answer.status} {answer.reason}"]
        head += [f"{k}: {v}" for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP]
        length = answer.getheader("Content-Length", "0") if method == "HEAD" else len(data)
        head.append(f"Content-Length: {length}")
        stall = method == "GET" and self.marker in path
        sent = data[: len(data) // 2] if stall else data
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + sent)
        if stall:
            with self._lock:
                self.stalled += 1
            return False  # hold the connection open, say no more
        return True
