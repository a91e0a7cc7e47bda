"""On a volume that already has data, `caretaker restore` decides before opening the
repository: no storage library is imported (nor Apprise, while no notification is due), and
it is quick (bench/startup.py measures it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

# Runs the real console-script entry point, then reports which storage libraries got loaded.
PROBE = """
import json, sys
from caretaker.cli import main
code = main(sys.argv[1:])
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & {"boto3", "botocore", "git", "apscheduler", "prometheus_client", "yaml", "zstandard", "apprise", "requests", "cryptography"})))
sys.exit(code)
"""


@pytest.mark.parametrize(
    "url", ["s3://bucket/prefix", "git+ssh://git@example.invalid/org/repo.git", "file:///nowhere"]
)
def test_populated_volume_skips_without_importing_storage_libraries(tmp_path: Path, url: str):
    volume = tmp_path / "data"
    volume.mkdir()
    (volume / "app.db").write_text("data")
    argv = [sys.executable, "-c", PROBE, "restore", "--repository", url, "--path", str(volume)]
    argv += ["--termination-log", str(tmp_path / "termination-log"), "--log-level", "warning"]
    argv += ["--notify", "json://127.0.0.1:9/hook"]  # failures only: a skip sends nothing
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARETAKER_", "AWS_"))}
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
    assert json.loads((volume / ".caretaker" / "restore-result.json").read_text())["outcome"] == "skipped"
    assert json.loads((tmp_path / "termination-log").read_text())["outcome"] == "skipped"
    assert elapsed < 5  # generous for a loaded CI machine; the benchmark reports the real figure
