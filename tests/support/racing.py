"""The app racing caretaker on the shared volume: swapping entries for links while a run
works, or at a chosen moment of a backup's walk; and a check that a run never blocks."""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Self, TypeVar

import pytest

from restore.scan import Scanned

T = TypeVar("T")


class Swapper(threading.Thread):
    """Puts a symlink in place of an entry of the volume for a moment (`links`: entry ->
    where its link points), then puts the entry back and leaves it a random while (so runs
    meet links before, during and after their steps, not only at their first look); counts
    the swaps it managed."""

    def __init__(self, links: Mapping[Path, Path], *, seed: int = 14) -> None:
        super().__init__(daemon=True)
        self.links = list(links.items())
        self.stop = threading.Event()
        self.swaps = 0
        self.random = random.Random(seed)

    def run(self) -> None:
        while not self.stop.is_set():
            path, to = self.random.choice(self.links)
            with contextlib.suppress(OSError):
                self.swap(path, to)
            time.sleep(self.random.uniform(0, 0.004))

    def swap(self, path: Path, to: Path) -> None:
        aside = path.with_name(path.name + ".swapped")
        real = not path.is_symlink() and path.exists()
        if real:
            path.rename(aside)
        try:
            os.symlink(to, path)
            self.swaps += 1
            time.sleep(0.0003)
            path.unlink()
        finally:
            if real:
                with contextlib.suppress(OSError):
                    aside.rename(path)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.join()


def after_look(
    monkeypatch: pytest.MonkeyPatch, module: ModuleType, path: str, act: Callable[[], None]
) -> None:
    """Run `act` once, right after the walk of `module` (which imported `scan`) first looked
    at `path`, before the backup reads it."""
    real = module.scan
    pending = [act]

    def scan(*args: object) -> Iterator[Scanned]:
        for item in real(*args):
            if item.path == path and pending:
                pending.pop()()
            yield item

    monkeypatch.setattr(module, "scan", scan)


def in_thread(call: Callable[[], T], timeout: float = 60) -> T:
    """Run `call` in a daemon thread; fail the test if it blocks (as a FIFO read would)."""
    results: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            results.append(call())
        except BaseException as error:  # handed to the test thread
            errors.append(error)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"{call} blocked"
    if errors:
        raise errors[0]
    return results[0]
