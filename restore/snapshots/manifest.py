"""Manifests: every path of a snapshot with its metadata, one JSON line each, in one order.

The order is depth-first with each folder's names sorted (comparing paths as tuples of
components), which is also the order the scanner walks the volume. Backup can therefore
compare the volume with the previous snapshot as a merge of two sorted streams, and no
step ever holds every entry in memory.

Lines are cut into pieces (stored as blobs) after a path whose hash hits a pattern, so the
cut points depend only on the paths around them: an unchanged region of a volume gives the
same pieces in every snapshot, stored once.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol

from restore.errors import IntegrityError
from restore.model import STATE_DIR
from restore.nodes import sort_key
from restore.snapshots.format import CHUNK_SIZE, ID_BYTES, SnapshotRecord

FILE, DIR, SYMLINK = "f", "d", "l"
_MIN_PIECE = 32 << 10
_MAX_PIECE = 4 << 20
_CUT_MASK = 0x1FF
MAX_CHUNKS_PER_FILE = (_MAX_PIECE - 4096) // (2 * ID_BYTES)
# Types other tools record (tar, restic): named in the refusal, never written.
_SPECIAL = {"c": "character device", "b": "block device", "p": "FIFO", "s": "socket"}
_MAX_PATH = 4096
_NOT_NAMES = frozenset({"", ".", ".."})
_MAX_SIZE = 1 << 50
# Seconds must fit a 64-bit time_t, or setting the mtime fails mid-restore.
_TIME_T = 1 << 63


class PieceSource(Protocol):
    """Where a manifest's pieces come from (restore.snapshots.reader.BlobLoader)."""

    def in_order(self, blobs: Sequence[bytes]) -> Iterator[bytes]:
        """The plain bytes of each blob, in the order given."""
        ...


class Entry(NamedTuple):
    path: str
    kind: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    size: int = 0
    ino: int = 0
    target: str = ""
    chunks: tuple[bytes, ...] = ()
    unstable: bool = False
    # Change time: a write changes it even when a tool resets the mtime afterwards.
    ctime_ns: int = 0

    @property
    def key(self) -> str:
        return sort_key(self.path)


