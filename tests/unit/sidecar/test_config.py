from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from restore.errors import ConfigError
from restore.retention import RetentionPolicy
from sidecar.settings.load import load
from sidecar.settings.model import (
    BackupAction,
    CommandSpec,
    HttpSpec,
    Listen,
    PruneAction,
    VerifyAction,
    parse_listen,
)
from sidecar.settings.options import Flags

FULL = """
repository: s3://bucket/prefix
path: /data
listen: ":9090"
rpo: 2h
shutdown: {grace: 25s, backup_on_shutdown: true}
defaults: {timezone: UTC, jitter: 0s, retries: 2, retry_backoff: 30s, misfire_grace: 5m}
jobs:
  - name: backup
    kind: backup
    schedule: "*/15 * * * *"
    timezone: Europe/Berlin
    jitter: 30s
    run_on_start: false
    retries: 2
    timeout: 1h
    excludes: ["*.tmp"]
    allow_empty: false
    before: [{command: ["sh", "-c", "echo"], timeout: 30s},
             {http: {url: "http://127.0.0.1:8080/flush", method: POST, expect_status: 200, timeout: 10s}}]
    after: []
  - {name: prune, kind: prune, schedule: "@daily",
     keep: {last: 48, hourly: 24, daily: 7, weekly: 4, monthly: 12, yearly: 0, within: 2d}}
  - {name: verify, kind: verify, schedule: "@weekly", read_data: 0.1}
  - {name: vacuum, kind: command, schedule: "0 4 * * *", command: ["sqlite3", "/data/app.db", "VACUUM"],
     env: {K: V}, workdir: /data, timeout: 10m}
  - {name: ping, kind: http, schedule: "@every 5m", method: POST, url: "http://127.0.0.1:8080/flush",
     expect_status: 200, timeout: 10s}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(flags: Flags, environ: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load(flags, environ)
    return {p.key: p.message for p in caught.value.problems}


def test_the_documented_example_loads(tmp_path):
    config = load(Flags(config=write(tmp_path, FULL)))
    assert config.repository == "s3://bucket/prefix"
    assert config.listen == Listen("", 9090)
    assert config.rpo == timedelta(hours=2)
    assert config.backup_on_shutdown
    assert [j.name for j in config.jobs] == ["backup", "prune", "verify", "vacuum", "ping"]
    backup = config.job("backup")
    assert backup.action == BackupAction(excludes=("*.tmp",))
    assert backup.timeout == timedelta(hours=1)
    assert backup.schedule is not None
    assert backup.schedule.timezone == "Europe/Berlin"
    assert backup.schedule.jitter == timedelta(seconds=30)
    assert backup.before == (
        CommandSpec(argv=("sh", "-c", "echo"), timeout=timedelta(seconds=30)),
        HttpSpec(url="http://127.0.0.1:8080/flush", method="POST"),
    )
    assert config.job("prune").action == PruneAction(
        policy=RetentionPolicy(last=48, hourly=24, daily=7, weekly=4, monthly=12, within=timedelta(days=2))
    )
    assert config.job("verify").action == VerifyAction(read_data=0.1)
    vacuum = config.job("vacuum").action
    assert isinstance(vacuum, CommandSpec)
    assert vacuum.env == {"K": "V"}
    assert vacuum.workdir == Path("/data")
    assert vacuum.timeout == timedelta(minutes=10)
    assert config.job("ping").action == HttpSpec(url="http://127.0.0.1:8080/flush", method="POST")


def test_every_problem_is_reported_at_once_naming_key_and_value(tmp_path):
    path = write(
        tmp_path,
        """
        repository: ftp://host/x
        retention: {last: 3}
        defaults: {jitter: soon}
        jobs:
          - {name: backup, kind: backup, schedule: "61 * * * *", timeout: 1 hour}
          - {name: Bad_Name, kind: command, schedule: "@daily", command: [true]}
          - {name: poke, kind: http, schedule: "@hourly", url: "localhost:8080/x"}
          - {name: tidy, kind: prune, schedule: "@daily", keep: {last: -1}, timeout: 1h}
          - {name: wipe, kind: rm, schedule: "@daily"}
          - {name: backup, kind: verify, schedule: "@daily", read_data: 2}
    """,
    )
    problems = problems_of(Flags(config=path))
    assert "unsupported repository URL scheme 'ftp'" in problems["repository"]
    assert problems["retention"].startswith("unknown key")
    assert "not a duration" in problems["defaults.jitter"]
    assert "bad minute field '61'" in problems["jobs.backup.schedule"]
    assert "not a duration" in problems["jobs.backup.timeout"]
    assert "lowercase" in problems["jobs[1].name"]
    assert "must be a list of strings" in problems["jobs[1].command"]
    assert "http:// or https://" in problems["jobs.poke.url"]
    assert "whole number" in problems["jobs.tidy.keep.last"]
    assert "not supported for prune" in problems["jobs.tidy.timeout"]
    assert "must be one of backup" in problems["jobs.wipe.kind"]
    assert "from 0 to 1" in problems["jobs.backup.read_data"]
    assert problems["jobs.backup.name"] == "duplicate job name"
    assert len(problems) == 13


def test_kind_specific_keys_are_unknown_on_other_kinds(tmp_path):
    path = write(
        tmp_path,
        """
        repository: file:///r
        jobs: [{name: p, kind: prune, schedule: "@daily", keep: {daily: 7}, excludes: ["*.tmp"]}]
    """,
    )
    message = problems_of(Flags(config=path))["jobs.p.excludes"]
    assert message.startswith("unknown key (known here:")
    assert "keep" in message


def test_prune_needs_a_rule_and_hooks_need_one_kind(tmp_path):
    path = write(
        tmp_path,
        """
        repository: file:///r
        jobs:
          - name: p
            kind: prune
            schedule: "@daily"
            before: [{command: [x], http: {url: "http://127.0.0.1/"}}, {}]
            after: [{http: {url: "http://127.0.0.1/", verb: GET}}]
    """,
    )
    problems = problems_of(Flags(config=path))
    assert "set at least one rule" in problems["jobs.p.keep"]
    assert "exactly one of" in problems["jobs.p.before[0]"]
    assert "exactly one of" in problems["jobs.p.before[1]"]
    assert problems["jobs.p.after[0].http.verb"].startswith("unknown key")


def test_then_chains_and_unscheduled_jobs(tmp_path):
    path = write(
        tmp_path,
        """
        repository: file:///r
        jobs:
          - {name: backup, kind: backup, schedule: "@hourly", then: [prune, nothing]}
          - {name: prune, kind: prune, keep: {last: 3}}
          - {name: orphan, kind: verify}
    """,
    )
    problems = problems_of(Flags(config=path))
    assert problems == {
        "jobs.backup.then": "no job named nothing",
        "jobs.orphan.schedule": "is required (or name this job in another job's `then`)",
    }


def test_unreadable_and_invalid_files(tmp_path):
    missing = problems_of(Flags(config=tmp_path / "nope.yaml"))
    assert "No such file" in missing["--config (CARETAKER_CONFIG)"]
    broken = problems_of(Flags(config=write(tmp_path, "jobs: [unclosed")))
    assert "not valid YAML" in broken["--config (CARETAKER_CONFIG)"]
    empty = problems_of(Flags(repository="file:///r", config=write(tmp_path, "")))
    assert empty == {"jobs": "at least one job is required"}


def test_flags_override_the_file_and_job_flags_are_refused_with_it(tmp_path):
    path = write(tmp_path, FULL)
    config = load(
        Flags(
            config=path,
            repository="file:///elsewhere",
            path=Path("/srv"),
            listen="127.0.0.1:0",
            shutdown_grace="0s",
            backup_on_shutdown=False,
        )
    )
    assert config.repository == "file:///elsewhere"
    assert config.path == Path("/srv")
    assert config.listen == Listen("127.0.0.1", 0)
    assert config.shutdown_grace == timedelta(0)
    assert not config.backup_on_shutdown
    problems = problems_of(Flags(config=path, schedule="@daily", keep={"last": "3"}, excludes=("*.tmp",)))
    assert set(problems) == {
        "--schedule (CARETAKER_SCHEDULE)",
        "--keep-last (CARETAKER_KEEP_LAST)",
        "--exclude (CARETAKER_EXCLUDE)",
    }


def test_environment_only_mode_builds_backup_then_prune():
    config = load(
        Flags(
            repository="file:///r",
            path=Path("/data"),
            schedule="@every 10s",
            keep={"last": "5"},
            keep_within="1d",
            excludes=("*.log",),
            run_on_start=True,
        )
    )
    backup, prune = config.jobs
    assert backup.action == BackupAction(excludes=("*.log",))
    assert backup.run_on_start
    assert backup.then == ("prune",)
    assert prune.schedule is None
    assert prune.action == PruneAction(policy=RetentionPolicy(last=5, within=timedelta(days=1)))
    assert config.source == "environment"


def test_environment_only_mode_with_prune_and_verify_schedules():
    config = load(
        Flags(
            repository="file:///r",
            schedule="@hourly",
            keep={"daily": "7"},
            prune_schedule="@daily",
            verify_schedule="@weekly",
        )
    )
    assert [(j.name, j.schedule is not None, j.then) for j in config.jobs] == [
        ("backup", True, ()),
        ("prune", True, ()),
        ("verify", True, ()),
    ]


def test_environment_only_mode_problems():
    problems = problems_of(
        Flags(
            prune_schedule="@daily",
            keep={"last": "x"},
            rpo="soon",
            keep_within="forever",
            backup_on_shutdown=True,
        )
    )
    assert set(problems) == {
        "--schedule (CARETAKER_SCHEDULE)",
        "--prune-schedule (CARETAKER_PRUNE_SCHEDULE)",
        "--keep-last (CARETAKER_KEEP_LAST)",
        "--keep-within (CARETAKER_KEEP_WITHIN)",
        "--rpo (CARETAKER_RPO)",
        "repository",
        "shutdown.backup_on_shutdown",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":9090", Listen("", 9090)),
        ("127.0.0.1:80", Listen("127.0.0.1", 80)),
        ("[::1]:9090", Listen("::1", 9090)),
    ],
)
def test_parse_listen(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9090", ":http", "host:70000", ""])
def test_parse_listen_refuses(text):
    with pytest.raises(ValueError, match="host:port"):
        parse_listen(text)


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("s3://AKID:wJalr/K7MDENG@bucket/app", "AWS_SECRET_ACCESS_KEY_FILE"),
        ("git+https://deploy:hunter2@git.example/backups.git", "CARETAKER_GIT_TOKEN_FILE"),
        ("git+https://ghp_hunter2@git.example/backups.git", "CARETAKER_GIT_TOKEN_FILE"),
        ("git+ssh://git:hunter2@git.example/backups.git", "CARETAKER_GIT_SSH_KEY_FILE"),
    ],
)
def test_a_repository_url_with_credentials_is_refused_naming_the_file_variables(tmp_path, url, names):
    path = write(tmp_path, f'repository: "{url}"\njobs: [{{name: b, kind: backup, schedule: "@daily"}}]\n')
    with pytest.raises(ConfigError) as caught:
        load(Flags(config=path))
    assert names in str(caught.value)
    for secret in ("hunter2", "K7MDENG", "wJalr"):
        assert secret not in str(caught.value)


def test_an_ssh_account_name_is_not_a_credential(tmp_path):
    path = write(
        tmp_path,
        'repository: "git+ssh://git@git.example/b.git"\njobs: [{name: b, kind: backup, schedule: "@daily"}]\n',
    )
    assert load(Flags(config=path)).repository == "git+ssh://git@git.example/b.git"


def test_user_information_in_an_http_call_url_is_refused_and_not_repeated(tmp_path):
    path = write(
        tmp_path,
        """
        repository: file:///backups
        jobs:
          - name: b
            kind: backup
            schedule: "@daily"
            before: [{http: {url: "http://admin:hunter2@127.0.0.1:8080/flush?token=tok42"}}]
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load(Flags(config=path))
    (problem,) = caught.value.problems
    assert problem.key == "jobs.b.before[0].http.url"
    assert "user information" in problem.message
    assert "hunter2" not in str(caught.value)
    assert "tok42" not in str(caught.value)
    assert "http://***@127.0.0.1:8080/flush?token=***" in str(caught.value)


