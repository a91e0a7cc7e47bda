"""Which paths of a snapshot an operation touches: `--include` and `--exclude` of a restore, the
PATH of `ls` and `dump`.

Patterns mean what `--exclude` means for a backup (`restore.excludes`): without `/` a name at
any depth (`*.db`), with `/` a whole path (`conf/*.yaml`; a leading `/` is allowed); `*` does
not cross `/`, `**` does. A selected folder brings everything in it; an excluded one takes
everything in it away. The folders leading to a selected path come along, so a restored file
lands where it was. Selections filter streams in manifest order (a folder before its
contents), holding only the folders above the current path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Generic, TypeVar

from restore.errors import ConfigError, Problem
from restore.excludes import Globs
from restore.model import STATE_DIR
from restore.nodes import sort_key

T = TypeVar("T")
_MAX_PATTERN = 4096


def pattern_problem(pattern: str) -> str | None:
    """Why a path or pattern cannot name anything in a snapshot, or None if it can."""
    parts = pattern.removeprefix("/").removesuffix("/").split("/")
    if not pattern.strip("/") or len(pattern) > _MAX_PATTERN:
        return "must name a path below the data folder"
    if "\0" in pattern:
        return "must not contain NUL"
    if any(part in {"", ".", ".."} for part in parts):
        return "must not have empty, '.' or '..' components"
    if parts[0] == STATE_DIR:
        return f"{STATE_DIR} is caretaker's own folder, never in a snapshot"
    return None


def check_patterns(key: str, patterns: Sequence[str]) -> None:
    """Raise ConfigError naming every pattern that `pattern_problem` refuses."""
    problems = [Problem(key, p, why) for p in patterns if (why := pattern_problem(p)) is not None]
    if problems:
        raise ConfigError(problems)


def _folder_pattern(pattern: str) -> str:
    """`conf/` names the top-level folder `conf` (like `/conf`), not every `conf`."""
    core = pattern.rstrip("/")
    if core != pattern and "/" not in core.lstrip("/"):
        return "/" + core.lstrip("/")
    return core


@dataclasses.dataclass(slots=True)
class _Open(Generic[T]):
    """A folder above the current path, held until a selected path below it shows up."""

    path: str
    item: T
    yielded: bool
    selected: bool


class Selection:
    """Everything (no patterns), or what `include` selects, minus what `exclude` selects."""

    def __init__(self, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> None:
        check_patterns("include", include)
        check_patterns("exclude", exclude)
        self.include = tuple(map(_folder_pattern, include))
        self.exclude = tuple(map(_folder_pattern, exclude))
        self._include = Globs(self.include)
        self._exclude = Globs(self.exclude)
        self._subtree: str | None = None
        self._literal: frozenset[str] | None = None

    @classmethod
    def subtree(cls, path: str) -> Selection:
        """Exactly `path` and what is below it, taken literally (no globbing). Raise
        ConfigError if it cannot name anything in a snapshot."""
        path = path.strip("/")
        check_patterns("path", [path] if path else [])
        selection = cls()
        selection._subtree = path or None
        return selection

    @classmethod
    def paths(cls, paths: Collection[str]) -> Selection:
        """Exactly these paths (and what is below each), taken literally."""
        selection = cls()
        selection._literal = frozenset(paths)
        return selection

    @property
    def everything(self) -> bool:
        return not (self.include or self.exclude or self._subtree or self._literal is not None)

    def selects(self, path: str) -> bool:
        """True if `path` is chosen by itself (not only as part of a selected folder)."""
        if self._subtree is not None:
            return path == self._subtree
        if self._literal is not None:
            return path in self._literal
        return not self.include or self._include.matches(path)

    def inside(self, path: str) -> bool:
        """For a subtree: True for its root and what is below it (not the folders above)."""
        root = self._subtree
        return root is None or path == root or path.startswith(root + "/")

    def excludes(self, path: str) -> bool:
        return bool(self.exclude) and self._exclude.matches(path)

    def done_after(self, path: str) -> bool:
        """True if no path after `path` (in manifest order) can be selected: a stream may stop."""
        root = self._subtree
        if root is None or path == root or path.startswith(root + "/"):
            return False
        return sort_key(path) > sort_key(root)

    def filter(
        self, items: Iterable[T], path_of: Callable[[T], str], is_dir: Callable[[T], bool]
    ) -> Iterator[T]:
        """The items selected, with the folders above each one, in the order given.

        `items` must come in manifest order (a folder before its contents, depth-first).
        """
        above: list[_Open[T]] = []
        skipped = ""  # an excluded folder: everything below it goes too
        for item in items:
            path = path_of(item)
            if skipped and path.startswith(skipped):
                continue
            if self.done_after(path):
                return
            skipped = ""
            while above and not path.startswith(f"{above[-1].path}/"):
                above.pop()
            if self.excludes(path):
                skipped = f"{path}/" if is_dir(item) else ""
                continue
            chosen = bool(above and above[-1].selected) or self.selects(path)
            if chosen:
                for folder in above:
                    if not folder.yielded:
                        folder.yielded = True
                        yield folder.item
                yield item
            if is_dir(item):
                above.append(_Open(path, item, chosen, chosen))
