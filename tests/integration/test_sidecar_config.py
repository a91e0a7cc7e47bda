"""Bad configuration stops the sidecar before anything runs (exit 2, every problem at once);
--check-config validates and prints the effective schedule."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from tests.support.seaweed import free_ports

pytestmark = pytest.mark.integration

BAD = """
repository: ftp://nowhere/x
listen: "{listen}"
retnetion: {{last: 3}}
jobs:
  - {{name: backup, kind: backup, schedule: "*/15 * * * * *", timeout: 1 hour, run_on_start: true}}
  - {{name: ping, kind: http, schedule: "@every 1s", url: "127.0.0.1:8080/flush"}}
  - {{name: tidy, kind: prune, schedule: "@daily", keep: {{last: 3}}, timezone: Mars/Olympus}}
"""


def sidecar(tmp_path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "caretaker", "sidecar", "--log-format", "json", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env=env,
        check=False,
    )


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_bad_config_reports_every_problem_and_starts_nothing(tmp_path):
    port = free_ports(1)[0]
    config = tmp_path / "bad.yaml"
    config.write_text(BAD.format(listen=f"127.0.0.1:{port}"))
    result = sidecar(tmp_path, "--config", str(config), "--path", str(tmp_path), "--rpo", "soon")
    assert result.returncode == 2
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["event"] for line in lines] == ["config.invalid"]
    problems = lines[0]["problems"]
    expected = [
        "repository='ftp://nowhere/x': unsupported repository URL scheme 'ftp'",
        "retnetion={'last': 3}: unknown key",
        "jobs.backup.schedule='*/15 * * * * *': cron needs 5 fields",
        "jobs.backup.timeout='1 hour': not a duration",
        "jobs.ping.url='127.0.0.1:8080/flush': must be an http:// or https:// URL",
        "jobs.tidy.timezone='Mars/Olympus': unknown time zone",
        "--rpo (CARETAKER_RPO)='soon': not a duration",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)
    assert len(problems) == len(expected)
    assert port_is_free(port)
    assert not (tmp_path / "repo").exists()


def test_bad_environment_values_are_reported_with_the_rest(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "CARETAKER_REPOSITORY": "file:///x",
        "CARETAKER_SCHEDULE": "@every now",
        "CARETAKER_SHUTDOWN_GRACE": "ten",
        "CARETAKER_LISTEN": "everywhere",
    }
    result = sidecar(tmp_path, env=env)
    assert result.returncode == 2
    problems = json.loads(result.stdout)["problems"]
    keys = sorted(p.split("=", 1)[0] for p in problems)
    assert keys == [
        "--listen (CARETAKER_LISTEN)",
        "--schedule (CARETAKER_SCHEDULE)",
        "--shutdown-grace (CARETAKER_SHUTDOWN_GRACE)",
    ]


def test_a_missing_data_folder_or_taken_port_fails_with_exit_2(tmp_path):
    missing = sidecar(
        tmp_path,
        "--repository",
        f"file://{tmp_path}/repo",
        "--schedule",
        "@daily",
        "--path",
        str(tmp_path / "nope"),
        "--listen",
        "127.0.0.1:0",
    )
    assert missing.returncode == 2
    assert "is not a directory" in missing.stdout
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = sidecar(
            tmp_path,
            "--repository",
            f"file://{tmp_path}/repo",
            "--schedule",
            "@daily",
            "--path",
            str(tmp_path),
            "--listen",
            f"127.0.0.1:{port}",
        )
    assert busy.returncode == 2
    assert "cannot listen: Address already in use" in busy.stdout


def test_check_config_prints_jobs_and_next_runs(tmp_path):
    config = tmp_path / "ok.yaml"
    config.write_text("""
repository: git+ssh://git@git.example/backups.git#branch=b
jobs:
  - {name: backup, kind: backup, schedule: "0 3 * * 1-5", timezone: Europe/Berlin, then: [prune]}
  - {name: prune, kind: prune, keep: {daily: 7}}
  - {name: ping, kind: http, schedule: "@every 5m", url: "http://127.0.0.1:8080/", run_on_start: true}
""")
    result = sidecar(tmp_path, "--config", str(config), "--check-config", "--path", "/srv/data")
    assert result.returncode == 0, result.stdout
    out = result.stdout.splitlines()
    assert out[0] == f"config: {config} (valid)"
    assert out[1] == "repository: git+ssh://git@git.example/backups.git#branch=b"
    assert "path: /srv/data" in out
    assert "listen: :9090" in out
    assert "job backup (backup): 0 3 * * 1-5 (Europe/Berlin), then prune" in out
    assert "job prune (prune): after backup" in out
    assert "job ping (http): @every 5m, also at start" in out
    nexts = [line for line in out if line.startswith("  next: ")]
    assert len(nexts) == 6
    assert all(line.endswith(("T02:00:00Z", "T01:00:00Z")) for line in nexts[:3])  # 03:00 Berlin
