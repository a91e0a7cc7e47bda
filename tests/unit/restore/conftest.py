from __future__ import annotations

from pathlib import Path

import pytest

from restore.backends.local import LocalStore
from restore.snapshots.engine import Engine
from tests.conftest import FakeClock
from tests.support.keys import UNENCRYPTED


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "repo")


@pytest.fixture
def engine(store: LocalStore, clock: FakeClock) -> Engine:
    return Engine(store, encryption=UNENCRYPTED, clock=clock, owner="test")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
