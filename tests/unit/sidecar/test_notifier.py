"""Notifications through Apprise and heartbeat pings, received by a real HTTP server on
127.0.0.1: what arrives, when, and that a dead or slow service never holds anything up."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from restore.notify import Message, Notify, parse_events, ping, ping_url, send, split_urls, url_problem
from restore.redaction import redact_secret_url
from sidecar.notifier import Notifier
from sidecar.settings.model import CommandSpec, JobConfig, Listen, SidecarConfig
from tests.support.seaweed import free_ports
from tests.support.sidecar import App


def messages(app: App) -> list[dict[str, str]]:
    return [json.loads(body) for path, body in app.bodies if path.startswith("/hook")]


def job(name: str = "backup", kind: str = "backup", notify: Notify | None = None) -> JobConfig:
    return JobConfig(name=name, kind=kind, action=CommandSpec(argv=("true",)), schedule=None, notify=notify)  # type: ignore[arg-type]


def config(notify: Notify, *jobs: JobConfig) -> SidecarConfig:
    return SidecarConfig(
        repository="file:///r", path=Path("/data"), listen=Listen("", 0), jobs=jobs, notify=notify
    )


class TestSend:
    def test_a_json_webhook_receives_title_body_and_type(self):
        with App() as app:
            problems = send(
                [app.url("/hook").replace("http://", "json://")],
                Message(event="failure", title="t", body="b"),
            )
        assert problems == []
        [message] = messages(app)
        assert (message["title"], message["message"], message["type"]) == ("t", "b", "failure")

    def test_a_dead_service_is_a_problem_naming_the_scheme_only(self):
        port = free_ports(1)[0]
        url = f"json://user:secret@127.0.0.1:{port}/hook"
        problems = send([url], Message(event="failure", title="t", body="b"), timeout=5)
        assert len(problems) == 1
        assert problems[0].startswith("json://***: ")
        assert "secret" not in problems[0]
        assert str(port) not in problems[0]

    def test_a_slow_service_is_given_up_after_the_timeout(self):
        with App() as app:
            app.delay = 5
            started = time.monotonic()
            problems = send(
                [app.url("/hook").replace("http://", "json://")],
                Message(event="success", title="t", body="b"),
                timeout=1,
            )
            elapsed = time.monotonic() - started
        assert elapsed < 3
        assert problems
        assert problems[0].startswith("json://***")

    def test_urls_events_and_pings_are_parsed_strictly(self):
        assert split_urls(["json://a/x, slack://T/B/C", "ntfy://topic\nmailto://u:p@h"]) == (
            "json://a/x",
            "slack://T/B/C",
            "ntfy://topic",
            "mailto://u:p@h",
        )
        assert url_problem("json://a/x") is None
        assert url_problem("hooks.slack.com/x") is not None
        assert parse_events(["failure,recovery"]) == {"failure", "recovery"}
        with pytest.raises(ValueError, match="unknown event sucess"):
            parse_events(["sucess"])
        assert ping_url("https://hc.example/abc", "start") == "https://hc.example/abc/start"
        assert ping_url("https://hc.example/abc/?rid=1", "fail") == "https://hc.example/abc/fail?rid=1"
        assert ping_url("https://hc.example/abc", "success") == "https://hc.example/abc"
        assert redact_secret_url("slack://TokenA/TokenB/TokenC") == "slack://***"

    def test_a_ping_posts_the_log_and_reports_a_bad_status(self):
        with App() as app:
            assert ping(app.url("/hc"), "fail", "error: disk full") is None
            app.status = 404
            assert ping(app.url("/hc"), "start") == "http://***: answered 404"
        assert app.requests == [("POST", "/hc/fail"), ("POST", "/hc/start")]
        assert app.bodies == [("/hc/fail", b"error: disk full")]


class TestNotifier:
    def test_failure_recovery_and_success_go_where_they_are_wanted(self):
        with App() as app:
            hook = app.url("/hook").replace("http://", "json://")
            everyone = Notify(urls=(hook + "/all",), events=parse_events(["failure,recovery"]))
            mine = Notify(urls=(hook + "/mine",), events=parse_events(["success"]))
            backup = job(notify=mine)
            notifier = Notifier(config(everyone, backup), host="shop-0")
            notifier.finished(
                backup, "failure", error="PUT http://key:s3cret@store/x failed", attempts=3, seconds=1.5
            )
            notifier.finished(backup, "failure", error="again", attempts=3, seconds=1)
            notifier.finished(backup, "success", error=None, attempts=1, seconds=2)
            notifier.finished(backup, "success", error=None, attempts=1, seconds=2)
            assert notifier.close(10)
        got = [(path.split("/")[-1], json.loads(body)) for path, body in app.bodies]
        assert [(where, m["type"]) for where, m in got] == [
            ("all", "failure"),
            ("all", "failure"),
            ("all", "success"),  # the recovery (Apprise's type: success)
            ("mine", "success"),
            ("mine", "success"),
        ]
        first = got[0][1]
        assert first["title"] == "caretaker backup job backup failed on shop-0"
        assert "host: shop-0" in first["message"]
        assert "task: backup (backup)" in first["message"]
        assert "result: failure" in first["message"]
        assert "error: PUT http://***@store/x failed" in first["message"]
        assert "s3cret" not in json.dumps(got)
        assert got[2][1]["title"] == "caretaker backup job backup recovered on shop-0"

    def test_heartbeat_pings_start_and_end_of_backups_but_not_other_jobs(self):
        with App() as app:
            notifier = Notifier(
                config(Notify(heartbeat=app.url("/hc")), job(), job("vacuum", "command")), host="h"
            )
            backup, vacuum = job(), job("vacuum", "command")
            notifier.started(backup)
            notifier.finished(backup, "failure", error="boom", attempts=1, seconds=1)
            notifier.started(vacuum)
            notifier.finished(vacuum, "failure", error="boom", attempts=1, seconds=1)
            notifier.started(backup)
            notifier.finished(backup, "success", error=None, attempts=1, seconds=1)
            assert notifier.close(10)
        assert [path for _, path in app.requests] == ["/hc/start", "/hc/fail", "/hc/start", "/hc"]
        assert b"error: boom" in dict(app.bodies)["/hc/fail"]

    def test_a_dead_service_is_logged_and_nothing_waits_for_it(self):
        port = free_ports(1)[0]
        dead = Notify(urls=(f"json://127.0.0.1:{port}/hook",), heartbeat=f"http://127.0.0.1:{port}/hc")
        notifier = Notifier(config(dead, job()), host="h")
        with capture_logs() as logs:
            started = time.monotonic()
            notifier.started(job())
            notifier.finished(job(), "failure", error="boom", attempts=1, seconds=1)
            handed_over = time.monotonic() - started
            assert notifier.close(20)
        assert handed_over < 0.1
        events = [e["event"] for e in logs]
        assert events.count("heartbeat.failed") == 2
        [failed] = [e for e in logs if e["event"] == "notify.failed"]
        assert failed["problem"].startswith("json://***: ")
        assert "notify.sent" in events
