"""One bad value per rule through each way a value arrives: a flag, its environment twin,
the sidecar's config file and a flag of `caretaker inject` (the chart's values: in
tests/chart/test_option_rules.py). Each is refused with exit 2, naming the key and the
value, and every problem of a run comes in one round."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from caretaker.cli import main

SHOP = str(Path(__file__).parent / "sidecar" / "manifests" / "shop-deployment.yaml")
INJECT = ["inject", SHOP, "--volume", "shop-data", "--container", "shop"]


def problems(argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Run the CLI in-process; assert exit 2 and return every problem it reported."""
    code = main([*argv, "--log-format", "json"], env)
    captured = capsys.readouterr()
    events = [json.loads(line) for line in (captured.out + captured.err).splitlines() if line.startswith("{")]
    assert code == 2, events
    found: list[str] = []
    for event in events:
        found += event.get("problems", [])
        if event.get("event") == "restore.outcome":
            found += event["error"].removeprefix("invalid configuration: ").split("; ")
    return found


def config_file(tmp_path: Path, jobs: str, top: str = "repository: file:///r") -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(top) + "\njobs:\n" + textwrap.dedent(jobs), encoding="utf-8")
    return ["sidecar", "--check-config", "--config", str(path), "--path", str(tmp_path)]


def assert_named(found: list[str], key: str, value: str, message: str) -> None:
    """A problem names `key` and `value` (quoted as text, or as the YAML number it was)."""
    named = [p for p in found if p.startswith(f"{key}=") and value in p.partition(": ")[0]]
    assert any(message in p for p in named), (key, value, message, found)


RULES: dict[str, tuple[str, str]] = {
    # rule: (bad value, what the message says)
    "count": ("-1", "whole number >= 0"),
    "duration": ("5x", "not a duration"),
    "share": ("150%", "share from 0 to 1"),
    "cron": ("61 * * * *", "bad minute field '61'"),
    "time zone": ("CRON_TZ=Mars/Olympus 0 * * * *", "unknown time zone"),
    "url scheme": ("ftp://host/x", "unsupported repository URL scheme"),
    "bucket name": ("s3://Bucket_x/app", "a bucket name is 3-63 characters"),
    "bucket missing": ("s3:/bucket", "names no bucket"),
    "file path": ("file:relative/dir", "absolute path"),
}


def _flag_case(rule: str, tmp_path: Path) -> tuple[list[str], str]:
    """A command line that carries the rule's bad value in a flag; the flag's name."""
    repo = ["--repository", (tmp_path / "r").as_uri()]
    cases: dict[str, tuple[list[str], str]] = {
        "count": (["prune", *repo, "--keep-daily"], "--keep-daily"),
        "duration": (["restore", *repo, "--path", str(tmp_path), "--timeout"], "--timeout"),
        "share": (["verify", *repo, "--read-data"], "--read-data"),
        "cron": (["sidecar", "--check-config", *repo, "--schedule"], "--schedule (CARETAKER_SCHEDULE)"),
        "time zone": (["sidecar", "--check-config", *repo, "--schedule"], "--schedule (CARETAKER_SCHEDULE)"),
    }
    if rule in cases:
        return cases[rule]
    return [
        "sidecar",
        "--check-config",
        "--schedule",
        "@daily",
        "--repository",
    ], "--repository (CARETAKER_REPOSITORY)"


