"""Storage that takes no more data, and local repositories that are not there: the exit
codes of the README's table, on real filesystems (small tmpfs mounts, so "full" is real).

- a full or read-only repository filesystem (file:// and a git+file:// remote): exit 12;
- a full data volume under a restore: exit 10, the volume as it was;
- a file:// repository whose parent folder does not exist: exit 5, like a missing bucket,
  even with --allow-empty (it is a typo or an unmounted volume, not a first boot).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from restore.model import STATE_DIR
from tests.support.cli import run_caretaker
from tests.support.git_remotes import bare_repository, git_env
from tests.support.keys import password_env
from tests.support.restore_runs import Repo, assert_reported, restore, sample_tree
from tests.support.trees import write_file

pytestmark = pytest.mark.integration

Mount = Callable[..., Path]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Mount]:
    """Mount small tmpfs filesystems under tmp_path (root only); unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str, size: str = "1m", *, read_only: bool = False) -> Path:
        point = tmp_path / name
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], check=False)
        if done.returncode != 0:
            pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", str(point)], check=False)


def big_tree(root: Path) -> Path:
    write_file(root / "random.bin", os.urandom(3_000_000))
    return root


class TestFullRepository:
    def test_a_full_local_repository_is_exit_12(self, tmpfs, tmp_path):
        repo = tmpfs("repo")
        run = run_caretaker(
            "backup",
            "--repository",
            (repo / "app").as_uri(),
            "--path",
            str(big_tree(tmp_path / "data")),
            environ=password_env(tmp_path),
        )
        assert run.returncode == 12, run.stdout
        assert '"reason": "repository-full"' in run.stdout
        assert "No space left on device" in run.stdout

    def test_a_read_only_local_repository_is_exit_12(self, tmpfs, tmp_path):
        repo = tmpfs("repo", read_only=True)
        run = run_caretaker(
            "backup", "--repository", repo.as_uri(), "--path", str(sample_tree(tmp_path / "data")), environ={}
        )
        assert run.returncode == 12, run.stdout
        assert "Read-only file system" in run.stdout

    def test_a_full_git_remote_is_exit_12(self, tmpfs, tmp_path):
        remote = bare_repository(tmpfs("remote") / "app.git")
        env = git_env(tmp_path / "state")
        run = run_caretaker(
            "backup",
            "--repository",
            f"git+file://{remote}",
            "--path",
            str(big_tree(tmp_path / "data")),
            environ=env,
        )
        assert run.returncode == 12, run.stdout
        assert '"reason": "repository-full"' in run.stdout


class TestFullVolume:
    def test_a_restore_into_a_full_volume_is_exit_10_and_leaves_it_as_it_was(self, tmpfs, tmp_path):
        repo = Repo((tmp_path / "repo").as_uri(), password_env(tmp_path))
        repo.backup(big_tree(tmp_path / "source"))
        target = tmpfs("volume") / "data"
        target.mkdir()
        run = restore(target, repo)
        assert_reported(run, "failed", 10)
        assert "not enough space" in run.outcome.error
        assert os.listdir(target) == [STATE_DIR]


class TestLocalRepositoryThatIsNotThere:
    def test_a_missing_parent_folder_is_exit_5_not_a_first_boot(self, target, tmp_path):
        repo = Repo((tmp_path / "typo" / "app").as_uri(), {})
        run = restore(target, repo, "--allow-empty")
        assert_reported(run, "failed", 5)
        assert f"no such folder {tmp_path / 'typo'}" in run.outcome.error
        assert not (tmp_path / "typo").exists()

    def test_a_missing_repository_in_an_existing_folder_is_a_first_boot(self, target, tmp_path):
        run = restore(target, Repo((tmp_path / "app").as_uri(), {}), "--allow-empty")
        assert_reported(run, "first-boot", 0)

    def test_a_backup_does_not_create_the_missing_parent(self, tmp_path):
        run = run_caretaker(
            "backup",
            "--repository",
            (tmp_path / "typo" / "app").as_uri(),
            "--path",
            str(sample_tree(tmp_path / "data")),
            environ={},
        )
        assert run.returncode == 5, run.stdout
        assert not (tmp_path / "typo").exists()


class TestNamedSnapshotOnAPopulatedVolume:
    def test_it_is_skipped_saying_that_force_is_needed(self, target, tmp_path):
        repo = Repo((tmp_path / "repo").as_uri(), password_env(tmp_path))
        snapshot = repo.backup(sample_tree(tmp_path / "source"))
        write_file(target / "app.db", b"mine")
        run = restore(target, repo, "--snapshot", snapshot.id)
        assert_reported(run, "skipped", 0)
        assert (
            run.outcome.reason
            == f"target is not empty; --snapshot {snapshot.id} not restored (--force replaces the data)"
        )
        assert (target / "app.db").read_bytes() == b"mine"
        forced = restore(target, repo, "--snapshot", snapshot.id, "--force")
        assert_reported(forced, "restored", 0)
