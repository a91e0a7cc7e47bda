"""A folder beside the volume that no restore may touch, and the proof that none did.

It is shaped like caretaker's state (`staging/tree/`, `staging/journal.json`, `quarantine/`,
`restore-result.json`, `restore-result.tmp`, `tree/`), so a symlink from the volume to it
offers a naive restore every name it would use; `extra` files (a fake service-account
token) offer a naive backup something to read. Its fingerprint holds every entry's type,
mode, mtime, size, content hash or link target, and the listing and mtime of every folder
(the folder itself included): a file created, written, moved or deleted there changes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.trees import age_tree, write_file

VICTIM = "victim.txt"
# A journal a naive recovery would replay: it moves the canary's files into the volume.
JOURNAL = {
    "version": 1,
    "kind": "restore",
    "source": "staging/tree",
    "aside": "staging/discard",
    "set_aside": [],
    "move_in": [VICTIM],
    "snapshot": None,
}


class Canary:
    def __init__(self, path: Path, extra: Mapping[str, bytes] | None = None) -> None:
        self.path = path
        for rel in ("staging/tree", "staging/discard", "quarantine/20260101T000000Z", "tree"):
            (path / rel).mkdir(parents=True)
        for rel in (
            VICTIM,
            f"staging/tree/{VICTIM}",
            f"tree/{VICTIM}",
            f"quarantine/20260101T000000Z/{VICTIM}",
        ):
            write_file(path / rel, b"outside the volume: never touch\n")
        for rel, data in (extra or {}).items():
            write_file(path / rel, data)
        write_file(path / "staging" / "journal.json", json.dumps(JOURNAL).encode())
        write_file(path / "restore-result.json", b'{"outcome": "not yours"}\n')
        write_file(path / "restore-result.tmp", b"not yours either\n")
        age_tree(path)
        os.utime(path, ns=(1_600_000_000 * 10**9,) * 2)
        self.before = fingerprint(path)

    @property
    def victim(self) -> Path:
        return self.path / VICTIM

    def assert_untouched(self) -> None:
        assert fingerprint(self.path) == self.before


def fingerprint(root: Path) -> dict[str, tuple[Any, ...]]:
    found: dict[str, tuple[Any, ...]] = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        info = here.lstat()
        found[here.relative_to(root).as_posix()] = (
            "dir",
            stat.S_IMODE(info.st_mode),
            info.st_mtime_ns,
            tuple(sorted(dirs + files)),
        )
        for name in files:
            full = here / name
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                found[full.relative_to(root).as_posix()] = ("link", os.readlink(full), info.st_mtime_ns)
            else:
                digest = hashlib.sha256(full.read_bytes()).hexdigest()
                entry = ("file", stat.S_IMODE(info.st_mode), info.st_mtime_ns, info.st_size, digest)
                found[full.relative_to(root).as_posix()] = entry
    return found
