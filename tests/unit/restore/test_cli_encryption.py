"""The password on the command line: where it comes from, what a wrong one costs (exit 13,
never "no snapshot" or a first boot), the opt-out, git, and `caretaker key`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from caretaker.cli import main
from restore.backends.local import LocalStore
from restore.errors import EXIT_PASSWORD
from restore.model import BackupOptions
from restore.snapshots.engine import Engine
from tests.conftest import FakeClock
from tests.support.cli import run_main
from tests.support.keys import PASSWORD, password_file, sealed
from tests.support.trees import write_file


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An encrypted repository with one snapshot of `a.txt`, made with the tests' cheap costs."""
    source = tmp_path / "data"
    write_file(source / "a.txt", b"hello")
    root = tmp_path / "repo"
    Engine(LocalStore(root), encryption=sealed(), clock=FakeClock()).backup(source, BackupOptions())
    return root


def env_for(repo: Path, password: str | None = PASSWORD, **others: str) -> dict[str, str]:
    env = {"CARETAKER_REPOSITORY": repo.as_uri(), **others}
    if password is not None:
        env["CARETAKER_PASSWORD_FILE"] = str(password_file(repo.parent, password, name=f"pw-{len(password)}"))
    return env


def restore_args(tmp_path: Path) -> list[str]:
    target = tmp_path / "volume"
    target.mkdir(exist_ok=True)
    return ["restore", "--path", str(target), "--termination-log", str(tmp_path / "termination-log")]


def test_the_password_file_opens_it(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["snapshots", "--json"], env_for(repo), capsys)
    assert code == 0
    assert json.loads(out)[0]["encrypted"] is True
    assert main(["snapshots"], env_for(repo)) == 0
    assert f"repository {repo.as_uri()}: encrypted (aes-256-gcm)" in capsys.readouterr().out


