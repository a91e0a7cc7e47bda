"""Run `caretaker sidecar` as a real subprocess and look at it from outside: HTTP endpoints
(metrics parsed with the Prometheus text parser), JSON log lines, exit code and timing.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from prometheus_client.parser import text_string_to_metric_families

from tests.support.keys import UNENCRYPTED_ENV, password_env
from tests.support.seaweed import free_ports

REPO = Path(__file__).resolve().parents[2]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    """Every sample of an exposition, keyed by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class App:
    """A stand-in for the application next door (or a notification service): records
    requests and their bodies, answers `status` (or a 302 to `redirects[path]`)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[tuple[str, bytes]] = []  # (path, body) of requests with a body
        self.status = 200
        self.delay = 0.0
        self.redirects: dict[str, str] = {}
        app = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    app.bodies.append((self.path, self.rfile.read(length)))
                app.requests.append((self.command, self.path))
                if app.delay:
                    threading.Event().wait(app.delay)
                location = app.redirects.get(self.path)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(302 if location else app.status)
                    if location:
                        self.send_header("Location", location)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")

            do_GET = do_POST = do_PUT = _answer  # noqa: N815 - the handler's method names

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def caretaker_argv(clock_offset: float | None = None) -> list[str]:
    """How to start `caretaker`: as such, or with its clock `clock_offset` seconds off
    (tests.support.skewed; the process then needs the repository on PYTHONPATH)."""
    if clock_offset is None:
        return [sys.executable, "-m", "caretaker"]
    return [sys.executable, "-m", "tests.support.skewed", str(clock_offset)]


def process_gone(pid: int) -> bool:
    """True if `pid` no longer runs (absent, or a zombie waiting for its reaper)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in {"Z", "X"}


class Sidecar:
    """One `python -m caretaker sidecar ...` process with its own port and log file."""

    def __init__(
        self,
        workdir: Path,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        config: str | None = None,
        nofile: int | None = None,
        clock_offset: float | None = None,
    ) -> None:
        """`nofile`: the process's open-file limit (`ulimit -n`), if it should be lowered;
        `clock_offset`: its wall clock this many seconds off (tests.support.skewed)."""
        self.workdir = workdir
        self.nofile = nofile
        self.command = [*caretaker_argv(clock_offset), "sidecar"]
        self.port = free_ports(1)[0]
        self.log_path = workdir / "sidecar.log"
        self.args = [*args, "--listen", f"127.0.0.1:{self.port}", "--log-format", "json"]
        if config is not None:
            config_path = workdir / "sidecar.yaml"
            config_path.write_text(config, encoding="utf-8")
            self.args += ["--config", str(config_path)]
        base = {k: v for k, v in os.environ.items() if not k.startswith("CARETAKER_")}
        # Encrypted with a password file, as every new repository is, unless `env` says how.
        keyed = set(env or {}) & {"CARETAKER_PASSWORD", "CARETAKER_PASSWORD_FILE", *UNENCRYPTED_ENV}
        self.env = {
            **base,
            "PYTHONPATH": str(REPO),
            **({} if keyed else password_env(workdir)),
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    def start(self, *, wait_healthy: bool = True) -> Self:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*self.command, *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.workdir,
                preexec_fn=self._limit if self.nofile else None,  # noqa: PLW1509 - no threads here
            )
        if wait_healthy:
            try:
                wait_until(
                    lambda: self.alive_or_fail() and self.get("/healthz")[0] == 200,
                    20,
                    "the sidecar to serve /healthz",
                )
            except BaseException:
                self.__exit__()  # not left running: a `with` never got to its exit
                raise
        return self

    def _limit(self) -> None:
        assert self.nofile is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def threads(self) -> int:
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive_or_fail(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"sidecar exited with {self.process.returncode}:\n{self.log_text()}")
        return True

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except (urllib.error.URLError, ConnectionError):
            return 0, ""

    def metrics(self) -> Samples:
        status, text = self.get("/metrics")
        assert status == 200, text
        return parse_metrics(text)

    def value(self, name: str, **labels: str) -> float:
        """One sample's value; a missing series is a test failure, not a zero."""
        key = (name, tuple(sorted(labels.items())))
        samples = self.metrics()
        assert key in samples, f"no series {key}"
        return samples[key]

    def status(self) -> dict[str, Any]:
        code, text = self.get("/status")
        assert code == 200
        document: dict[str, Any] = json.loads(text)
        return document

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def logs(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log_text().splitlines():
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return found

    def events(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.logs()
            if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
        ]

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        self.returncode = self.process.wait(timeout)
        return self.returncode

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then wait for the exit code."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
