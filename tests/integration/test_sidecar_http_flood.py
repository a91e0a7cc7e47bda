"""The HTTP port is open to the cluster: a flood of idle and slow (byte-by-byte) connections
must not starve the backups or the probes. A real sidecar process with a low open-file limit
(128, as a tight container might have), real sockets, a real file:// repository."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.sidecar import Sidecar, wait_until
from tests.support.trees import write_file

pytestmark = pytest.mark.integration

IDLE = 300
SLOW = 100
FLOOD_SECONDS = 4.0
NOFILE = 128
CONFIG = """
repository: file://{d}/repo
path: {d}/data
defaults: {{retries: 0}}
jobs:
  - {{name: backup, kind: backup, schedule: "@every 1s"}}
"""
# Sent one byte per round by the slow connections, never completing a request head.
SLOW_BYTES = b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"a" * 4000


class Flood:
    """Keeps IDLE connections open that send nothing and SLOW ones that send a byte every
    0.2 s; every connection the server closes is opened again at once, as an attacker would."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.selector = selectors.DefaultSelector()
        self.stop = threading.Event()
        self.reconnects = 0
        self.refused = 0

    def _open(self, slow: bool) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        except OSError:
            self.refused += 1
            return
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ, [slow, 0])

    def _close(self, key: selectors.SelectorKey) -> None:
        self.selector.unregister(key.fileobj)
        key.fileobj.close()  # type: ignore[union-attr]

    def run(self) -> None:
        for index in range(IDLE + SLOW):
            self._open(slow=index >= IDLE)
        next_byte = time.monotonic()
        while not self.stop.is_set():
            for key, _ in self.selector.select(0.05):
                with contextlib.suppress(OSError):
                    if key.fileobj.recv(4096):  # type: ignore[union-attr]
                        continue
                self._close(key)
                self.reconnects += 1
                self._open(slow=key.data[0])
            if time.monotonic() >= next_byte:
                next_byte += 0.2
                self._drip()
        for key in list(self.selector.get_map().values()):
            self._close(key)

    def _drip(self) -> None:
        for key in list(self.selector.get_map().values()):
            slow, sent = key.data
            if slow and sent < len(SLOW_BYTES):
                with contextlib.suppress(OSError):
                    key.fileobj.send(SLOW_BYTES[sent : sent + 1])  # type: ignore[union-attr]
                    key.data[1] = sent + 1


@contextlib.contextmanager
def flooding(port: int) -> Iterator[Flood]:
    flood = Flood(port)
    thread = threading.Thread(target=flood.run, daemon=True)
    thread.start()
    try:
        yield flood
    finally:
        flood.stop.set()
        thread.join(10)


def backups(sidecar: Sidecar, result: str) -> float:
    return sidecar.value("caretaker_job_runs_total", task="backup", kind="backup", result=result)


def test_a_connection_flood_starves_neither_backups_nor_probes(tmp_path):
    write_file(tmp_path / "data" / "app.db", b"state" * 1000)
    config = CONFIG.format(d=tmp_path)
    with Sidecar(tmp_path, [], config=config, nofile=NOFILE) as sidecar:
        wait_until(lambda: backups(sidecar, "success") >= 1, 15, "a first backup")
        before = backups(sidecar, "success")
        probes: list[tuple[int, float]] = []
        with flooding(sidecar.port) as flood:
            time.sleep(0.5)  # let the flood take every connection slot
            ends = time.monotonic() + FLOOD_SECONDS
            while time.monotonic() < ends:
                started = time.monotonic()
                status = sidecar.get("/healthz")[0]
                probes.append((status, time.monotonic() - started))
                time.sleep(0.25)
            threads = sidecar.threads()
            during = backups(sidecar, "success") - before
            failures = backups(sidecar, "failure")
        sidecar.alive_or_fail()
        log = sidecar.log_text()
    assert [status for status, _ in probes] == [200] * len(probes)
    assert max(seconds for _, seconds in probes) < 1.0, probes
    assert during >= FLOOD_SECONDS - 2, f"only {during} backups succeeded during the flood"
    assert failures == 0, log[-3000:]
    assert "Too many open files" not in log
    assert threads < 20, f"{threads} threads"  # not one per connection
    assert flood.reconnects > IDLE  # the server kept closing idle connections to make room
