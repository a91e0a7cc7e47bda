"""`caretaker restore --include`: a file, a folder and a glob come back byte for byte, on every
backend, into a new folder or next to existing data, never over it without --force and
never through a symlink the app planted; bad patterns are refused before anything runs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from restore.initcontainer.outcome import result_path
from tests.support.restore_runs import Repo, restore
from tests.support.trees import age_tree, describe, write_file

pytestmark = pytest.mark.integration


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    write_file(root / "app.db", os.urandom(200_000))
    write_file(root / "conf" / "app.yaml", b"answer: 42\n", mode=0o600)
    write_file(root / "conf" / "keys" / "server.key", b"secret", mode=0o400)
    write_file(root / "logs" / "a.log", b"log a\n" * 1000)
    write_file(root / "logs" / "old" / "b.log", b"log b\n")
    write_file(root / "logs" / "old" / "c.txt", b"not a log")
    (root / "current").symlink_to("conf/app.yaml")
    age_tree(root)
    return root


@pytest.fixture
def backed_up(repo: Repo, source: Path) -> Repo:
    repo.backup(source)
    return repo


def subset(tree: dict[str, tuple[Any, ...]], paths: set[str]) -> dict[str, tuple[Any, ...]]:
    return {path: info for path, info in tree.items() if path in paths}


CHOSEN = {
    "file": (["conf/app.yaml"], {"conf", "conf/app.yaml"}),
    "folder": (["logs/old"], {"logs", "logs/old", "logs/old/b.log", "logs/old/c.txt"}),
    "glob": (["*.log", "current"], {"logs", "logs/a.log", "logs/old", "logs/old/b.log", "current"}),
}


def test_a_file_a_folder_and_a_glob_come_back_byte_identical_into_new_folders(
    backed_up: Repo, source: Path, tmp_path: Path
) -> None:
    for name, (include, paths) in CHOSEN.items():
        target = tmp_path / "volume" / name / "here"
        run = restore(target, backed_up, *[arg for path in include for arg in ("--include", path)])
        assert run.code == 0, run.stdout
        assert describe(target) == subset(describe(source), paths), name
        assert not (target / ".caretaker").exists()  # a new folder gets no state folder
        assert run.event("restore.outcome")[0]["reason"].startswith("partial")


def test_existing_paths_are_refused_and_with_force_set_aside(
    backed_up: Repo, source: Path, target: Path
) -> None:
    write_file(target / "conf" / "app.yaml", b"edited since\n")
    write_file(target / "conf" / "local.yaml", b"only here\n")
    refused = restore(target, backed_up, "--include", "conf/app.yaml", "--include", "app.db")
    assert refused.code == 9
    assert "conf/app.yaml" in refused.event("restore.failed")[0]["error"]
    assert not (target / "app.db").exists()  # nothing was moved in
    forced = restore(target, backed_up, "--include", "conf/app.yaml", "--include", "app.db", "--force")
    assert forced.code == 0, forced.stdout
    assert (target / "conf" / "app.yaml").read_bytes() == b"answer: 42\n"
    assert (target / "app.db").read_bytes() == (source / "app.db").read_bytes()
    assert (target / "conf" / "local.yaml").read_bytes() == b"only here\n"  # its neighbour stays
    [aside] = (target / ".caretaker" / "quarantine").iterdir()
    assert (aside / "conf" / "app.yaml").read_bytes() == b"edited since\n"
    assert not result_path(target).exists()  # a user's action, not the init container's


def test_a_symlink_planted_where_a_folder_was_is_never_followed(
    backed_up: Repo, target: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (target / "conf").symlink_to(outside)
    refused = restore(target, backed_up, "--include", "conf/keys")
    assert refused.code == 9
    forced = restore(target, backed_up, "--include", "conf/keys", "--force")
    assert forced.code == 0, forced.stdout
    assert list(outside.iterdir()) == []
    assert (target / "conf").is_dir()
    assert not (target / "conf").is_symlink()
    assert (target / "conf" / "keys" / "server.key").read_bytes() == b"secret"
    [aside] = (target / ".caretaker" / "quarantine").iterdir()
    assert (aside / "conf").is_symlink()


@pytest.mark.parametrize("repository_url", ["local"], indirect=True)
@pytest.mark.parametrize(
    ("args", "code", "named"),
    [
        (["--include", "../../etc/passwd"], 2, "include='../../etc/passwd'"),
        (["--include", ".caretaker/restore-result.json"], 2, "include='.caretaker/restore-result.json'"),
        (["--include", "conf", "--exclude", "a/../../b"], 2, "exclude='a/../../b'"),
        (["--include", "/etc/passwd"], 3, "nothing"),
        (["--include", "conf", "--snapshot-path", "/elsewhere"], 3, "snapshot-path=/elsewhere"),
    ],
)
def test_bad_requests_are_refused_naming_them(
    backed_up: Repo, target: Path, args: list[str], code: int, named: str
) -> None:
    run = restore(target, backed_up, *args)
    assert run.code == code
    assert named in run.stdout
    assert os.listdir(target) == []  # not even a result file: a user's action


@pytest.mark.parametrize("repository_url", ["local"], indirect=True)
def test_a_dry_run_names_what_would_be_moved_in_and_replaced(backed_up: Repo, target: Path) -> None:
    write_file(target / "app.db", b"newer")
    run = restore(target, backed_up, "--dry-run", "--json", "--include", "app.db", "--include", "conf/keys")
    assert run.code == 0, run.stdout
    plan = json.loads(run.stdout[run.stdout.index("{\n") :])
    assert (plan["move_in"], plan["replace"], plan["refused"]) == (["app.db", "conf"], ["app.db"], True)
    assert os.listdir(target) == ["app.db"]


@pytest.mark.parametrize("repository_url", ["local"], indirect=True)
def test_exclude_alone_leaves_paths_out_of_the_init_containers_restore(
    backed_up: Repo, source: Path, target: Path
) -> None:
    run = restore(target, backed_up, "--exclude", "*.log")
    assert run.code == 0, run.stdout
    assert run.outcome is not None
    assert run.outcome.outcome == "restored"
    expected = {p for p in describe(source) if not p.endswith(".log")}
    assert describe(target) == subset(describe(source), expected)
