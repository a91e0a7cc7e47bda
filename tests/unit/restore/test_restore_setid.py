"""Set-ID bits and special files from a snapshot (docs/restore.md, "What a restore will not write").

setuid/setgid bits of restored files are stripped unless `--keep-setid`
(`CARETAKER_KEEP_SETID`), by the engine and the git backend alike; a folder's setgid bit
(group inheritance) is kept. Device
nodes, FIFOs and sockets are never restored: a manifest naming one is refused.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from caretaker.cli import main
from restore.backends.local import LocalStore
from restore.errors import IntegrityError
from restore.model import BackupOptions
from restore.snapshots.engine import Engine
from tests.support.forge import forge_blob, forge_snapshot, line
from tests.support.git_remotes import file_remote, git_env
from tests.support.keys import password_env, sealed
from tests.support.trees import write_file


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(params=["file", "git"])
def env(tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """A repository (the engine's, or a git remote over file://) whose snapshot holds a
    setuid+setgid program and a setgid folder."""
    source = tmp_path / "data"
    write_file(source / "bin" / "tool", b"#!/bin/sh\n", mode=0o6755)
    (source / "shared").mkdir()
    (source / "shared").chmod(0o2775)
    if request.param == "file":
        # An encrypted repository, as users get it; created here with the tests' cheap key costs.
        Engine(LocalStore(tmp_path / "repo"), encryption=sealed(), owner="test").backup(
            source, BackupOptions()
        )
        url, access = f"file://{tmp_path / 'repo'}", password_env(tmp_path)
    else:
        url, access = file_remote(tmp_path), git_env(tmp_path / "state")  # git takes no password
    env = {"CARETAKER_REPOSITORY": url, "CARETAKER_PATH": str(source), **access}
    assert main(["backup", "--log-level", "warning"], env) == 0
    return env


def _restore(env: dict[str, str], target: Path, *flags: str) -> Path:
    args = ["restore", "--path", str(target), "--termination-log", str(target.parent / "term.log")]
    assert main([*args, *flags, "--log-level", "warning"], env) == 0
    assert json.loads((target / ".caretaker" / "restore-result.json").read_text())["outcome"] == "restored"
    return target


def test_restore_strips_setuid_and_setgid_of_files_by_default(env: dict[str, str], tmp_path: Path) -> None:
    target = _restore(env, tmp_path / "target")
    assert _mode(target / "bin" / "tool") == 0o755
    assert _mode(target / "shared") == 0o2775


@pytest.mark.parametrize("how", ["flag", "env"])
def test_keep_setid_restores_the_bits(env: dict[str, str], tmp_path: Path, how: str) -> None:
    if how == "flag":
        target = _restore(env, tmp_path / "target", "--keep-setid")
    else:
        target = _restore({**env, "CARETAKER_KEEP_SETID": "true"}, tmp_path / "target")
    assert _mode(target / "bin" / "tool") == 0o6755
    assert _mode(target / "shared") == 0o2775


def test_engine_restore_masks_forged_modes(engine: Engine, store: LocalStore, tmp_path: Path) -> None:
    blob = forge_blob(store, b"x")
    snapshot = forge_snapshot(
        store,
        [
            line("setgid", mode=0o2711, size=1, chunks=[blob]),
            line("setuid", mode=0o4700, size=1, chunks=[blob]),
        ],
    )
    for keep, expected in ((False, (0o711, 0o700)), (True, (0o2711, 0o4700))):
        dest = tmp_path / f"dest-{keep}"
        dest.mkdir()
        engine.restore(snapshot, dest, keep_setid=keep)
        assert (_mode(dest / "setgid"), _mode(dest / "setuid")) == expected


@pytest.mark.parametrize(
    ("kind", "what"),
    [("c", "character device"), ("b", "block device"), ("p", "FIFO"), ("s", "socket")],
)
def test_device_nodes_fifos_and_sockets_are_refused(
    engine: Engine, store: LocalStore, tmp_path: Path, kind: str, what: str
) -> None:
    snapshot = forge_snapshot(store, [line("ok.txt"), line("node", kind)])
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(IntegrityError, match=f"manifest entry 'node' is a {what} \\(type '{kind}'\\)"):
        engine.restore(snapshot, dest)
    assert list(dest.iterdir()) == []


def test_a_snapshot_with_a_fifo_fails_the_restore_with_exit_7(store: LocalStore, tmp_path: Path) -> None:
    snapshot = forge_snapshot(store, [line("ok.txt"), line("pipe", "p")])
    target = tmp_path / "target"
    target.mkdir()
    env = {"CARETAKER_REPOSITORY": f"file://{tmp_path / 'repo'}", "CARETAKER_PATH": str(target)}
    args = ["restore", "--snapshot", snapshot, "--termination-log", str(tmp_path / "term.log")]
    assert main([*args, "--log-level", "warning"], env) == 7
    result = json.loads((target / ".caretaker" / "restore-result.json").read_text())
    assert result["outcome"] == "failed"
    assert "manifest entry 'pipe' is a FIFO" in (tmp_path / "term.log").read_text()
    assert sorted(p.name for p in target.iterdir()) == [".caretaker"]
