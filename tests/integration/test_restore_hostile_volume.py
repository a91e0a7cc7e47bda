"""`caretaker restore` on a volume the app has tampered with (issue 14): each attack the app
could plant in caretaker's state folder, run against the real command.

Every test keeps a canary folder beside the volume, shaped like caretaker's state, and
asserts it is untouched to the byte and the mtime; every planted entry is left where it
was; the run stops with exit 11 (`unsafe-volume`) naming the entry — on an empty volume,
on a populated one (a skipped restore writes the result file), with --force and with
--check-cmd, whose command never runs on such a volume.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from restore.model import STATE_DIR
from tests.support.canary import VICTIM, Canary
from tests.support.keys import password_env
from tests.support.restore_runs import Repo, Run, assert_reported, restore, sample_tree
from tests.support.trees import describe, write_file

pytestmark = pytest.mark.integration

STAMP = "20260101T000000Z"


@pytest.fixture
def local(tmp_path: Path) -> Repo:
    repo = Repo((tmp_path / "repository").as_uri(), password_env(tmp_path))
    repo.backup(sample_tree(tmp_path / "source"))
    return repo


@pytest.fixture
def canary(tmp_path: Path) -> Canary:
    return Canary(tmp_path / "volume" / "canary")


@pytest.fixture
def state(target: Path) -> Path:
    path = target / STATE_DIR
    path.mkdir()
    return path


def populate(target: Path) -> dict[str, tuple[object, ...]]:
    write_file(target / "app.db", b"the app's own data")
    return describe(target)


def assert_unsafe(run: Run, *named: str) -> None:
    """Exit 11 in the exit code, the outcome event and the termination log, naming each entry."""
    assert run.code == 11, run.stdout
    assert run.termination is not None
    assert (run.termination["outcome"], run.termination["exit_code"]) == ("failed", 11)
    [final] = run.event("restore.outcome")
    assert (final["outcome"], final["exit_code"], final["reason"]) == ("failed", 11, "unsafe-volume")
    for name in named:
        assert name in final["error"], final["error"]


MODES = {
    "empty volume": (False, ()),
    "populated, skipped": (True, ()),
    "populated, --force": (True, ("--force",)),
    "populated, --check-cmd": (True, ("--check-cmd", "touch check-ran")),
}


@pytest.mark.parametrize("mode", MODES)
def test_state_folder_linked_outside(local, target, canary, mode):
    """`.caretaker` a symlink to a folder outside: nothing is staged, cleaned or written there."""
    populated, args = MODES[mode]
    before = populate(target) if populated else {}
    os.symlink(canary.path, target / STATE_DIR)
    run = restore(target, local, *args)
    assert_unsafe(run, f"{target / STATE_DIR} is a symlink to '{canary.path}'")
    canary.assert_untouched()
    assert os.readlink(target / STATE_DIR) == str(canary.path)
    assert describe(target) == before
    assert run.event("restore.result_unwritable")


@pytest.mark.parametrize("mode", MODES)
def test_result_temp_file_linked_to_an_outside_file(local, target, state, canary, mode):
    """The outcome JSON is never written through `.caretaker/restore-result.tmp`."""
    populated, args = MODES[mode]
    before = populate(target) if populated else {}
    os.symlink(canary.victim, state / "restore-result.tmp")
    run = restore(target, local, *args)
    assert_unsafe(run, "restore-result.tmp is a symlink")
    canary.assert_untouched()
    assert describe(target) == before
    assert os.readlink(state / "restore-result.tmp") == str(canary.victim)


@pytest.mark.parametrize("args", [("--force",), ("--check-cmd", "false")])
def test_quarantine_linked_outside_keeps_the_apps_data_in_the_volume(local, target, state, canary, args):
    before = populate(target)
    os.symlink(canary.path / "quarantine", state / "quarantine")
    run = restore(target, local, *args)
    assert_unsafe(run, "quarantine is a symlink")
    canary.assert_untouched()
    assert describe(target) == before


def test_staging_linked_outside_on_every_backend(repo, target, state, canary, tmp_path):
    """A naive restore would create `tree/` there and download the snapshot into it."""
    repo.backup(sample_tree(tmp_path / "source"))
    os.symlink(canary.path / "quarantine", state / "staging")
    run = restore(target, repo)
    assert_unsafe(run, "staging is a symlink")
    canary.assert_untouched()
    assert describe(target) == {}


@pytest.mark.parametrize("mode", MODES)
def test_staging_linked_to_a_folder_holding_a_journal(local, target, state, canary, mode):
    """A naive recovery would replay the journal there: move the canary's file into the volume."""
    populated, args = MODES[mode]
    before = populate(target) if populated else {}
    os.symlink(canary.path / "staging", state / "staging")
    run = restore(target, local, *args)
    assert_unsafe(run, "staging is a symlink")
    canary.assert_untouched()
    assert describe(target) == before


