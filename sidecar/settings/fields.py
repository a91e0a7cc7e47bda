"""Typed reads from a YAML mapping that collect problems instead of stopping at the first.

A config file with three mistakes should be fixed in one round trip: every read records a
`Problem` naming the full key (`jobs.backup.timeout`) and the bad value, returns a safe
fallback, and the loader raises one ConfigError at the end. Values are judged by the rules
of `restore.values`, the same ones that judge flags and their environment twins.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any, TypeVar

from restore import values
from restore.errors import Problem

T = TypeVar("T")


class Fields:
    """One mapping of the config file, read key by key."""

    def __init__(self, data: object, where: str, problems: list[Problem]) -> None:
        self.where = where
        self.problems = problems
        self._seen: set[str] = set()
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.problem_at(where or "(document)", data, "must be a mapping")
            data = {}
        self._data: dict[Any, Any] = data

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def problem_at(self, key: str, value: object, message: str) -> None:
        self.problems.append(Problem(key, value, message))

    def problem(self, name: str, value: object, message: str) -> None:
        self.problem_at(self.key(name), value, message)

    def has(self, name: str) -> bool:
        return name in self._data

    def raw(self, name: str) -> Any:
        self._seen.add(name)
        return self._data.get(name)

    def string(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.raw(name)
        if value is None:
            if required:
                self.problem(name, None, "is required")
            return default
        if not isinstance(value, str) or not value.strip():
            self.problem(name, value, "must be a non-empty string")
            return default
        return value

    def read(self, name: str, rule: values.Rule[T]) -> T | None:
        """The value judged by `rule`; None when absent, or (a problem) when it breaks the rule."""
        value = self.raw(name)
        if value is None:
            return None
        try:
            return rule(value)
        except ValueError as error:
            self.problem(name, value, str(error))
            return None

    def integer(self, name: str, default: int) -> int:
        """A whole number >= 0 (a count, retries)."""
        found = self.read(name, values.count)
        return default if found is None else found

    def fraction(self, name: str, default: float) -> float:
        found = self.read(name, values.fraction)
        return default if found is None else found

    def boolean(self, name: str, default: bool) -> bool:
        value = self.optional_boolean(name)
        return default if value is None else value

    def optional_boolean(self, name: str) -> bool | None:
        return self.read(name, values.boolean)

    def duration(self, name: str, default: timedelta, *, allow_zero: bool = False) -> timedelta:
        parsed = self.optional_duration(name, allow_zero=allow_zero)
        return default if parsed is None else parsed

    def optional_duration(self, name: str, *, allow_zero: bool = False) -> timedelta | None:
        return self.read(name, values.zero_or_duration if allow_zero else values.duration)

    def strings(self, name: str, *, required: bool = False) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            if required:
                self.problem(name, None, "is required")
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(name, value, "must be a list of strings")
            return ()
        if required and not value:
            self.problem(name, value, "must not be empty")
        return tuple(value)

    def string_map(self, name: str) -> dict[str, str]:
        value = self.raw(name)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str | int | float) and not isinstance(v, bool)
            for k, v in value.items()
        ):
            self.problem(name, value, "must be a mapping of names to string values")
            return {}
        return {k: str(v) for k, v in value.items()}

    def child(self, name: str) -> Fields:
        return Fields(self.raw(name), self.key(name), self.problems)

    def items(self, name: str) -> Iterator[tuple[int, Any]]:
        """Yield the (index, element) pairs of a list value; a non-list is a problem."""
        value = self.raw(name)
        if value is None:
            return
        if not isinstance(value, list):
            self.problem(name, value, "must be a list")
            return
        yield from enumerate(value)

    def finish(self) -> None:
        """Report every key nobody asked for: a typo must not silently disable a setting."""
        allowed = ", ".join(sorted(self._seen))
        for key in self._data:
            if key not in self._seen:
                self.problem(str(key), self._data[key], f"unknown key (known here: {allowed})")
