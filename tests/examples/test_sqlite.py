"""The SQLite example, run for real outside a pod: its app writes, its `before` hook copies
the live database, `caretaker backup` and `caretaker restore --check-cmd` use the example's
own excludes and check command, and the promote step puts the copy back in place.

Commands are taken from examples/sqlite/manifests.yaml, with the pod's paths (/data,
/opt/sqlite-demo) mapped to temporary folders.
"""

from __future__ import annotations

import json
import shlex
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.kube import EXAMPLES, container, load_documents, of_kind, pod_spec
from tests.support.keys import password_file

pytestmark = pytest.mark.integration


class Pod:
    """The example's scripts and commands, mapped onto folders of this machine."""

    def __init__(self, root: Path) -> None:
        docs = load_documents((EXAMPLES / "sqlite" / "manifests.yaml").read_text())
        self.data = root / "data"
        self.scripts = root / "scripts"
        self.data.mkdir()
        self.scripts.mkdir()
        by_name = {c["metadata"]["name"]: c["data"] for c in of_kind(docs, "ConfigMap")}
        for name, text in by_name["sqlite-demo-scripts"].items():
            (self.scripts / name).write_text(text)
        self.config = yaml.safe_load(by_name["sqlite-demo-caretaker"]["config.yaml"])
        self.spec = pod_spec(of_kind(docs, "Deployment")[0])
        self.repository = (root / "repo").as_uri()
        self.password = password_file(root)  # the example's Secret holds one

    def argv(self, argv: list[str], data: Path | None = None) -> list[str]:
        """A pod command with python3 as this Python and the pod's folders mapped."""
        data = data or self.data
        mapped = [a.replace("/opt/sqlite-demo", str(self.scripts)).replace("/data", str(data)) for a in argv]
        return [sys.executable if a == "python3" else a for a in mapped]

    def job(self, name: str) -> dict[str, Any]:
        return next(j for j in self.config["jobs"] if j["name"] == name)

    def check_cmd(self) -> list[str]:
        restore = container(self.spec, "caretaker-restore", init=True)
        text = next(e["value"] for e in restore["env"] if e["name"] == "CARETAKER_CHECK_CMD")
        return self.argv(shlex.split(text))

    def promote(self, data: Path) -> subprocess.CompletedProcess[str]:
        command = container(self.spec, "promote-copy", init=True)["command"]
        return _run(self.argv(command, data))

    def caretaker(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [
            sys.executable,
            "-m",
            "caretaker",
            *args,
            "--repository",
            self.repository,
            "--password-file",
            str(self.password),
            "--log-format",
            "json",
        ]
        return _run(argv, check=False)


def _run(argv: list[str], *, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60, cwd=cwd)
    if check:
        assert result.returncode == 0, f"{argv}: {result.stdout}{result.stderr}"
    return result


def _rows(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM ticks").fetchone()[0])
    finally:
        db.close()


def _writing(path: Path) -> bool:
    try:
        return path.exists() and _rows(path) >= 10
    except sqlite3.OperationalError:  # the file exists, the table not yet
        return False


@pytest.fixture
def pod(tmp_path: Path) -> Pod:
    return Pod(tmp_path)


@pytest.fixture
def app(pod: Pod) -> Iterator[subprocess.Popen[str]]:
    """The example app, writing a row every 5 ms."""
    env = {"DB_PATH": str(pod.data / "app.db"), "TICK_SECONDS": "0.005"}
    process = subprocess.Popen(
        [sys.executable, str(pod.scripts / "app.py")], env=env, stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 10
    while not _writing(pod.data / "app.db"):
        assert time.monotonic() < deadline, "the example app did not start writing"
        time.sleep(0.05)
    yield process
    process.terminate()
    process.wait(timeout=10)


def test_hook_copies_the_live_database_consistently(pod: Pod, app: subprocess.Popen[str]) -> None:
    [hook] = pod.job("backup")["before"]
    copy = pod.data / "backup" / "app.db"
    counts = []
    for _ in range(5):
        _run(pod.argv(hook["command"]))
        db = sqlite3.connect(copy)
        assert [row[0] for row in db.execute("PRAGMA integrity_check")] == ["ok"]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        db.close()
        counts.append(_rows(copy))
        time.sleep(0.1)
    assert counts == sorted(counts)
    assert counts[-1] > counts[0] > 0
    assert not list(copy.parent.glob("*.partial"))


def test_check_command_accepts_good_and_rejects_damaged_data(pod: Pod, app: subprocess.Popen[str]) -> None:
    check = pod.check_cmd()
    assert _run(check, cwd=pod.data).stdout.startswith("app.db: integrity ok")
    app.terminate()
    app.wait(timeout=10)
    db = sqlite3.connect(pod.data / "app.db")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the main file
    db.close()
    with (pod.data / "app.db").open("r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xff" * 8192)  # scribble over the table's pages
    damaged = _run(check, cwd=pod.data, check=False)
    assert damaged.returncode == 1
    assert "app.db is damaged" in damaged.stderr


def test_backup_restore_check_and_promote_round_trip(pod: Pod, app: subprocess.Popen[str]) -> None:
    backup = pod.job("backup")
    _run(pod.argv(backup["before"][0]["command"]))
    excludes = [arg for pattern in backup["excludes"] for arg in ("--exclude", pattern)]
    result = pod.caretaker("backup", "--path", str(pod.data), *excludes)
    assert result.returncode == 0, result.stdout + result.stderr
    saved = _rows(pod.data / "backup" / "app.db")

    # A new pod: an empty volume, restored and checked, then the copy promoted.
    fresh = pod.data.parent / "fresh"
    fresh.mkdir()
    check = shlex.join(pod.check_cmd())
    restored = pod.caretaker("restore", "--path", str(fresh), "--check-cmd", check, "--json")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert json.loads(restored.stdout)["outcome"] == "restored"
    assert not (fresh / "app.db").exists()  # the live file was excluded
    assert "restored from" in pod.promote(fresh).stdout
    assert _rows(fresh / "app.db") == saved

    # Damage the promoted database: the check fails, the data is set aside, and the
    # newest snapshot is restored again.
    (fresh / "app.db").write_bytes(b"not a database" * 1000)
    again = pod.caretaker("restore", "--path", str(fresh), "--check-cmd", check, "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["outcome"] == "restored"
    pod.promote(fresh)
    assert _rows(fresh / "app.db") == saved
    assert list((fresh / ".caretaker" / "quarantine").iterdir())