def test_the_weaker_variable_opens_it_too(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {"CARETAKER_REPOSITORY": repo.as_uri(), "CARETAKER_PASSWORD": PASSWORD}
    assert run_main(["verify"], env, capsys)[0] == 0


@pytest.mark.parametrize("password", [None, "wrong"], ids=["missing", "wrong"])
def test_restore_without_the_password_is_exit_13_even_with_allow_empty(
    repo: Path, tmp_path: Path, password: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, logs = run_main([*restore_args(tmp_path), "--allow-empty"], env_for(repo, password), capsys)
    assert code == EXIT_PASSWORD == 13
    (outcome,) = [e for e in logs if e["event"] == "restore.outcome"]
    assert (outcome["outcome"], outcome["reason"]) == ("failed", "password")
    assert "CARETAKER_PASSWORD" in str(outcome["error"])
    result = json.loads((tmp_path / "volume" / ".caretaker" / "restore-result.json").read_text())
    assert (result["outcome"], result["exit_code"]) == ("failed", 13)
    assert json.loads((tmp_path / "termination-log").read_text())["reason"] == "password"


def test_the_restore_outcome_carries_the_snapshot_age(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, logs = run_main(restore_args(tmp_path), env_for(repo), capsys)
    assert code == 0
    (outcome,) = [e for e in logs if e["event"] == "restore.outcome"]
    assert outcome["outcome"] == "restored"
    assert outcome["snapshot_age_seconds"] > 0  # the snapshot was taken at the fake clock's 2026-01-15
    assert (tmp_path / "volume" / "a.txt").read_bytes() == b"hello"


@pytest.mark.parametrize("command", [["snapshots"], ["verify"], ["prune", "--keep-last", "1"], ["backup"]])
def test_every_command_refuses_a_wrong_password_with_exit_13(
    repo: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    env = env_for(repo, "not-the-Passw0rd", CARETAKER_PATH=str(repo.parent / "data"))
    code, _, logs = run_main(command, env, capsys)
    assert code == 13
    assert logs[-1]["reason"] == "password"
    assert "opens no key slot" in str(logs[-1]["error"])
    assert "Passw0rd" not in json.dumps(logs)  # the password itself is never logged


def test_both_password_sources_or_a_password_with_the_opt_out_exit_2(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, logs = run_main(["snapshots"], env_for(repo, CARETAKER_PASSWORD=PASSWORD), capsys)
    assert code == 2
    assert "CARETAKER_PASSWORD='***': set it or --password-file (CARETAKER_PASSWORD_FILE)" in str(logs[-1])
    code, _, logs = run_main(["snapshots", "--insecure-no-encryption"], env_for(repo), capsys)
    assert code == 2
    assert "--insecure-no-encryption (CARETAKER_INSECURE_NO_ENCRYPTION)=True" in str(logs[-1])
    assert PASSWORD not in json.dumps(logs)


def test_an_unreadable_or_empty_password_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").write_text("\n")
    for path, problem in ((tmp_path / "absent", "cannot read"), (tmp_path / "empty", "file is empty")):
        code, _, logs = run_main(
            ["snapshots", "--repository", "file:///x", "--password-file", str(path)], {}, capsys
        )
        assert code == 2
        assert f"--password-file (CARETAKER_PASSWORD_FILE)='{path}': {problem}" in str(logs[-1])


def test_a_password_for_a_git_repository_is_refused_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"CARETAKER_REPOSITORY": f"git+file://{tmp_path}/remote.git", "CARETAKER_PASSWORD": "x"}
    code, _, logs = run_main(["snapshots"], env, capsys)
    assert code == 2
    assert "CARETAKER_PASSWORD='***': git repositories store the volume as browsable files" in str(logs[-1])


def test_a_new_repository_needs_a_password_or_the_opt_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_file(tmp_path / "data" / "a", b"1")
    env = {"CARETAKER_REPOSITORY": (tmp_path / "repo").as_uri(), "CARETAKER_PATH": str(tmp_path / "data")}
    code, _, logs = run_main(["backup"], env, capsys)
    assert code == 2
    assert "new repositories are encrypted" in str(logs[-1])
    code, _, logs = run_main(["backup", "--insecure-no-encryption"], env, capsys)
    assert code == 0
    assert any(e["event"] == "repository.created_unencrypted" for e in logs)
    code, out, _ = run_main(["snapshots", "--json"], env, capsys)
    assert json.loads(out)[0]["encrypted"] is False
    assert main(["snapshots"], env) == 0
    assert f"repository {(tmp_path / 'repo').as_uri()}: NOT ENCRYPTED" in capsys.readouterr().out


def test_key_commands_with_the_default_costs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Created by the command line: Argon2id with 64 MiB, 3 passes, 4 lanes."""
    write_file(tmp_path / "data" / "a", b"1")
    repo = tmp_path / "repo"
    env = env_for(repo, CARETAKER_PATH=str(tmp_path / "data"))
    assert run_main(["backup"], env, capsys)[0] == 0
    code, out, _ = run_main(["key", "list", "--json"], env, capsys)
    (slot,) = json.loads(out)
    assert code == 0
    assert slot["current"] is True
    assert slot["kdf"] == {"name": "argon2id", "memory_kib": 65536, "iterations": 3, "lanes": 4}
    new = password_file(tmp_path, "a new password", name="new")
    code, out, _ = run_main(["key", "passwd", "--new-password-file", str(new), "--json"], env, capsys)
    assert code == 0
    assert json.loads(out)["removed"] == slot["id"]
    assert run_main(["snapshots"], env, capsys)[0] == 13
    assert run_main(["snapshots"], {**env, "CARETAKER_PASSWORD_FILE": str(new)}, capsys)[0] == 0


def test_key_add_remove_and_their_usage_errors(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = env_for(repo)
    second = password_file(tmp_path, "second", name="second")
    code, out, _ = run_main(["key", "add", "--new-password-file", str(second), "--json"], env, capsys)
    assert code == 0
    added = json.loads(out)["added"]
    listed = json.loads(run_main(["key", "list", "--json"], env, capsys)[1])
    current = next(s["id"] for s in listed if s["current"])
    assert {s["id"] for s in listed} == {added, current}
    assert run_main(["key", "remove", current], env, capsys)[0] == 9
    assert run_main(["key", "remove"], env, capsys)[0] == 2
    assert run_main(["key", "add"], env, capsys)[0] == 2
    assert run_main(["key", "list", added], env, capsys)[0] == 2
    code, _, logs = run_main(["key", "remove", added], env, capsys)
    assert code == 0
    assert logs[-1]["event"] == "key.remove"
    assert run_main(["snapshots"], {**env, "CARETAKER_PASSWORD_FILE": str(second)}, capsys)[0] == 13


def test_key_list_shows_a_slots_host_without_its_control_characters(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A slot's host is whatever its writer said (a bucket writer too): escaped for a terminal."""
    second = password_file(tmp_path, "second", name="second")
    planted = {**env_for(repo), "CARETAKER_POD_NAME": "web\x1b]0;owned\x07-0"}
    assert run_main(["key", "add", "--new-password-file", str(second)], planted, capsys)[0] == 0
    assert main(["key", "list"], env_for(repo)) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\x07" not in out
    assert "web\\x1b]0;owned\\x07-0" in out