@pytest.mark.parametrize("rule", RULES)
def test_a_flag(rule: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    value, message = RULES[rule]
    argv, key = _flag_case(rule, tmp_path)
    found = problems([*argv, value, "--path", str(tmp_path)], {}, capsys)
    assert_named(found, key, value, message)


@pytest.mark.parametrize("rule", RULES)
def test_its_environment_twin(rule: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    value, message = RULES[rule]
    argv, key = _flag_case(rule, tmp_path)
    flag = argv.pop()
    variable = "CARETAKER_" + flag.lstrip("-").replace("-", "_").upper()
    found = problems([*argv, "--path", str(tmp_path)], {variable: value}, capsys)
    assert_named(found, key if "(" in key else variable, value, message)


FILE_CASES: dict[str, tuple[str, str]] = {
    # rule: (jobs and top-level keys with the bad value, the key named)
    "count": ("- {name: tidy, kind: prune, schedule: '@daily', keep: {daily: -1}}", "jobs.tidy.keep.daily"),
    "duration": ("- {name: b, kind: backup, schedule: '@daily', timeout: 5x}", "jobs.b.timeout"),
    "share": ("- {name: v, kind: verify, schedule: '@daily', read_data: 150%}", "jobs.v.read_data"),
    "cron": ("- {name: b, kind: backup, schedule: '61 * * * *'}", "jobs.b.schedule"),
    "time zone": ("- {name: b, kind: backup, schedule: 'CRON_TZ=Mars/Olympus 0 * * * *'}", "jobs.b.schedule"),
}


@pytest.mark.parametrize("rule", RULES)
def test_the_config_file(rule: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    value, message = RULES[rule]
    if rule in FILE_CASES:
        jobs, key = FILE_CASES[rule]
        argv = config_file(tmp_path, jobs)
    else:
        argv = config_file(
            tmp_path, "- {name: b, kind: backup, schedule: '@daily'}", f"repository: '{value}'"
        )
        key = "repository"
    assert_named(problems(argv, {}, capsys), key, value, message)


INJECT_CASES: dict[str, tuple[list[str], str]] = {
    # rule: (inject flags up to the bad value, the flag named)
    "count": (["--env", "CARETAKER_KEEP_DAILY=-1"], "--env CARETAKER_KEEP_DAILY"),
    "duration": (["--env", "CARETAKER_TIMEOUT=5x"], "--env CARETAKER_TIMEOUT"),
    "cron": (["--schedule", "61 * * * *"], "--schedule"),
    "time zone": (["--schedule", "CRON_TZ=Mars/Olympus 0 * * * *"], "--schedule"),
}


@pytest.mark.parametrize("rule", [r for r in RULES if r != "share"])  # inject sets no share
def test_an_inject_flag(rule: str, capsys: pytest.CaptureFixture[str]) -> None:
    value, message = RULES[rule]
    if rule in INJECT_CASES:
        argv, key = INJECT_CASES[rule]
        argv = [*argv, "--repository", "s3://backups/shop"]
    else:
        argv, key = ["--repository", value], "--repository"
    assert_named(problems([*INJECT, *argv], {}, capsys), key, value, message)


def test_a_share_means_the_same_in_a_flag_and_in_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = config_file(tmp_path, "- {name: v, kind: verify, schedule: '@daily', read_data: 10%}")
    assert main([*argv, "--log-format", "json"], {}) == 0
    assert main(["verify", "--repository", (tmp_path / "r").as_uri(), "--read-data", "10%"], {}) == 0
    capsys.readouterr()


def test_the_five_mistakes_of_one_job_come_in_one_round(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = """
    - name: Bad_Name
      kind: verfy
      schedule: "61 * * * *"
      timezone: Mars/Olympus
      read_data: 150%
    """
    found = problems(config_file(tmp_path, jobs), {}, capsys)
    assert [p.split("=")[0] for p in found] == [
        "jobs[0].name",
        "jobs[0].kind",
        "jobs[0].timezone",
        "jobs[0].schedule",
        "jobs[0].read_data",
    ]
    assert "did you mean verify?" in found[1]


def test_a_misspelt_job_reference_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = """
    - {name: backup, kind: backup, schedule: "@hourly", then: [prun]}
    - {name: prune, kind: prune, keep: {daily: 7}}
    """
    found = problems(config_file(tmp_path, jobs), {}, capsys)
    assert found == ["jobs.backup.then='prun': no job named prun (did you mean prune?)"]


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["prune", "--keep-last", "0"], {}),
        (["prune"], {"CARETAKER_KEEP_LAST": "0"}),
        (["sidecar", "--check-config", "--schedule", "@daily", "--keep-last", "0"], {}),
    ],
)
def test_rules_that_are_all_zero_are_refused(
    argv: list[str], env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    found = problems([*argv, "--repository", (tmp_path / "r").as_uri(), "--path", str(tmp_path)], env, capsys)
    assert len(found) == 1
    assert "0 turns the rule off" in found[0]
    assert "would forget nothing" in found[0]


def test_a_command_reports_all_its_bad_options_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"CARETAKER_KEEP_HOURLY": "x"}
    argv = [
        "prune",
        "--repository",
        "ftp://x",
        "--keep-daily",
        "-1",
        "--keep-within",
        "3x",
        "--log-level",
        "loud",
    ]
    found = problems(argv, env, capsys)
    assert sorted(p.split("=")[0] for p in found) == [
        "--keep-daily",
        "--keep-within",
        "--log-level",
        "--repository (CARETAKER_REPOSITORY)",
        "CARETAKER_KEEP_HOURLY",
    ]
