"""Exclude globs, shared by every backend so `--exclude` means the same everywhere.

A pattern without `/` matches a name at any depth (`*.tmp`, `cache`); a pattern with `/`
matches the whole path relative to the data folder (`logs/*.gz`, `/tmp` anchored at the
top). `*` does not cross `/`; `**` does. A matching directory is skipped with all its
contents. caretaker's own state folder is always excluded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from restore.model import STATE_DIR


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


class Globs:
    """Path patterns as `--exclude` reads them (see the module docstring)."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self._by_name = [_compile(p) for p in patterns if "/" not in p]
        self._by_path = [_compile(p.lstrip("/")) for p in patterns if "/" in p]

    def matches(self, relpath: str) -> bool:
        """True if `relpath` (posix, relative to the data folder, no leading `/`) matches."""
        if not (self._by_name or self._by_path):
            return False
        name = relpath.rpartition("/")[2]
        return any(p.match(name) for p in self._by_name) or any(p.match(relpath) for p in self._by_path)


class Excludes(Globs):
    """Decides which relative paths a backup skips."""

    def excluded(self, relpath: str) -> bool:
        """True if `relpath` (posix, relative to the data folder, no leading `/`) is skipped."""
        return relpath == STATE_DIR or self.matches(relpath)
