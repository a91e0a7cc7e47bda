"""`caretaker dump`: one file of a snapshot to stdout, or a folder as a tar stream."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import tarfile
from collections.abc import Iterator
from typing import IO

from restore.commands import Command, Context, open_from_args
from restore.commands.choosing import add_filter_options, choose
from restore.commands.options import add_repository_options
from restore.errors import IntegrityError, NoSnapshotError
from restore.nodes import DIR, FILE, Node
from restore.selection import Selection

_TAR_TYPES = {FILE: tarfile.REGTYPE, DIR: tarfile.DIRTYPE}


def configure(parser: argparse.ArgumentParser) -> None:
    add_repository_options(parser, path_help="unused; accepted so one environment fits all commands")
    add_filter_options(parser)
    parser.add_argument("snapshot", metavar="SNAPSHOT", help="snapshot id (or unique prefix), or latest")
    parser.add_argument("folder", metavar="PATH", help="a file, a folder or a symlink; / for everything")


class _Reader:
    """A file object over an iterator of byte blocks, for tarfile."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._left = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        while not self._left:
            block = next(self._blocks, None)
            if block is None:
                return b""
            self._left = memoryview(block)
        taken = self._left[: size if size >= 0 else len(self._left)]
        self._left = self._left[len(taken) :]
        return bytes(taken)


def tar_info(node: Node) -> tarfile.TarInfo:
    info = tarfile.TarInfo(node.path)
    info.type = _TAR_TYPES.get(node.kind, tarfile.SYMTYPE)
    info.mode, info.uid, info.gid = node.mode, node.uid, node.gid
    info.mtime = node.mtime_ns // 1_000_000_000
    info.size = node.size if node.kind == FILE else 0
    info.linkname = node.target
    return info


def write_tar(out: IO[bytes], items: Iterator[tuple[Node, Iterator[bytes]]]) -> None:
    """A POSIX (pax) tar stream of the nodes, contents streamed through as they come."""
    with tarfile.open(
        fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape"
    ) as archive:
        for node, data in items:
            archive.addfile(tar_info(node), _Reader(data) if node.kind == FILE else None)


def write_file(out: IO[bytes], node: Node, data: Iterator[bytes]) -> None:
    """A file's bytes as they are. Raise IntegrityError if they do not add up to its size."""
    written = 0
    for block in data:
        out.write(block)
        written += len(block)
    if written != node.size:
        raise IntegrityError(f"{node.path}: got {written} bytes, the snapshot says {node.size}")


def run(args: argparse.Namespace, ctx: Context) -> int:
    selection = Selection.subtree(args.folder)
    with contextlib.closing(open_from_args(args, ctx)) as repo:
        snapshot = choose(repo, args.snapshot, args)
        items = (item for item in repo.contents(snapshot.id, selection) if selection.inside(item[0].path))
        try:
            write(ctx.binary, items, selection, f"{args.folder!r} is not in snapshot {snapshot.id}")
            ctx.binary.flush()
        except BrokenPipeError:
            _reader_gone(ctx.binary)
    return 0


def write(
    out: IO[bytes], items: Iterator[tuple[Node, Iterator[bytes]]], selection: Selection, missing: str
) -> None:
    """The one file as it is, or a tar stream of everything chosen. Raise NoSnapshotError
    with `missing` if a PATH was chosen and nothing is there."""
    if selection.everything:
        write_tar(out, items)
        return
    first = next(items, None)
    if first is None:
        raise NoSnapshotError(missing)
    if first[0].kind == FILE:
        write_file(out, *first)
    else:
        write_tar(out, itertools.chain([first], items))


def _reader_gone(out: IO[bytes]) -> None:
    """The reader closed the pipe (`| head -c 100`): what it did not take goes nowhere."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, out.fileno())
    finally:
        os.close(null)


COMMAND = Command(
    name="dump",
    help="write one file of a snapshot to stdout, or a folder as a tar stream",
    description=(
        "Write PATH of SNAPSHOT to stdout: a file's bytes as they are, a folder (or a symlink,\n"
        "or / for the whole snapshot) as a POSIX tar stream with modes, owners and mtimes.\n"
        "Every byte is checked against its hash on the way, as a restore checks it; nothing\n"
        "is written to disk. Exit 3 if the snapshot or PATH does not exist, 7 if data is\n"
        "damaged (the output is then incomplete)."
    ),
    configure=configure,
    run=run,
    checks_repository=True,
    stdout_is_data=True,
)
