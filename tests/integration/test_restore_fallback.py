"""Verify-then-fall-back on real repositories: damage the newest snapshot's stored data and
`caretaker restore` must skip it, say so, and restore the previous one."""

from __future__ import annotations

import os

import pytest

from restore.model import STATE_DIR
from tests.support.restore_runs import Repo, assert_reported, restore, sample_tree
from tests.support.trees import describe

pytestmark = pytest.mark.integration


def data_keys(repo: Repo) -> set[str]:
    opened = repo.open()
    try:
        store = getattr(opened, "store", None)
        if store is None:
            pytest.skip("this backend has no object store to damage (git verifies with git fsck)")
        return {o.key for o in store.list("data/")}
    finally:
        opened.close()


def damage(repo: Repo, keys: set[str], how: str) -> None:
    opened = repo.open()
    try:
        for key in sorted(keys):
            if how == "delete":
                opened.store.delete([key])
            else:
                data = bytearray(opened.store.get(key))
                data[len(data) // 2] ^= 0xFF
                opened.store.put(key, bytes(data))
    finally:
        opened.close()


@pytest.fixture
def two_snapshots(repo, tmp_path):
    """(older snapshot and its source, newer snapshot whose new data is damaged by the test)."""
    old_source = sample_tree(tmp_path / "old", "v1")
    old = repo.backup(old_source)
    before = data_keys(repo)
    new = repo.backup(sample_tree(tmp_path / "new", "v2"))
    return old, old_source, new, data_keys(repo) - before


class TestFallback:
    @pytest.mark.parametrize("how", ["flip", "delete"])
    def test_damaged_newest_snapshot_falls_back_to_the_previous(self, repo, target, two_snapshots, how):
        old, old_source, new, new_keys = two_snapshots
        assert new_keys
        damage(repo, new_keys, how)
        run = restore(target, repo)
        assert_reported(run, "restored", 0)
        assert (run.outcome.snapshot, run.outcome.skipped_snapshots) == (old.id, (new.id,))
        assert run.termination["skipped_snapshots"] == [new.id]
        (rejected,) = run.event("restore.snapshot_rejected")
        assert rejected["snapshot"] == new.id
        assert any(key.rsplit("/", 1)[-1] in rejected["error"] for key in new_keys), rejected["error"]
        assert describe(target) == describe(old_source)
        assert not (target / STATE_DIR / "staging").exists()

    def test_explicit_snapshot_does_not_fall_back(self, repo, target, two_snapshots):
        _, _, new, new_keys = two_snapshots
        damage(repo, new_keys, "flip")
        run = restore(target, repo, "--snapshot", new.id)
        assert_reported(run, "failed", 7)
        assert new.id in run.termination["error"]
        assert os.listdir(target) == [STATE_DIR]
        assert sorted(os.listdir(target / STATE_DIR)) == ["restore-result.json"]

    def test_no_good_snapshot_within_the_fallbacks_is_exit_7(self, repo, target, two_snapshots):
        _, _, new, new_keys = two_snapshots
        damage(repo, new_keys, "flip")
        run = restore(target, repo, "--max-fallbacks", "0")
        assert_reported(run, "failed", 7)
        assert run.outcome.skipped_snapshots == (new.id,)
        assert os.listdir(target) == [STATE_DIR]
