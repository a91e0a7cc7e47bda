"""Git backups of a volume the app keeps changing under them (issue 14, the reading side).

Git is given no path of the volume: caretaker's walk opens each file through its folder's
descriptor and streams the bytes into `git fast-import`. So a folder swapped for a link to
a service-account-shaped canary must never bring its bytes into any object git stored (on
the remote or in the state dir), a FIFO swapped in must never block a backup, and the canary
stays untouched. Real git, a bare repository over file://.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from restore.backends.git import tree
from restore.backends.registry import OpenOptions, open_repository
from restore.model import BackupOptions, BackupResult
from restore.repository import Repository
from tests.support.canary import Canary
from tests.support.git_remotes import file_remote, git_env
from tests.support.racing import Swapper, after_look, in_thread
from tests.support.trees import describe, restored, write_file

pytestmark = pytest.mark.integration

MARKER = b"caretaker-canary: a service-account token from outside the volume"
NAMES = ("ca.crt", "namespace", "token", *(f"f{n:03}" for n in range(30)))


@pytest.fixture
def canary(tmp_path: Path) -> Canary:
    return Canary(tmp_path / "canary", {f"serviceaccount/{name}": MARKER for name in NAMES})


@pytest.fixture
def source(tmp_path: Path) -> Path:
    for name in NAMES:
        write_file(tmp_path / "data" / "app" / name, f"the app's own {name}\n".encode())
        write_file(tmp_path / "data" / "app" / "sub" / name, f"the app's own sub/{name}\n".encode())
    write_file(tmp_path / "data" / "config", b"the app's config\n")
    return tmp_path / "data"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return file_remote(tmp_path)


def pod(url: str, state: Path) -> Repository:
    return open_repository(url, OpenOptions(environ=git_env(state)))


def objects_holding_marker(git_dir: Path) -> int:
    """How many objects of `git_dir` (any, reachable or not, packed or loose) hold MARKER."""
    every = subprocess.run(
        ["git", "--git-dir", str(git_dir), "cat-file", "--batch-all-objects", "--batch", "--unordered"],
        capture_output=True,
        check=True,
    ).stdout
    return every.count(MARKER)


def test_links_swapped_in_during_git_backups_never_bring_outside_bytes_in(
    tmp_path: Path, url: str, canary: Canary, source: Path
) -> None:
    outside = canary.path / "serviceaccount"
    links = {source / "app": outside, source / "app" / "sub": outside, source / "config": outside / "token"}
    results: list[BackupResult] = []
    bare = Path(url.removeprefix("git+file://").partition("#")[0])
    with Swapper(links) as swapper:
        started = time.monotonic()
        # At least 8 backups over 3 s; on a loaded machine more, until one met a link (30 s).
        while len(results) < 8 or time.monotonic() - started < 3 or not links_seen(bare):
            # A state dir of its own each time: no stat cache, every file is read.
            results.append(pod(url, tmp_path / f"state{len(results)}").backup(source, BackupOptions()))
            if time.monotonic() - started > 30:
                break
    assert swapper.swaps > 50
    assert objects_holding_marker(bare) == 0
    for number in range(len(results)):
        assert objects_holding_marker(next((tmp_path / f"state{number}").glob("*/backup.git"))) == 0
    assert links_seen(bare), "no backup met a swapped-in link: the race was not exercised"
    canary.assert_untouched()


def links_seen(bare: Path) -> int:
    """How many symlinks the backups on the branch recorded (each met a swapped-in link)."""
    return git(bare, "log", "--format=", "--raw", "-r", "backups").count(" 120000 ")


def git(git_dir: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), *args], capture_output=True, text=True, check=True
    ).stdout


def test_fifo_swapped_in_never_blocks_a_git_backup(
    tmp_path: Path, url: str, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def swap() -> None:
        (source / "config").unlink()
        os.mkfifo(source / "config")

    after_look(monkeypatch, tree, "config", swap)
    with capture_logs() as logs:
        result = in_thread(lambda: pod(url, tmp_path / "state").backup(source, BackupOptions()))
    assert result.stats.changed_during_read == 1
    warned = [e for e in logs if e["event"] == "backup.file_changed_during_read"]
    assert [(e["path"], e["detail"]) for e in warned] == [
        ("config", "not stored: a FIFO was there instead each time it was opened")
    ]
    files = restored(pod(url, tmp_path / "restorer"), result.snapshot.id, tmp_path / "dest")
    assert "config" not in files
    assert files["app/token"][0] == "file"


def test_folder_swapped_after_the_walk_entered_it_is_read_where_it_now_is(
    tmp_path: Path, url: str, canary: Canary, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def swap() -> None:
        (source / "app").rename(source / "app.moved")
        (source / "app").symlink_to(canary.path / "serviceaccount")

    after_look(monkeypatch, tree, "app", swap)
    result = pod(url, tmp_path / "state").backup(source, BackupOptions())
    restored(pod(url, tmp_path / "restorer"), result.snapshot.id, tmp_path / "dest")
    assert (tmp_path / "dest" / "app" / "token").read_bytes() == b"the app's own token\n"
    canary.assert_untouched()


def test_unchanged_files_are_not_read_again_and_changed_ones_are(
    tmp_path: Path, url: str, source: Path
) -> None:
    repository = pod(url, tmp_path / "state")
    first = repository.backup(source, BackupOptions())
    assert first.stats.bytes_read == first.stats.bytes_total
    write_file(source / "config", b"changed\n")
    second = repository.backup(source, BackupOptions())
    assert (second.stats.files_changed, second.stats.bytes_read) == (1, len(b"changed\n"))
    assert restored(pod(url, tmp_path / "restorer"), second.snapshot.id, tmp_path / "dest") == describe(
        source
    )