def test_inherit_env_and_follow_redirects_are_read_and_checked(tmp_path):
    text = """
        repository: file:///backups
        jobs:
          - name: dump
            kind: command
            schedule: "@daily"
            command: [aws, s3, ls]
            inherit_env: [AWS_REGION, AWS_ACCESS_KEY_ID]
            after: [{http: {url: "http://127.0.0.1/x", method: POST, follow_redirects: true}}]
        """
    config = load(Flags(config=write(tmp_path, text)))
    action = config.job("dump").action
    assert isinstance(action, CommandSpec)
    assert action.inherit_env == ("AWS_REGION", "AWS_ACCESS_KEY_ID")
    assert config.job("dump").after == (
        HttpSpec(url="http://127.0.0.1/x", method="POST", follow_redirects=True),
    )
    bad = text.replace("AWS_ACCESS_KEY_ID]", "AWS-KEY]").replace(
        "follow_redirects: true", "follow_redirects: 1"
    )
    problems = problems_of(Flags(config=write(tmp_path, bad)))
    assert "environment variable names" in problems["jobs.dump.inherit_env"]
    assert "true or false" in problems["jobs.dump.after[0].http.follow_redirects"]


def test_the_password_reaches_the_configuration_without_being_shown(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    config = load(Flags(repository="file:///backups", schedule="@hourly", password_file=secret))
    assert config.encryption.password == "s3cret"
    assert "s3cret" not in repr(config)
    variable = {"CARETAKER_PASSWORD": "p"}
    assert load(Flags(repository="file:///b", schedule="@hourly"), variable).encryption.password == "p"


def test_a_password_for_git_or_with_the_opt_out_is_refused_with_the_other_problems(tmp_path):
    found = problems_of(
        Flags(repository="git+file:///srv/backups.git", schedule="@nonsense", listen="x"),
        {"CARETAKER_PASSWORD": "p"},
    )
    assert found["CARETAKER_PASSWORD"].startswith("git repositories store the volume as browsable files")
    assert set(found) == {
        "CARETAKER_PASSWORD",
        "--schedule (CARETAKER_SCHEDULE)",
        "--listen (CARETAKER_LISTEN)",
    }
    found = problems_of(
        Flags(repository="file:///b", schedule="@hourly", insecure_no_encryption=True),
        {"CARETAKER_PASSWORD": "p"},
    )
    assert found == {
        "--insecure-no-encryption (CARETAKER_INSECURE_NO_ENCRYPTION)": "a password was given too "
        "(CARETAKER_PASSWORD): choose one"
    }


def test_claim_timing_from_flags_or_the_file_and_its_problems(tmp_path):
    from restore.claims.holder import Timing

    assert load(Flags(config=write(tmp_path, FULL))).claim == Timing(heartbeat_seconds=10, expiry_seconds=30)
    path = write(tmp_path, FULL + "claim: {heartbeat: 5s, expiry: 20s, unready_on_standby: true}\n")
    config = load(Flags(config=path))
    assert (config.claim, config.unready_on_standby) == (Timing(heartbeat_seconds=5, expiry_seconds=20), True)
    config = load(Flags(config=path, claim_heartbeat="2s", claim_expiry="1m"))
    assert config.claim == Timing(heartbeat_seconds=2, expiry_seconds=60)
    short = problems_of(Flags(config=path, claim_expiry="8s"))
    assert short == {
        "--claim-expiry (CARETAKER_CLAIM_EXPIRY)": "must be at least two heartbeats (10s): one late "
        "renewal must not let another writer take the claim over"
    }
    bad = write(tmp_path, FULL + "claim: {heartbeat: soon, expire: 1m}\n")
    assert set(problems_of(Flags(config=bad))) == {"claim.heartbeat", "claim.expire"}
