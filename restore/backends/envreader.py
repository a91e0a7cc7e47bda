"""Reading a backend's settings from the environment, every problem collected at once.

Each backend subclasses `EnvReader` with what is particular to it (URL forms, credential
rules); the shared rules live here: blank means unset, `NAME_FILE` is the mounted-Secret
twin of a secret `NAME`, and a bad value becomes a `Problem` naming the variable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from restore.errors import Problem

_T = TypeVar("_T")


class EnvReader:
    """Reads values from the environment, collecting problems instead of stopping at one."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[Problem] = []

    def problem(self, key: str, value: object, message: str) -> None:
        self.problems.append(Problem(key, value, message))

    def first(self, *names: str) -> str | None:
        """The first of `names` that is set and not blank."""
        for name in names:
            value = self.environ.get(name, "").strip()
            if value:
                return value
        return None

    def parsed(self, name: str, parse: Callable[[str], _T], default: _T) -> _T:
        """`parse` applied to the variable, or `default` when unset or (a problem) invalid."""
        raw = self.first(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError as error:
            self.problem(name, raw, str(error))
            return default

    def choice(self, name: str, allowed: tuple[str, ...]) -> str | None:
        raw = self.first(name)
        if raw is not None and raw not in allowed:
            self.problem(name, raw, f"must be one of {', '.join(allowed)}")
            return None
        return raw

    def existing_file(self, *names: str) -> str | None:
        """The first of `names` that is set; a problem if it names no file."""
        for name in names:
            path = self.first(name)
            if path is not None:
                if not Path(path).is_file():
                    self.problem(name, path, "no such file")
                return path
        return None

    def secret(self, name: str) -> str | None:
        """`NAME`, or the content of the file `NAME_FILE` names (a mounted Secret)."""
        direct, path = self.first(name), self.first(f"{name}_FILE")
        if direct is not None and path is not None:
            self.problem(name, "***", f"set either {name} or {name}_FILE, not both")
        if path is None:
            return direct
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except OSError as error:
            self.problem(f"{name}_FILE", path, f"cannot read: {error.strerror or error}")
            return None
        if not text:
            self.problem(f"{name}_FILE", path, "file is empty")
            return None
        return text
