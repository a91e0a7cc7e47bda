"""The HTTP endpoints (/metrics, /healthz, /readyz, /status) on a small threaded server.

The standard library's server is enough for a few scrapes and probes a minute and adds
nothing to the image; each route is a function returning (status, content type, body).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from sidecar.settings.model import Listen

Response = tuple[int, str, bytes]
Route = Callable[[], Response]
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def _handler(routes: Mapping[str, Route]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "caretaker"

        def do_GET(self) -> None:
            self._respond(include_body=True)

        def do_HEAD(self) -> None:
            self._respond(include_body=False)

        def _respond(self, *, include_body: bool) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            try:
                status, content_type, body = route() if route else (404, TEXT, b"not found\n")
            except Exception:
                structlog.get_logger().exception("http.route_failed", path=self.path)
                status, content_type, body = 500, TEXT, b"internal error\n"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if include_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            structlog.get_logger().debug("http.request", message=format % args)

    return Handler


class HttpServer:
    def __init__(self, listen: Listen, routes: Mapping[str, Route]) -> None:
        """Bind now (so a taken port fails start-up, not a background thread).

        Raise OSError if the address cannot be bound.
        """
        server_class = _Server6 if ":" in listen.host else _Server
        self._server = server_class((listen.host, listen.port), _handler(routes))
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