def encode(entry: Entry) -> bytes:
    extra = entry.target if entry.kind == SYMLINK else b"".join(entry.chunks).hex()
    row = [
        entry.path,
        entry.kind,
        entry.mode,
        entry.uid,
        entry.gid,
        entry.mtime_ns,
        entry.size,
        entry.ino,
        extra,
        1 if entry.unstable else 0,
        entry.ctime_ns,
    ]
    return json.dumps(row, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> Entry:
    """Parse one manifest line. Raise IntegrityError if it is not a well-formed entry."""
    try:
        row = json.loads(line)
    except ValueError as error:
        raise _malformed(line, error) from error
    return _entry(row, line)


def decode_piece(data: bytes) -> list[tuple[Entry, bytes]]:
    """Parse a manifest piece into (entry, line) pairs. Raise IntegrityError at a bad line.

    One JSON parse for the whole piece: per-line parsing costs as much as the rest of an
    unchanged backup. A piece that does not parse, or parses to a different number of rows
    than it has lines, goes line by line to name the line at fault.
    """
    if data and not data.endswith(b"\n"):
        raise IntegrityError("truncated (no final newline)")
    lines = data.splitlines(keepends=True)
    try:
        rows = json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:
        rows = None
    if not isinstance(rows, list) or len(rows) != len(lines):
        return [(decode(line), line) for line in lines]
    return [(_entry(row, line), line) for row, line in zip(rows, lines, strict=True)]


def _malformed(line: bytes, error: Exception) -> IntegrityError:
    return IntegrityError(f"malformed manifest line {line[:120]!r}: {error}")


def _entry(row: Any, line: bytes) -> Entry:
    # Runs for every entry of every manifest read: checks written out, not looped over.
    try:
        path, kind, mode, uid, gid, mtime_ns, size, ino, extra, unstable, ctime_ns = row
        if not (
            type(path) is str
            and type(extra) is str
            and type(mode) is int
            and type(uid) is int
            and type(gid) is int
            and type(mtime_ns) is int
            and type(size) is int
            and type(ino) is int
            and type(ctime_ns) is int
        ):
            raise TypeError("field types")  # noqa: TRY301 - one handler turns every shape error into one message
        if kind == SYMLINK:
            return Entry(path, kind, mode, uid, gid, mtime_ns, size, ino, extra, (), False, ctime_ns)
        raw = bytes.fromhex(extra)
        if len(raw) == ID_BYTES:
            chunks: tuple[bytes, ...] = (raw,)
        elif len(raw) % ID_BYTES:
            raise ValueError("chunk list length")  # noqa: TRY301
        else:
            chunks = tuple(raw[i : i + ID_BYTES] for i in range(0, len(raw), ID_BYTES))
        return Entry(path, kind, mode, uid, gid, mtime_ns, size, ino, "", chunks, bool(unstable), ctime_ns)
    except (ValueError, TypeError) as error:
        raise _malformed(line, error) from error


class ManifestWriter:
    """Collects encoded entries and hands complete pieces to `store_piece` (returns the id)."""

    def __init__(self, store_piece: Callable[[bytes], bytes]) -> None:
        self._store = store_piece
        self._buffer = bytearray()
        self.pieces: list[bytes] = []
        self.count = 0

    def add(self, entry: Entry) -> None:
        self.add_line(entry.path, encode(entry))

    def add_line(self, path: str, line: bytes) -> None:
        """Add an already encoded entry (an unchanged line of the previous manifest)."""
        if len(self._buffer) + len(line) > _MAX_PIECE:
            self._cut()
        self._buffer += line
        self.count += 1
        hashed = zlib.crc32(path.encode("utf-8", "surrogateescape"))
        if len(self._buffer) >= _MAX_PIECE or (len(self._buffer) >= _MIN_PIECE and hashed & _CUT_MASK == 0):
            self._cut()

    def _cut(self) -> None:
        if self._buffer:
            self.pieces.append(self._store(bytes(self._buffer)))
            self._buffer.clear()

    def finish(self) -> tuple[bytes, ...]:
        self._cut()
        return tuple(self.pieces)


def read_manifest(pieces: Sequence[bytes], source: PieceSource) -> Iterator[tuple[Entry, bytes]]:
    """Stream the entries of a manifest with their encoded lines, piece by piece."""
    for piece, data in zip(pieces, source.in_order(pieces), strict=True):
        try:
            entries = decode_piece(data)
        except IntegrityError as error:
            raise IntegrityError(f"manifest piece {piece.hex()}: {error}") from error
        yield from entries


def read_entries(pieces: Sequence[bytes], source: PieceSource) -> Iterator[Entry]:
    """Stream the entries of a manifest, piece by piece."""
    for entry, _ in read_manifest(pieces, source):
        yield entry


def _native(name: str) -> bool:
    """True if `name` is what Python makes of some file-name bytes (UTF-8, each undecodable
    byte as U+DC80..U+DCFF): only such names stay distinct, and creatable, on disk."""
    if name.isascii():
        return True
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape") == name
    except UnicodeEncodeError:
        return False


def _check_path(path: str) -> None:
    parts = path.split("/")
    if (
        not path
        or len(path) > _MAX_PATH
        or "\0" in path
        or not _NOT_NAMES.isdisjoint(parts)
        or parts[0] == STATE_DIR
        or not _native(path)
    ):
        raise IntegrityError(f"manifest has an unsafe path: {path!r}")


def _check_fields(entry: Entry) -> None:
    if entry.kind not in {FILE, DIR, SYMLINK}:
        what = _SPECIAL.get(entry.kind)
        if what is not None:
            raise IntegrityError(
                f"manifest entry {entry.path!r} is a {what} (type {entry.kind!r}): a restore never "
                "writes device nodes, FIFOs or sockets (a backup never records them)"
            )
        raise IntegrityError(f"manifest entry {entry.path!r} has unknown type {entry.kind!r}")
    if not 0 <= entry.mode <= 0o7777 or not 0 <= entry.uid < 1 << 32 or not 0 <= entry.gid < 1 << 32:
        raise IntegrityError(f"manifest entry {entry.path!r} has impossible mode/owner")
    if not -_TIME_T <= entry.mtime_ns // 1_000_000_000 < _TIME_T:
        raise IntegrityError(f"manifest entry {entry.path!r} has an impossible mtime {entry.mtime_ns}")
    if not 0 <= entry.size <= _MAX_SIZE:
        raise IntegrityError(f"manifest entry {entry.path!r} has an absurd size {entry.size}")
    if entry.kind == FILE:
        needed = -(-entry.size // CHUNK_SIZE)
        # One extra chunk for unstable files: snapshots written before backup stopped at the
        # first short read may hold one.
        if len(entry.chunks) > needed + (1 if entry.unstable else 0) or (entry.size and not entry.chunks):
            raise IntegrityError(
                f"manifest entry {entry.path!r}: {len(entry.chunks)} chunks for {entry.size} bytes"
            )
    elif entry.chunks:
        raise IntegrityError(f"manifest entry {entry.path!r} is not a file but has content")
    if entry.kind == SYMLINK and (
        not entry.target or "\0" in entry.target or len(entry.target) > _MAX_PATH or not _native(entry.target)
    ):
        raise IntegrityError(f"manifest entry {entry.path!r} has an invalid symlink target")


def check_entry(entry: Entry) -> None:
    """Raise IntegrityError if one entry, on its own, is hostile or broken (see `validated`)."""
    _check_path(entry.path)
    _check_fields(entry)


def validated(entries: Iterable[Entry]) -> Iterator[Entry]:
    """Pass entries through, raising IntegrityError at the first hostile or broken one.

    Checks: safe relative paths (no absolute, `..`, empty or state-folder paths), strictly
    increasing order (so no duplicates), every parent a folder listed before its children
    (so no path goes through a symlink or a file), and plausible fields.
    """
    previous = ""
    open_dirs: list[str] = []
    for entry in entries:
        check_entry(entry)
        key = entry.key
        if previous and key <= previous:
            raise IntegrityError(f"manifest is out of order or has a duplicate at {entry.path!r}")
        parent = entry.path.rpartition("/")[0]
        while open_dirs and not (parent == open_dirs[-1] or parent.startswith(open_dirs[-1] + "/")):
            open_dirs.pop()
        if parent and (not open_dirs or open_dirs[-1] != parent):
            raise IntegrityError(f"manifest entry {entry.path!r} has no folder entry for {parent!r}")
        if entry.kind == DIR:
            open_dirs.append(entry.path)
        previous = key
        yield entry


def entries_of(record: SnapshotRecord, source: PieceSource) -> Iterator[Entry]:
    """A snapshot's manifest entries, validated as a restore needs them (see `validated`)."""
    return validated(read_entries(record.manifest, source))
