"""`scripts/demo` keeps the README's promise: only Python 3.11+ needed, only what the demo runs
installed (no S3 or git libraries, no development tools), every step announced, a listing
and a diff shown, then a sidecar that stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.seaweed import free_ports
from tests.support.sidecar import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


def test_the_demo_installs_only_what_it_runs_and_shows_ls_and_diff(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARETAKER_", "VIRTUAL_ENV"))}
    env |= {"DEMO_DIR": str(tmp_path / "demo"), "DEMO_LISTEN": f"127.0.0.1:{port}", "PYTHON": sys.executable}
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        demo = subprocess.Popen([ROOT / "scripts" / "demo"], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 300
        while b"now backing up every 10s" not in log.read_bytes():
            assert demo.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        shown = log.read_text()
        assert "caretaker demo: installing caretaker and what the demo runs" in shown
        assert "uploads/picture.bin" in shown  # the listing
        assert "+ notes/last-run.txt" in shown  # the diff
        venv = tmp_path / "demo" / "venv" / "bin" / "python"
        for absent in ("botocore", "git", "pytest", "mypy"):
            found = subprocess.run([venv, "-c", f"import {absent}"], capture_output=True, check=False)
            assert found.returncode != 0, f"the demo installed {absent}"
        wait_until(lambda: healthy(port), 30, "the demo's sidecar to answer /healthz")
    finally:
        demo.send_signal(signal.SIGTERM)
        code = demo.wait(timeout=60)
    assert code == 0, log.read_text()
