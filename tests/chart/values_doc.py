"""The values table of charts/caretaker/README.md, generated from the comments of values.yaml.

Every key gets a row with its path, its default as written in values.yaml, and its comment:
the comment lines right above it (at its indentation) and a comment after it on its line. A
map gets a row only when it has a comment. A key without a comment of its own must sit below
a map that has one, so that every value is explained somewhere (`unexplained`).

    python -m tests.chart.values_doc     # rewrite the table in charts/caretaker/README.md

tests/chart/test_values_doc.py fails while the README's table differs from values.yaml.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

CHART = Path(__file__).resolve().parents[2] / "charts" / "caretaker"
BEGIN = "<!-- values:begin: generated from values.yaml by `python -m tests.chart.values_doc` -->"
END = "<!-- values:end -->"
_KEY = re.compile(r"^(?P<indent> *)(?P<name>[A-Za-z0-9_]+):(?P<rest>.*)$")
_COMMENT = re.compile(r"^(?P<indent> *)#(?P<text>.*)$")


@dataclasses.dataclass(frozen=True)
class Key:
    path: str
    default: str | None  # as written; None for a map (its keys follow)
    comment: str
    explained: bool  # it, or a map above it, has a comment


def _split_comment(rest: str) -> tuple[str, str]:
    """(value, comment) of what follows `key:`; a `#` inside quotes is part of the value."""
    quote = ""
    for index, char in enumerate(rest):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or rest[index - 1] in " \t"):
            return rest[:index].strip(), rest[index + 1 :].strip()
    return rest.strip(), ""


def parse(text: str) -> list[Key]:
    """Every key of values.yaml in file order. Raise ValueError on a line it cannot read
    (values.yaml keeps to `key: value`, comments and blank lines)."""
    found: list[Key] = []
    parents: list[tuple[int, str, bool]] = []  # (indent, name, explained)
    above: list[str] = []
    above_indent = -1
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            above = []
            continue
        if comment := _COMMENT.match(line):
            if len(comment["indent"]) != above_indent:
                above, above_indent = [], len(comment["indent"])
            above.append(comment["text"].strip())
            continue
        key = _KEY.match(line)
        if key is None:
            raise ValueError(f"values.yaml line {number}: not `key: value`: {line!r}")
        indent = len(key["indent"])
        while parents and parents[-1][0] >= indent:
            parents.pop()
        value, trailing = _split_comment(key["rest"])
        own = " ".join([*(above if above_indent == indent else []), trailing]).strip()
        above, above_indent = [], -1
        path = ".".join([*(name for _, name, _ in parents), key["name"]])
        explained = bool(own) or any(flag for _, _, flag in parents)
        found.append(Key(path, value or None, own, explained))
        if not value:
            parents.append((indent, key["name"], explained))
    return found


def unexplained(keys: list[Key]) -> list[str]:
    return [key.path for key in keys if not key.explained]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def table(keys: list[Key]) -> str:
    rows = ["| key | default | description |", "|---|---|---|"]
    for key in keys:
        if key.default is None and not key.comment:
            continue
        default = "" if key.default is None else "`" + key.default.replace("|", "\\|") + "`"
        rows.append(f"| `{key.path}` | {default} | {_cell(key.comment)} |")
    return "\n".join(rows) + "\n"


def with_table(readme: str, values: str) -> str:
    """The README with the part between the markers replaced by the table of `values`."""
    head, begin, rest = readme.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"README.md needs the lines {BEGIN!r} and {END!r}")
    return f"{head}{BEGIN}\n{table(parse(values))}{END}{tail}"


def main() -> None:
    readme = CHART / "README.md"
    readme.write_text(with_table(readme.read_text(), (CHART / "values.yaml").read_text()))


if __name__ == "__main__":
    main()
