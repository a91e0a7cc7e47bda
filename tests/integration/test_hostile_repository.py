"""What someone who can write to a repository's storage (the bucket, the repository's folder)
can plant that authentication does not cover — the files themselves, key slots before any key
is known, oversized objects, the writer claim — and what `caretaker restore` makes of it:
never a hang past --timeout, never a read that fills memory, and a precise failure or a
fallback."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from restore.model import STATE_DIR
from restore.snapshots.format import CONFIG_KEY
from tests.support.restore_runs import Repo, assert_reported, restore
from tests.support.trees import write_file

pytestmark = [pytest.mark.integration]


def backed_up(repo: Repo, tmp_path: Path) -> None:
    repo.backup(write_file(tmp_path / "source" / "app.conf", b"the real one\n").parent)


def plant_fifo(path: Path) -> None:
    os.mkfifo(path)


def plant_link_to_zero(path: Path) -> None:
    os.symlink("/dev/zero", path)


@pytest.mark.parametrize("repository_url", ["local"], indirect=True)
@pytest.mark.parametrize("plant", [plant_fifo, plant_link_to_zero], ids=["fifo", "link to /dev/zero"])
def test_a_fifo_or_device_link_as_the_config_fails_closed_at_once(
    repo: Repo, target: Path, tmp_path: Path, plant: Callable[[Path], None]
) -> None:
    """Before: a FIFO blocked the restore past --timeout for ever; /dev/zero filled memory."""
    backed_up(repo, tmp_path)
    config = Path(repo.url.removeprefix("file://")) / CONFIG_KEY
    config.unlink()
    plant(config)
    run = restore(target, repo, "--timeout", "20s", timeout=40)
    assert_reported(run, "failed", 7)
    assert run.outcome is not None
    assert "config" in run.outcome.error
    assert os.listdir(target) == [STATE_DIR]
