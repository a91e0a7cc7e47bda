"""The HTTP endpoints (/metrics, /healthz, /readyz, /status) on a small asyncio server.

The port listens on every interface (Prometheus must reach it), so anyone in the cluster can
connect, and no client may hold what the backups need (threads, file descriptors):
- one event-loop thread serves every connection, however many are open;
- a connection has `read_timeout` seconds for its whole request head (a client sending one
  byte at a time is cut off like an idle one), which may be at most `MAX_HEAD_BYTES`;
- at most `max_connections` are open at once (by default a quarter of the process's file
  limit, at most `MAX_CONNECTIONS`). Connections are accepted one at a time, and one more
  arriving closes the connection that has waited longest for its request head first, so
  idle connections cannot pile up and a fresh probe gets through; if all of them are being
  answered, the new one is closed instead. Clients not yet accepted wait in the kernel's
  backlog, holding no descriptor of ours;
- routes run in a pool of `ROUTE_WORKERS` threads, so a slow one (a /readyz listing of the
  repository) never stalls the loop, and answers are written within `WRITE_TIMEOUT_SECONDS`;
- one request per connection (`Connection: close`), GET and HEAD only.
Every body passes through `redact_text` on the way out: a last net under the routes' own
redaction. Each route is a function returning (status, content type, body).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http
import resource
import socket
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import structlog

from restore.redaction import redact_text
from sidecar.settings.model import Listen

Response = tuple[int, str, bytes]


@dataclasses.dataclass(frozen=True)
class Request:
    """What a route may know of a request: its path and what the client accepts."""

    path: str
    accept: str = ""


Route = Callable[[Request], Response]
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
READ_TIMEOUT_SECONDS = 10.0
WRITE_TIMEOUT_SECONDS = 10.0
MAX_HEAD_BYTES = 8192
MAX_CONNECTIONS = 64
ROUTE_WORKERS = 4
ACCEPT_PAUSE_SECONDS = 0.5
_END_OF_HEAD = b"\r\n\r\n"


def default_connection_limit() -> int:
    """A quarter of the soft file limit (the rest is the backups'), 4 to MAX_CONNECTIONS."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(4, min(MAX_CONNECTIONS, soft // 4))


class HttpServer:
    def __init__(
        self,
        listen: Listen,
        routes: Mapping[str, Route],
        *,
        max_connections: int | None = None,
        read_timeout: float = READ_TIMEOUT_SECONDS,
    ) -> None:
        """Bind now (so a taken port fails start-up, not a background thread).

        Raise OSError if the address cannot be bound.
        """
        family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
        # A deep backlog: clients waiting to be accepted hold no descriptor of ours.
        self._socket = socket.create_server((listen.host, listen.port), family=family, backlog=1024)
        self._routes = routes
        self._limit = max_connections or default_connection_limit()
        self._read_timeout = read_timeout
        self._loop = asyncio.new_event_loop()
        self._pool = ThreadPoolExecutor(ROUTE_WORKERS, thread_name_prefix="http-route")
        # Connections by their task: all open ones, and those still waiting for their request
        # head, oldest first (dicts keep insertion order).
        self._open: set[asyncio.Task[None]] = set()
        self._waiting: dict[asyncio.Task[None], None] = {}
        self._stopping = asyncio.Event()  # bound to the loop on first use, in its thread
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    @property
    def max_connections(self) -> int:
        return self._limit

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(WRITE_TIMEOUT_SECONDS)
        elif self._thread.ident is None:  # never started
            self._loop.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._socket.close()

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._socket.setblocking(False)
        self._loop.add_reader(self._socket, self._accept)
        await self._stopping.wait()
        self._loop.remove_reader(self._socket)
        tasks = list(self._open)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _accept(self) -> None:
        """Take one connection, making room first: one per wake-up, so a burst of clients
        cannot open more descriptors than the limit allows before anything is closed."""
        try:
            conn, _ = self._socket.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:  # out of descriptors after all: pause rather than spin
            structlog.get_logger().warning("http.accept_failed", error=error.strerror or str(error))
            self._loop.remove_reader(self._socket)
            self._loop.call_later(ACCEPT_PAUSE_SECONDS, self._loop.add_reader, self._socket, self._accept)
            return
        if not self._make_room():
            conn.close()
            return
        task = self._loop.create_task(self._connection(conn))
        # Closes the socket however the task ends, also when cancelled before it started.
        task.add_done_callback(lambda _: conn.close())
        self._open.add(task)
        self._waiting[task] = None

    def _make_room(self) -> bool:
        """Below the limit, or close the longest-waiting connection; False if none waits."""
        if len(self._open) < self._limit:
            return True
        if not self._waiting:
            return False
        victim = next(iter(self._waiting))
        del self._waiting[victim]
        self._open.discard(victim)
        victim.cancel()  # its `finally` closes the socket
        return True

    async def _connection(self, conn: socket.socket) -> None:
        task = cast("asyncio.Task[None]", asyncio.current_task())  # we run in our task
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=MAX_HEAD_BYTES)
            head = await self._read_head(reader)
            self._waiting.pop(task, None)
            if head is not None:
                await self._answer(head, writer)
        finally:
            self._waiting.pop(task, None)
            self._open.discard(task)
            if writer is not None:
                writer.transport.abort()  # what was not closed in time, or not answered

    async def _read_head(self, reader: asyncio.StreamReader) -> bytes | None:
        """The request head, or None if it did not come whole and in time."""
        try:
            async with asyncio.timeout(self._read_timeout):
                return await reader.readuntil(_END_OF_HEAD)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            return None

    async def _answer(self, head: bytes, writer: asyncio.StreamWriter) -> None:
        method, _, rest = head.partition(b" ")
        request = _request(rest)
        path = request.path
        if method not in {b"GET", b"HEAD"}:
            response: Response = (405, TEXT, b"method not allowed\n")
        else:
            loop = asyncio.get_running_loop()
            response = await loop.run_in_executor(self._pool, self._route, request)
        status, content_type, body = response
        verb = method.decode("latin-1")
        structlog.get_logger().debug("http.request", method=verb, path=path, status=status)
        writer.write(_encode(status, content_type, body, include_body=verb != "HEAD"))
        writer.close()  # after the buffered answer is sent
        with contextlib.suppress(TimeoutError, OSError):
            async with asyncio.timeout(WRITE_TIMEOUT_SECONDS):
                await writer.wait_closed()

    def _route(self, request: Request) -> Response:
        route = self._routes.get(request.path)
        if route is None:
            return 404, TEXT, b"not found\n"
        try:
            return route(request)
        except Exception:
            structlog.get_logger().exception("http.route_failed", path=request.path)
            return 500, TEXT, b"internal error\n"


def _request(rest: bytes) -> Request:
    """The path (without its query) and the Accept header of a request head after its method."""
    target, _, after = rest.partition(b" ")
    accept = ""
    for line in after.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"accept":
            accept = value.strip().decode("latin-1")
    return Request(path=target.decode("latin-1").split("?", 1)[0], accept=accept)


def _encode(status: int, content_type: str, body: bytes, *, include_body: bool) -> bytes:
    body = redact_text(body.decode("utf-8", errors="replace")).encode()
    head = (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
        f"Server: caretaker\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + (body if include_body else b"")
