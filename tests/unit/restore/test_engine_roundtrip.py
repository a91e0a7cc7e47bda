"""Backup then restore gives back the same tree: content, types, modes, mtimes, links."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from restore.backends.local import LocalStore
from restore.model import BackupOptions
from restore.snapshots.engine import Engine
from tests.conftest import FakeClock
from tests.support.keys import UNENCRYPTED
from tests.support.trees import PAST_NS, describe, write_file

_NAMES = st.text(alphabet="abcdefghij_-. é", min_size=1, max_size=8).filter(lambda n: n not in {".", ".."})


@st.composite
def trees(draw: st.DrawFn) -> list[tuple[str, str, object]]:
    entries: list[tuple[str, str, object]] = []
    dirs = [""]
    for _ in range(draw(st.integers(0, 25))):
        parent = draw(st.sampled_from(dirs))
        name = draw(_NAMES)
        path = f"{parent}/{name}".lstrip("/")
        if any(e[0] == path or path.startswith(e[0] + "/") for e in entries if e[1] != "dir"):
            continue
        if any(e[0] == path for e in entries):
            continue
        kind = draw(st.sampled_from(["file", "file", "dir", "link", "empty"]))
        if kind == "dir":
            dirs.append(path)
            entries.append((path, "dir", draw(st.sampled_from([0o755, 0o700, 0o750]))))
        elif kind == "link":
            entries.append((path, "link", draw(st.sampled_from(["target", "../x", "/abs/path", name]))))
        else:
            size = 0 if kind == "empty" else draw(st.integers(0, 3 * 1024 * 1024 + 7))
            seed = draw(st.integers(0, 3))  # few seeds: identical contents dedupe
            entries.append((path, "file", (size, seed, draw(st.sampled_from([0o644, 0o600, 0o755])))))
    return entries


def _materialize(root: Path, entries: list[tuple[str, str, object]]) -> None:
    for path, kind, extra in entries:
        full = root / path
        if kind == "dir":
            full.mkdir(parents=True, exist_ok=True)
        elif kind == "link":
            full.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(str(extra), full)
        else:
            size, seed, mode = extra  # type: ignore[misc]
            write_file(
                full,
                (bytes([seed]) * 997 + os.urandom(3))[:1000] * (size // 1000) + b"x" * (size % 1000),
                mode=mode,
            )
    for path, kind, extra in reversed(entries):
        full = root / path
        if kind == "dir":
            full.chmod(extra)  # type: ignore[arg-type]
        os.utime(full, ns=(PAST_NS, PAST_NS), follow_symlinks=False)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees())
def test_round_trip_is_identical(entries: list[tuple[str, str, object]]) -> None:
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        source, dest = root / "src", root / "dst"
        source.mkdir()
        dest.mkdir()
        _materialize(source, entries)
        engine = Engine(LocalStore(root / "repo"), encryption=UNENCRYPTED, clock=FakeClock(), owner="t")
        result = engine.backup(source, BackupOptions(allow_empty=True))
        engine.restore(result.snapshot.id, dest)
        assert describe(dest) == describe(source)


def test_counts_and_json_fields(engine: Engine, source: Path) -> None:
    write_file(source / "a.txt", b"hello")
    (source / "empty").mkdir()
    os.symlink("a.txt", source / "link")
    info = engine.backup(source, BackupOptions()).snapshot
    listed = engine.snapshots()
    assert [s.id for s in listed] == [info.id]
    assert (info.files, info.dirs, info.bytes) == (1, 1, 5)
    assert set(info.to_json()) >= {"id", "time", "files", "bytes"}


def test_symlinks_are_stored_not_followed(engine: Engine, source: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write_file(outside / "secret", b"not part of the volume")
    os.symlink(outside, source / "escape")
    result = engine.backup(source, BackupOptions())
    assert result.stats.files == 0
    dest = tmp_path / "dest"
    dest.mkdir()
    engine.restore(result.snapshot.id, dest)
    assert os.readlink(dest / "escape") == str(outside)


def test_special_files_are_skipped_with_a_warning(engine: Engine, source: Path) -> None:
    from structlog.testing import capture_logs

    os.mkfifo(source / "pipe")
    write_file(source / "kept", b"1")
    with capture_logs() as logs:
        result = engine.backup(source, BackupOptions())
    assert result.stats.skipped_special == 1
    assert result.stats.files == 1
    assert any(e["event"] == "backup.skipped_special" and e["path"] == "pipe" for e in logs)


def test_excludes_and_state_folder_are_not_stored(engine: Engine, source: Path, tmp_path: Path) -> None:
    write_file(source / "keep.txt", b"1")
    write_file(source / "skip.tmp", b"2")
    write_file(source / "cache" / "x", b"3")
    write_file(source / ".caretaker" / "restore-result.json", b"{}")
    result = engine.backup(source, BackupOptions(excludes=("*.tmp", "cache")))
    dest = tmp_path / "dest"
    dest.mkdir()
    engine.restore(result.snapshot.id, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["keep.txt"]


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership is restored only when running as root")
def test_owner_is_restored_as_root(engine: Engine, source: Path, tmp_path: Path) -> None:
    path = write_file(source / "owned", b"x")
    os.chown(path, 1234, 5678)
    result = engine.backup(source, BackupOptions())
    dest = tmp_path / "dest"
    dest.mkdir()
    engine.restore(result.snapshot.id, dest)
    info = (dest / "owned").stat()
    assert (info.st_uid, info.st_gid) == (1234, 5678)


def test_source_must_be_a_directory(engine: Engine, tmp_path: Path) -> None:
    from restore.errors import LocalIOError

    with pytest.raises(LocalIOError, match="not-there"):
        engine.backup(tmp_path / "not-there", BackupOptions())
    shutil.rmtree(tmp_path, ignore_errors=True)
