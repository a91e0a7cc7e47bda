"""Notifications from real processes to a real HTTP receiver on 127.0.0.1: a sidecar whose
job fails and recovers, pinging its heartbeat; an init container's failed restore. The
notification URLs carry a secret, which must never show in a log or an HTTP response."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_caretaker
from tests.support.sidecar import App, Sidecar, wait_until

pytestmark = pytest.mark.integration

SECRET = "n0t1fy-s3cret"


def received(app: App, path: str) -> list[dict[str, str]]:
    return [json.loads(body) for where, body in list(app.bodies) if where.startswith(path)]


def test_a_failing_job_notifies_then_recovers_and_pings_its_heartbeat(tmp_path: Path):
    (tmp_path / "data").mkdir()
    with App() as receiver, App() as service:
        service.status = 500
        hook = receiver.url("/hook").replace("http://", f"json://caretaker:{SECRET}@")
        (tmp_path / "notify-urls").write_text(hook + "\n")
        (tmp_path / "heartbeat").write_text(receiver.url(f"/hc/{SECRET}"))
        config = f"""
repository: file://{tmp_path}/repo
path: {tmp_path}/data
defaults: {{retries: 0}}
jobs:
  - name: health
    kind: http
    schedule: "@every 1s"
    url: {service.url("/health")}
    heartbeat: {{url_file: {tmp_path}/heartbeat}}
"""
        env = {"CARETAKER_NOTIFY_FILE": str(tmp_path / "notify-urls"), "HOSTNAME": "shop-0"}
        with Sidecar(tmp_path, [], env=env, config=config) as sidecar:
            [failure, *_] = wait_until(lambda: received(receiver, "/hook"), 20, "a failure notification")
            service.status = 200
            recovery = wait_until(
                lambda: [m for m in received(receiver, "/hook") if "recovered" in m["title"]],
                20,
                "the recovery notification",
            )[0]
            wait_until(lambda: ("POST", f"/hc/{SECRET}") in receiver.requests, 10, "a success ping")
            status = sidecar.get("/status")[1]
        log = sidecar.log_text()
    assert failure["title"] == "caretaker http job health failed on shop-0"
    assert failure["type"] == "failure"
    assert "host: shop-0" in failure["message"]
    assert "task: health (http)" in failure["message"]
    assert "result: failure" in failure["message"]
    assert "answered 500, expected 200" in failure["message"]
    assert recovery["type"] == "success"
    assert "result: success" in recovery["message"]
    # Failures only until it recovered, one recovery, no plain successes (not asked for).
    titles = [m["title"] for m in received(receiver, "/hook")]
    assert sum("recovered" in t for t in titles) == 1
    assert not any("succeeded" in t for t in titles)
    pings = [path for method, path in receiver.requests if path.startswith("/hc/")]
    assert {f"/hc/{SECRET}/start", f"/hc/{SECRET}/fail", f"/hc/{SECRET}"} <= set(pings)
    assert SECRET not in log
    assert SECRET not in status
    assert '"notify.sent"' in log


def test_a_failed_restore_notifies(tmp_path: Path):
    (tmp_path / "data").mkdir()
    (tmp_path / "repo").mkdir()
    with App() as receiver:
        hook = receiver.url("/hook").replace("http://", f"json://caretaker:{SECRET}@")
        done = run_caretaker(
            "restore",
            "--repository",
            f"file://{tmp_path}/repo",
            "--path",
            str(tmp_path / "data"),
            "--termination-log",
            str(tmp_path / "termination-log"),
            environ={"CARETAKER_NOTIFY": hook, "HOSTNAME": "shop-1"},
        )
        messages = received(receiver, "/hook")
    assert done.returncode == 3, done.stdout + done.stderr
    [message] = messages
    assert message["title"] == "caretaker restore failed on shop-1"
    assert message["type"] == "failure"
    assert "outcome: failed (exit 3)" in message["message"]
    assert "error: " in message["message"]
    assert SECRET not in done.stdout + done.stderr


def test_a_restore_notifies_success_only_when_asked(tmp_path: Path):
    volume = tmp_path / "data"
    volume.mkdir()
    (volume / "app.db").write_text("data")
    with App() as receiver:
        hook = receiver.url("/hook").replace("http://", "json://")
        argv = ["restore", "--repository", f"file://{tmp_path}/repo", "--path", str(volume)]
        argv += ["--termination-log", str(tmp_path / "termination-log")]
        quiet = run_caretaker(*argv, "--notify", hook, environ={"HOSTNAME": "shop-2"})
        told = run_caretaker(
            *argv, "--notify", hook, "--notify-on", "failure,success", environ={"HOSTNAME": "shop-2"}
        )
        bad = run_caretaker(*argv, "--notify", hook, "--notify-on", "recovery", environ={})
        messages = received(receiver, "/hook")
    assert (quiet.returncode, told.returncode) == (0, 0)
    [message] = messages
    assert message["title"] == "caretaker restore skipped on shop-2"
    assert message["type"] == "success"
    assert bad.returncode == 2
    assert "--notify-on (CARETAKER_NOTIFY_ON)" in bad.stdout + bad.stderr
