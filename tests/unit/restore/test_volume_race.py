"""The race of issue 14: while restores run one after another (the real engine writing the
tree, a local repository, the result file written after each), a thread keeps swapping
caretaker's folders in the volume — `.caretaker`, `.caretaker/staging`,
`.caretaker/quarantine` — for symlinks to a canary folder beside the volume, and back.

Whatever the interleaving, nothing outside the volume changes; each run ends restored or
skipped (0), or stopped on the swapped entry (11), or on an entry that vanished under it
(10) — never a crash, never a write through a link. Once the swapping stops, the next run
finishes cleanly. (Swapping `staging/tree` itself is the tree writer's to defend: it opens
the tree with O_NOFOLLOW and writes below it only through descriptors.)
"""

from __future__ import annotations

import contextlib
import os
import time

import structlog

from restore.backends.local import LocalStore
from restore.errors import CaretakerError
from restore.initcontainer.action import Effects, prepare_volume
from restore.initcontainer.decision import RestoreSettings
from restore.initcontainer.outcome import write_result
from restore.model import BackupOptions
from restore.snapshots.engine import Engine
from tests.support.canary import Canary
from tests.support.keys import sealed
from tests.support.racing import Swapper
from tests.support.trees import write_file

SWAPPED = {
    ".caretaker": "",
    ".caretaker/staging": "staging",
    ".caretaker/quarantine": "quarantine",
}


def test_swapping_state_folders_for_links_never_reaches_outside(tmp_path):
    canary = Canary(tmp_path / "canary")
    volume = tmp_path / "volume"
    volume.mkdir()
    source = tmp_path / "source"
    for n in range(20):
        write_file(source / f"dir{n % 4}" / f"file{n}", os.urandom(2000))
    store = LocalStore(tmp_path / "repository")
    encryption = sealed()
    Engine(store, encryption=encryption, owner="test").backup(source, BackupOptions())
    effects = Effects(
        open_repository=lambda _deadline: Engine(store, encryption=encryption, owner="test"),
        log=structlog.get_logger(),
    )

    swapper = Swapper({volume / name: canary.path / inside for name, inside in SWAPPED.items()})
    swapper.start()
    codes: list[int] = []
    started = time.monotonic()
    try:
        while len(codes) < 40 or time.monotonic() - started < 3:
            force = len(codes) % 2 == 1  # every other run sets the restored copy aside into quarantine
            outcome = prepare_volume(RestoreSettings(path=volume, force=force), effects)
            codes.append(outcome.exit_code)
            assert outcome.exit_code in (0, 10, 11), outcome
            with contextlib.suppress(OSError, CaretakerError):
                write_result(volume, outcome)
    finally:
        swapper.stop.set()
        swapper.join()

    canary.assert_untouched()
    assert swapper.swaps
    assert 0 in codes
    assert 11 in codes, "no run met a swapped folder: the race was not exercised"
    final = prepare_volume(RestoreSettings(path=volume), effects)
    assert final.exit_code == 0, final
    canary.assert_untouched()