def test_dry_run_reports_the_same_stop(local, target, canary):
    os.symlink(canary.path, target / STATE_DIR)
    run = restore(target, local, "--dry-run")
    assert run.code == 11, run.stdout
    canary.assert_untouched()


def test_the_volume_restores_once_the_planted_entry_is_gone(local, target, canary, tmp_path):
    os.symlink(canary.path, target / STATE_DIR)
    assert restore(target, local).code == 11
    (target / STATE_DIR).unlink()
    run = restore(target, local)
    assert_reported(run, "restored", 0)
    assert describe(target) == describe(tmp_path / "source")
    canary.assert_untouched()


def journal(**fields: object) -> dict[str, object]:
    return {
        "version": 1,
        "kind": "restore",
        "source": "staging/tree",
        "aside": "staging/discard",
        "set_aside": ["app.db"],
        "move_in": [VICTIM],
        "snapshot": None,
    } | fields


JOURNALS = {
    "absolute source": (journal(source="{canary}/staging/tree"), None),
    "source climbing out": (journal(source="staging/../../../canary/tree"), None),
    "absolute aside": (journal(aside="{canary}/quarantine"), None),
    "entry name with a slash": (journal(set_aside=["../canary"]), None),
    "names given as a string": (journal(move_in=VICTIM), None),
    "tree a symlink outside": (journal(), "staging/tree"),
    "quarantine folder a symlink outside (rollback source)": (
        journal(kind="rollback", source=f"quarantine/{STAMP}", set_aside=[]),
        f"quarantine/{STAMP}",
    ),
    "quarantine folder a symlink outside (aside)": (
        journal(aside=f"quarantine/{STAMP}"),
        f"quarantine/{STAMP}",
    ),
}


@pytest.mark.parametrize("case", JOURNALS)
def test_planted_journal_never_moves_anything_across_the_volume_edge(local, target, state, canary, case):
    """The journal is refused before any move: the app's data stays, the canary's files stay out."""
    planted, linked = JOURNALS[case]
    before = populate(target)
    (state / "staging").mkdir()
    text = json.dumps(planted).replace("{canary}", str(canary.path))
    (state / "staging" / "journal.json").write_text(text)
    if linked:
        (state / linked).parent.mkdir(parents=True, exist_ok=True)
        target_folder = canary.path / ("tree" if linked == "staging/tree" else f"quarantine/{STAMP}")
        os.symlink(target_folder, state / linked)
    run = restore(target, local)
    assert_unsafe(run)
    canary.assert_untouched()
    assert describe(target) == before
    assert (state / "staging" / "journal.json").read_text() == text


FIFOS = {
    ".caretaker": "",
    ".caretaker/restore-result.json": "restore-result.json is a FIFO",
    ".caretaker/restore-result.tmp": "restore-result.tmp is a FIFO",
    ".caretaker/staging": "staging is a FIFO",
    ".caretaker/staging/journal.json": "journal.json is a FIFO",
    ".caretaker/staging/journal.tmp": "journal.tmp is a FIFO",
}


@pytest.mark.parametrize("where", FIFOS)
def test_fifo_in_place_of_a_state_entry_is_reported_not_opened(local, target, canary, where):
    """A naive open of a FIFO waits for a writer forever; the run must end at once."""
    (target / where).parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(target / where)
    run = restore(target, local, timeout=60)
    assert_unsafe(run, f"{target / where} is a FIFO" if not FIFOS[where] else FIFOS[where])
    canary.assert_untouched()
    assert (target / where).is_fifo()


def test_termination_log_inside_the_volume_is_not_written(local, target):
    run = restore(target, local, "--termination-log", str(target / "termination-log"))
    assert run.code == 0, run.stdout
    [warning] = run.event("restore.termination_log_unwritable")
    assert "inside --path" in warning["error"]
    assert not (target / "termination-log").exists()
