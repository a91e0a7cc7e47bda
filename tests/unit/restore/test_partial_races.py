"""`caretaker restore --include --force` while the app changes the paths being restored: an
entry to replace that vanishes during the download ends the run with exit 10, like any other
change under it, never a crash (exit 1)."""

from __future__ import annotations

import os
import pathlib

import pytest
import structlog

from restore.backends.local import LocalStore
from restore.errors import LocalIOError
from restore.initcontainer.action import Effects
from restore.initcontainer.decision import RestoreSettings
from restore.initcontainer.partial import restore_paths
from restore.model import BackupOptions
from restore.snapshots.engine import Engine
from tests.support.keys import sealed
from tests.support.trees import write_file


def test_an_entry_to_replace_that_vanishes_during_the_download_is_exit_10(tmp_path: pathlib.Path) -> None:
    source, volume = tmp_path / "source", tmp_path / "volume"
    write_file(source / "conf" / "app.yaml", b"answer: 42\n")
    write_file(source / "app.db", os.urandom(1000))
    write_file(volume / "app.db", b"the app's")
    store, encryption = LocalStore(tmp_path / "repository"), sealed()
    Engine(store, encryption=encryption, owner="test").backup(source, BackupOptions())

    class AppDeletesDuringDownload(Engine):
        def restore(self, *args, **kwargs):
            (volume / "app.db").unlink()  # the app, while caretaker downloads
            return super().restore(*args, **kwargs)

    effects = Effects(
        open_repository=lambda _deadline: AppDeletesDuringDownload(
            store, encryption=encryption, owner="test"
        ),
        log=structlog.get_logger(),
    )
    settings = RestoreSettings(path=volume, force=True, include=("app.db", "conf"))
    with pytest.raises(LocalIOError, match=r"app\.db vanished during the restore"):
        restore_paths(settings, settings.selection(), effects)
    assert not (volume / ".caretaker" / "staging").exists()
