"""What the browsing commands share: the snapshot filters (`--host`, `--tag`,
`--snapshot-path`), choosing a snapshot by id or `latest`, and printing nodes.

Text output escapes what a terminal would act on (control characters, and the bytes of
names that are not UTF-8, shown as `\\xe9`); `--json` prints one JSON object per line, so a
listing of a million files streams instead of building one document.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Sequence
from typing import Any

from restore.commands import Context
from restore.errors import NoSnapshotError
from restore.filters import SnapshotFilter, pick
from restore.model import SnapshotInfo
from restore.nodes import SYMLINK, Node
from restore.printable import printable
from restore.repository import Repository


def add_filter_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="", help="only snapshots taken on this host (pod name)")
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        help="only snapshots carrying this tag (repeatable: all of them; env: comma list)",
    )
    parser.add_argument(
        "--snapshot-path",
        default="",
        metavar="DIR",
        help="only snapshots of this data folder (the --path their backup read)",
    )


def snapshot_filter(args: argparse.Namespace) -> SnapshotFilter:
    return SnapshotFilter(host=args.host, tags=tuple(args.tag), path=args.snapshot_path)


def choose(repo: Repository, ref: str, args: argparse.Namespace) -> SnapshotInfo:
    """The snapshot `ref` (id, unique prefix or `latest`) names among the filtered ones.
    Raise NoSnapshotError if there is none."""
    return pick(repo.snapshots(), ref, snapshot_filter(args), repo.describe())


def chosen(repo: Repository, refs: Sequence[str], args: argparse.Namespace) -> list[SnapshotInfo]:
    """The snapshots `refs` name among the filtered ones, or every filtered snapshot without
    refs (newest first). Raise NoSnapshotError if a ref names none, or a filter leaves none."""
    only = snapshot_filter(args)
    listed = repo.snapshots()
    if refs:
        return [pick(listed, ref, only, repo.describe()) for ref in refs]
    found = only.apply(listed)
    if only.active and not found:
        raise NoSnapshotError(f"no snapshot in {repo.describe()} matches {only.describe()}")
    return found


def node_line(node: Node) -> str:
    """`-rw-r--r--  1000:1000        12 2026-01-15 12:00:00  conf/app.yaml`"""
    name = printable(node.path)
    if node.kind == SYMLINK:
        name += f" -> {printable(node.target)}"
    owner = f"{node.uid}:{node.gid}"
    when = _second(node.mtime_ns // 1_000_000_000)
    return f"{_permissions(node.kind, node.mode)} {owner:>11} {node.size:>13} {when}  {name}"


# A listing formats a million lines: files share modes, and often the second they were
# written, so each distinct value is formatted once.
@functools.lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


@functools.lru_cache(maxsize=256)
def _permissions(kind: str, mode: int) -> str:
    return Node("", kind, mode, 0, 0, 0).permissions()


def json_line(ctx: Context, document: dict[str, Any]) -> None:
    ctx.stdout.write(json.dumps(document) + "\n")
