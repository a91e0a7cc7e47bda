"""The command line: env twins, JSON output, and exit codes mapped in one place."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from caretaker.cli import main
from restore.backends.local import LocalStore
from restore.claims.holder import hold
from restore.snapshots.lease import StoreSlot
from tests.support.claims import claimant
from tests.support.cli import run_main
from tests.support.keys import UNENCRYPTED_ENV
from tests.support.trees import write_file


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    source = tmp_path / "data"
    write_file(source / "a.txt", b"hello")
    return {
        "CARETAKER_REPOSITORY": f"file://{tmp_path / 'repo'}",
        "CARETAKER_PATH": str(source),
        **UNENCRYPTED_ENV,
    }


def test_backup_logs_a_finished_event_with_counts(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, logs = run_main(["backup"], env, capsys)
    assert code == 0
    [finished] = [e for e in logs if e["event"] == "backup.finished"]
    assert finished["files"] == 1
    assert finished["bytes_read"] == 5
    assert isinstance(finished["duration_seconds"], float)
    assert finished["level"] == "info"
    assert "timestamp" in finished


def test_snapshots_json_is_newest_first(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    run_main(["backup"], env, capsys)
    run_main(["backup"], env, capsys)
    code = main(["snapshots", "--json"], env)
    listed = json.loads(capsys.readouterr().out)
    assert code == 0
    assert len(listed) == 2
    assert listed[0]["time"] >= listed[1]["time"]
    assert set(listed[0]) >= {"id", "time", "files", "bytes"}


def test_flag_wins_over_environment(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    code, _, _ = run_main(["backup", "--repository", f"file://{other}"], env, capsys)
    assert code == 0
    assert (other / "snapshots").exists()
    assert not (tmp_path / "repo").exists()


def test_boolean_and_list_twins(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_file(tmp_path / "data" / "skip.tmp", b"x")
    code, out, _ = run_main(
        ["backup"], {**env, "CARETAKER_JSON": "true", "CARETAKER_EXCLUDE": "*.tmp, nothing"}, capsys
    )
    assert code == 0
    assert json.loads(out)["snapshot"]["files"] == 1


def test_bad_environment_value_exits_2_naming_the_variable(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, logs = run_main(
        ["prune"], {**env, "CARETAKER_KEEP_LAST": "many", "CARETAKER_DRY_RUN": "perhaps"}, capsys
    )
    assert code == 2
    problems = " ".join(map(str, logs[0]["problems"]))  # type: ignore[call-overload]
    assert "CARETAKER_KEEP_LAST='many'" in problems
    assert "CARETAKER_DRY_RUN='perhaps'" in problems


def test_missing_repository_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, logs = run_main(["snapshots"], {}, capsys)
    assert code == 2
    assert "CARETAKER_REPOSITORY" in str(logs[-1]["problems"])


@pytest.mark.parametrize("url", ["ftp://host/x", "file://relative/path", "file:relative", "/plain/path"])
def test_bad_repository_url_exits_2(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, logs = run_main(["snapshots", "--repository", url], {}, capsys)
    assert code == 2
    assert url in str(logs[-1]["problems"])


def test_help_names_the_environment_twin() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "caretaker", "prune", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert "CARETAKER_KEEP_LAST" in result.stdout
    assert "CARETAKER_REPOSITORY" in result.stdout


def test_a_live_claim_exits_6_naming_the_holder(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with hold(lambda: StoreSlot(LocalStore(tmp_path / "repo")), claimant("pod-a"), role="backup"):
        code, _, logs = run_main(["backup"], env, capsys)
    assert code == 6
    assert logs[-1]["event"] == "backup.failed"
    assert "pod-a, backup pod-a/1" in str(logs[-1]["error"])


def test_empty_volume_over_data_exits_9(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_main(["backup"], env, capsys)
    (tmp_path / "data" / "a.txt").unlink()
    code, _, logs = run_main(["backup"], env, capsys)
    assert code == 9
    assert logs[-1]["reason"] == "refused"
    assert run_main(["backup", "--allow-empty"], env, capsys)[0] == 0


def test_verify_damage_exits_7(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_main(["backup"], env, capsys)
    for pack in (tmp_path / "repo" / "data").rglob("*"):
        if pack.is_file():
            pack.unlink()
    code, _, logs = run_main(["verify"], env, capsys)
    assert code == 7
    assert any(e["event"] == "verify.damage" for e in logs)


def test_prune_dry_run_prints_the_plan(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(3):
        run_main(["backup"], env, capsys)
    code, out, _ = run_main(["prune", "--keep-last", "1", "--dry-run", "--json"], env, capsys)
    plan = json.loads(out)
    assert code == 0
    assert plan["dry_run"] is True
    assert len(plan["removed"]) == 2
    assert len(json.loads(run_main(["snapshots", "--json"], env, capsys)[1])) == 3


def test_unreadable_data_folder_exits_10(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, logs = run_main(["backup", "--path", "/nonexistent/data"], env, capsys)
    assert code == 10
    assert "/nonexistent/data" in str(logs[-1]["error"])


def test_console_format_is_readable() -> None:
    from restore import logs

    stream = io.StringIO()
    logs.configure("info", "console", stream)
    import structlog

    structlog.get_logger().info("backup.finished", files=3)
    assert "backup.finished" in stream.getvalue()
    assert "files=3" in stream.getvalue()
    assert not stream.getvalue().lstrip().startswith("{")


def test_another_commands_variable_does_not_concern_this_one(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # The chart gives init container and sidecar one environment; the sidecar's prune
    # settings must not stop `backup` (or `restore`), which has no such flag.
    code, _, _ = run_main(
        ["backup"], {**env, "CARETAKER_KEEP_LAST": "ten", "CARETAKER_SCHEDULE": "@nonsense"}, capsys
    )
    assert code == 0


@pytest.mark.parametrize(
    ("args", "variable", "expected"),
    [
        ([], None, "never"),
        (["--allow-empty"], None, "always"),
        (["--allow-empty", "new-repository"], None, "new-repository"),
        (["--allow-empty=never"], "always", "never"),
        ([], "true", "always"),
        ([], "false", "never"),
        ([], "New-Repository", "new-repository"),
    ],
)
def test_allow_empty_takes_a_mode_and_the_older_boolean(
    args: list[str], variable: str | None, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dry run on a repository that never held a snapshot shows which mode applied."""
    env = {"CARETAKER_REPOSITORY": (tmp_path / "repo").as_uri(), "CARETAKER_PATH": str(tmp_path / "data")}
    if variable is not None:
        env["CARETAKER_ALLOW_EMPTY"] = variable
    code, out, logs = run_main(["restore", "--dry-run", "--json", *args], env, capsys)
    if expected == "never":
        assert code == 3
        assert "--allow-empty=new-repository allows it" in str(logs)
        return
    assert code == 0
    reason = json.loads(out)["reason"]
    assert (
        reason.startswith("new repository:") if expected == "new-repository" else "no snapshot yet" in reason
    )


def test_a_bad_allow_empty_is_exit_2_naming_the_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"CARETAKER_REPOSITORY": (tmp_path / "repo").as_uri(), "CARETAKER_ALLOW_EMPTY": "sometimes"}
    code, _, logs = run_main(["restore", "--path", str(tmp_path)], env, capsys)
    assert code == 2
    assert "CARETAKER_ALLOW_EMPTY='sometimes': must be one of never, new-repository, always" in str(logs)


def test_a_claim_expiry_shorter_than_two_heartbeats_is_refused(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, logs = run_main(
        ["backup"], {**env, "CARETAKER_CLAIM_HEARTBEAT": "10s", "CARETAKER_CLAIM_EXPIRY": "15s"}, capsys
    )
    assert code == 2
    [problem] = logs[-1]["problems"]
    assert problem == (
        "--claim-expiry (CARETAKER_CLAIM_EXPIRY)='15s': must be at least two heartbeats (20s): "
        "one late renewal must not let another writer take the claim over"
    )
