"""What commands and HTTP calls get from the sidecar and give back: an environment without
caretaker's credentials, bounded output in the log, redirects not followed unless asked.
Real subprocesses and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from restore.childenv import child_environment
from sidecar import jobs
from sidecar.children import HEAD_LINES, TAIL_LINES
from sidecar.settings.model import CommandSpec, HttpSpec

SIDECAR_ENV = {
    "PATH": os.environ["PATH"],
    "LANG": "C.UTF-8",
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "secret-key-value",
    "AWS_SESSION_TOKEN": "session-token-value",
    "AWS_REGION": "eu-west-1",
    "CARETAKER_GIT_TOKEN_FILE": "/var/run/secrets/git/token",
    "CARETAKER_REPOSITORY": "s3://bucket/app",
    "APP_SETTING": "kept",
}


def env_of_child(tmp_path: Path, **spec: object) -> dict[str, str]:
    """Run `env` as a command and read what it printed (to a file, not the log)."""
    out = tmp_path / "env.txt"
    command = CommandSpec(argv=("sh", "-c", f"env > {out}"), timeout=timedelta(seconds=10), **spec)  # type: ignore[arg-type]
    jobs.command(
        spec=command,
        cwd=tmp_path,
        environ=SIDECAR_ENV,
        variables={"CARETAKER_JOB": "dump"},
        cancel=jobs.Cancel(),
        groups=jobs.ProcessGroups(),
    )
    return dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)


class TestEnvironment:
    def test_a_command_gets_no_aws_or_caretaker_variable_but_its_own(self, tmp_path):
        seen = env_of_child(tmp_path, env={"EXTRA": "x"})
        assert not [name for name in seen if name.startswith("AWS_")]
        assert [name for name in seen if name.startswith("CARETAKER_")] == ["CARETAKER_JOB"]
        assert seen["CARETAKER_JOB"] == "dump"
        assert (seen["APP_SETTING"], seen["LANG"], seen["EXTRA"]) == ("kept", "C.UTF-8", "x")
        assert "secret-key-value" not in (tmp_path / "env.txt").read_text()

    def test_inherit_env_lets_named_variables_through(self, tmp_path):
        seen = env_of_child(tmp_path, inherit_env=("AWS_REGION", "AWS_SECRET_ACCESS_KEY", "UNSET_VAR"))
        assert seen["AWS_REGION"] == "eu-west-1"
        assert seen["AWS_SECRET_ACCESS_KEY"] == "secret-key-value"
        assert "AWS_SESSION_TOKEN" not in seen
        assert "UNSET_VAR" not in seen

    def test_child_environment_is_a_plain_filter(self):
        assert child_environment({"AWS_X": "1", "B": "2"}, extra={"C": "3"}) == {"B": "2", "C": "3"}


def run_printing(tmp_path: Path, lines: int) -> None:
    spec = CommandSpec(
        argv=(
            "sh",
            "-c",
            f'i=1; while [ $i -le {lines} ]; do echo "line $i"; i=$((i+1)); done; echo bye >&2',
        ),
        timeout=timedelta(seconds=10),
    )
    jobs.command(
        spec=spec, cwd=tmp_path, environ=SIDECAR_ENV, cancel=jobs.Cancel(), groups=jobs.ProcessGroups()
    )


class TestOutput:
    def test_long_output_is_logged_as_head_count_and_tail(self, tmp_path, json_logs):
        run_printing(tmp_path, 1000)
        events = json_logs()
        stdout = [e["line"] for e in events if e["event"] == "command.output" and e["stream"] == "stdout"]
        assert stdout == [f"line {i}" for i in range(1, HEAD_LINES + 1)] + [
            f"line {i}" for i in range(1001 - TAIL_LINES, 1001)
        ]
        (omitted,) = [e for e in events if e["event"] == "command.output_omitted"]
        assert (omitted["stream"], omitted["lines"]) == ("stdout", 1000 - HEAD_LINES - TAIL_LINES)
        assert [e["line"] for e in events if e.get("stream") == "stderr"] == ["bye"]

    def test_short_output_is_logged_whole(self, tmp_path, json_logs):
        run_printing(tmp_path, HEAD_LINES + TAIL_LINES)
        events = json_logs()
        assert len([e for e in events if e["event"] == "command.output"]) == HEAD_LINES + TAIL_LINES + 1
        assert not [e for e in events if e["event"] == "command.output_omitted"]


class TestRedirects:
    def test_a_redirect_is_not_followed_and_named_without_its_query(self, app):
        app.redirects["/flush"] = app.url("/login?token=hunter2")
        with pytest.raises(jobs.HttpCallError) as caught:
            jobs.http(spec=HttpSpec(url=app.url("/flush"), method="POST"))
        message = str(caught.value)
        assert f"answered 302 (a redirect to {app.url('/login?token=***')}" in message
        assert "follow_redirects: true" in message
        assert "hunter2" not in message
        assert app.requests == [("POST", "/flush")]

    def test_an_expected_redirect_is_success(self, app):
        app.redirects["/flush"] = app.url("/elsewhere")
        assert jobs.http(spec=HttpSpec(url=app.url("/flush"), expect_status=302)) == 302
        assert app.requests == [("GET", "/flush")]

    def test_follow_redirects_follows(self, app):
        app.redirects["/flush"] = app.url("/done")
        assert jobs.http(spec=HttpSpec(url=app.url("/flush"), method="POST", follow_redirects=True)) == 200
        assert app.requests == [("POST", "/flush"), ("GET", "/done")]
