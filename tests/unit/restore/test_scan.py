"""The walk itself (`restore.scan`): descriptors stay few however deep the tree, and a folder
opened again on the way back up must be the very folder that was walked."""

from __future__ import annotations

import os
from pathlib import Path

from restore.excludes import Excludes
from restore.scan import scan
from tests.support.canary import Canary
from tests.support.trees import write_file

DEPTH = 40


def chain(source: Path, depth: int) -> list[str]:
    """Folders l0/l1/... `depth` deep, each holding `a` (before the next level) and `z` (after)."""
    paths = []
    folder = source
    for level in range(depth):
        folder = folder / f"l{level}"
        write_file(folder / "a", b"a")
        write_file(folder / "z", b"z")
        paths.append(folder.relative_to(source).as_posix())
    return paths


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_descriptors_stay_bounded_on_a_deep_tree(source: Path) -> None:
    levels = chain(source, DEPTH)
    before = open_descriptors()
    most = 0
    walked = []
    for item in scan(source, Excludes([]), lambda *_: None, lambda _: None):
        most = max(most, open_descriptors() - before)
        walked.append(item.path)
    assert most <= 18  # the root, 16 levels, and the listing's own while it reads
    assert open_descriptors() == before
    assert walked[-1] == f"{levels[0]}/z"  # the way back up reopened every level
    assert len(walked) == DEPTH * 3


def test_a_folder_replaced_while_closed_is_left_with_what_remains_of_it(source: Path, tmp_path: Path) -> None:
    levels = chain(source, DEPTH)
    canary = Canary(tmp_path / "canary", {"z": b"outside"})
    swapped = source / levels[5]
    vanished: list[str] = []
    walked = []
    for item in scan(source, Excludes([]), lambda *_: None, vanished.append):
        walked.append(item.path)
        if item.path == f"{levels[-1]}/z":  # deepest: level 5 has long been closed
            swapped.rename(tmp_path / "moved-away")
            swapped.symlink_to(canary.path)
    assert vanished == [levels[5]]
    after = walked[walked.index(f"{levels[-1]}/z") + 1 :]
    # The 16 levels still open finish; the closed ones from level 5 down are not opened
    # again (level 5 is a link now), and the walk goes on above them.
    assert after == [f"{levels[n]}/z" for n in [*range(DEPTH - 2, DEPTH - 17, -1), 4, 3, 2, 1, 0]]
    canary.assert_untouched()
