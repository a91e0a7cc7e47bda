"""docs/format.md is complete: a reader written from it alone (stdlib, zstandard, json; nothing
of `restore.snapshots`, a test checks) reads what the engine writes. Sections: docs/format.md."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import struct
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import zstandard

from restore.errors import IntegrityError
from restore.model import BackupOptions
from restore.retention import RetentionPolicy
from tests.support.keys import UNENCRYPTED
from tests.support.trees import describe

CHUNK, MAX_BLOB, MAX_INDEX = 1 << 20, 8 << 20, 1 << 30
MAGIC, SECTION, ENTRY = b"CTIDX1\n", struct.Struct(">32sI"), struct.Struct(">32sBIII")
RECORD_FIELDS = {"version": int, "id": str, "time": str, "files": int, "dirs": int, "bytes": int,
                 "started": str, "entries": int, "manifest": list}  # fmt: skip


class RejectedError(Exception):
    """What the document says a reader must reject (section 12)."""


class Reader:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.unreadable: list[str] = []
        self.index: dict[bytes, tuple[str, int, int, int]] = {}

    def keys(self, prefix: str) -> list[str]:  # section 2: skip temporary files
        found = (p for p in (self.root / prefix).rglob("*") if p.is_file() and ".tmp-" not in p.name)
        return sorted(p.relative_to(self.root).as_posix() for p in found)

    def snapshots(self) -> list[dict[str, Any]]:  # sections 5 and 8
        records = [r for key in self.keys("snapshots") if (r := self.record(key)) is not None]
        if self.keys("snapshots") and json.loads((self.root / "config").read_bytes())["version"] != 1:
            raise RejectedError("unknown config version")
        return sorted(records, key=lambda r: datetime.fromisoformat(r["time"]), reverse=True)

    def record(self, key: str) -> dict[str, Any] | None:
        try:
            doc = json.loads((self.root / key).read_bytes())
            ok = all(type(doc.get(f)) is t for f, t in RECORD_FIELDS.items()) and doc["version"] == 1
            ok = (
                ok
                and doc["id"] == key.rpartition("/")[2]
                and all(len(bytes.fromhex(m)) == 32 for m in doc["manifest"])
            )
            ok = ok and all(datetime.fromisoformat(doc[t]).tzinfo for t in ("time", "started"))
        except (ValueError, TypeError, AttributeError):
            ok = False
        if not ok:
            self.unreadable.append(key)
        return doc if ok else None

    def load_index(self) -> None:  # section 7
        for key in self.keys("index"):
            data = (self.root / key).read_bytes()
            if zstandard.frame_content_size(data) > MAX_INDEX:
                raise RejectedError(f"{key}: index too large")
            plain = zstandard.ZstdDecompressor().decompress(data, max_output_size=MAX_INDEX)
            if not plain.startswith(MAGIC):
                raise RejectedError(f"{key}: unknown index format")
            at = len(MAGIC)
            while at < len(plain):
                pack, count = SECTION.unpack_from(plain.ljust(at + SECTION.size, b"\0"), at)
                at, end = at + SECTION.size, at + SECTION.size + count * ENTRY.size
                if at > len(plain) or end > len(plain):
                    raise RejectedError(f"{key}: truncated")
                for blob, kind, offset, length, raw in ENTRY.iter_unpack(plain[at:end]):
                    if kind > 1 or length >= 1 << 24 or raw >= 1 << 24:
                        raise RejectedError(f"{key}: impossible entry")
                    self.index.setdefault(blob, (pack.hex(), offset, length, raw))
                at = end

    def blob(self, blob: bytes) -> bytes:  # section 6
        if blob not in self.index:
            raise RejectedError(f"blob {blob.hex()} not indexed")
        pack, offset, length, _ = self.index[blob]
        frame = (self.root / "data" / pack[:2] / pack).read_bytes()[offset : offset + length]
        if len(frame) != length:
            raise RejectedError(f"pack {pack} truncated")
        if not 0 <= zstandard.frame_content_size(frame) <= MAX_BLOB:
            raise RejectedError("bad frame size")
        plain = zstandard.ZstdDecompressor().decompress(frame)
        if hashlib.sha256(plain).digest() != blob:
            raise RejectedError(f"blob {blob.hex()}: hash mismatch")
        return plain

    def entries(self, record: dict[str, Any]) -> list[dict[str, Any]]:  # section 9
        previous, folders, found = "", set[str](), []
        for piece in record["manifest"]:
            data = self.blob(bytes.fromhex(piece))
            if not data.endswith(b"\n"):
                raise RejectedError("piece without final newline")
            for line in data.split(b"\n")[:-1]:
                try:
                    entry = check_line(json.loads(line))
                except ValueError as error:
                    raise RejectedError(f"malformed line {line!r}") from error
                key = entry["path"].replace("/", "\0")
                if key <= previous:
                    raise RejectedError("out of order or duplicate")
                parent = entry["path"].rpartition("/")[0]
                if parent and parent not in folders:
                    raise RejectedError(f"no folder entry for {parent!r}")
                if entry["type"] == "d":
                    folders.add(entry["path"])
                previous = key
                found.append(entry)
        return found

    def contents(self, snapshot: str) -> dict[str, tuple[Any, ...]]:
        """Every path of a snapshot, as `tests.support.trees.describe` describes a folder."""
        if not self.index:
            self.load_index()
        tree: dict[str, tuple[Any, ...]] = {}
        for e in self.entries(next(r for r in self.snapshots() if r["id"] == snapshot)):
            if e["type"] != "f":
                tree[e["path"]] = ("link", e["target"]) if e["type"] == "l" else ("dir", e["mode"])
                tree[e["path"]] += (e["mtime_ns"],)
                continue
            data = b"".join(self.blob(c) for c in e["chunks"])
            if len(data) != e["size"]:
                raise RejectedError(f"{e['path']}: {len(data)} bytes, the manifest says {e['size']}")
            tree[e["path"]] = (
                "file",
                e["mode"],
                e["mtime_ns"],
                hashlib.sha256(data).hexdigest(),
                e["uid"],
                e["gid"],
            )
        return tree


def native(name: str) -> bool:  # section 9.1, names
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape") == name
    except UnicodeEncodeError:
        return False


def check_line(row: Any) -> dict[str, Any]:  # sections 9.1 and 9.2
    if not isinstance(row, list) or len(row) != 11:
        raise RejectedError("malformed line")
    path, kind, mode, uid, gid, mtime_ns, size, _ino, extra, unstable, _ctime = row
    if {type(v) for v in (mode, uid, gid, mtime_ns, size, _ino, _ctime)} != {int} or not isinstance(
        extra, str
    ):
        raise RejectedError("malformed line")
    parts = str(path).split("/")
    if (
        not isinstance(path, str)
        or not path
        or len(path) > 4096
        or "\0" in path
        or {"", ".", ".."} & set(parts)
        or parts[0] == ".caretaker"
    ):
        raise RejectedError(f"unsafe path {path!r}")
    if kind not in {"f", "d", "l"} or not native(path) or not 0 <= mode <= 0o7777 or not 0 <= size <= 1 << 50:
        raise RejectedError(f"impossible entry {path!r}")
    if not (0 <= uid < 1 << 32 and 0 <= gid < 1 << 32 and -(1 << 63) <= mtime_ns // 10**9 < 1 << 63):
        raise RejectedError(f"impossible entry {path!r}")
    entry = {
        "path": path,
        "type": kind,
        "mode": mode,
        "uid": uid,
        "gid": gid,
        "mtime_ns": mtime_ns,
        "size": size,
    }
    if kind == "l":
        if not extra or "\0" in extra or len(extra) > 4096 or not native(extra):
            raise RejectedError(f"invalid link target {path!r}")
        return entry | {"target": extra, "chunks": []}
    raw = bytes.fromhex(extra)
    chunks = [raw[i : i + 32] for i in range(0, len(raw), 32)]
    limit = -(-size // CHUNK) + (1 if unstable else 0) if kind == "f" else 0
    if len(raw) % 32 or len(chunks) > limit or (kind == "f" and size and not chunks):
        raise RejectedError(f"{len(chunks)} chunks for {path!r}")
    return entry | {"chunks": chunks}


@pytest.fixture
def tree(source: Path) -> Path:
    random = os.urandom(CHUNK // 2)
    files = {"a/b/big.bin": os.urandom(CHUNK) * 2 + random, "a/empty": b"", "a.txt": b"hello\n",
             "a/b/copy.bin": random, "été/日本.txt": "grüße".encode(), "z": b"z" * 10}  # fmt: skip
    for name, data in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    (source / "a/b/big.bin").chmod(0o751)
    (source / "a").chmod(0o750)
    (source / "été/link").symlink_to("日本.txt")
    (source / "absolute").symlink_to("/etc/hosts")
    Path(os.fsdecode(os.path.join(os.fsencode(source), b"caf\xe9"))).write_bytes(b"latin-1 name")
    return source


def put(root: Path, key: str, data: bytes) -> None:
    (root / key).parent.mkdir(parents=True, exist_ok=True)
    (root / key).write_bytes(data)


def write_blob(root: Path, data: bytes, kind: int) -> str:
    """Store one blob in a pack of its own, with its index object (sections 6 and 7)."""
    frame, pack, blob = zstandard.ZstdCompressor().compress(data), os.urandom(32), hashlib.sha256(data)
    put(root, f"data/{pack.hex()[:2]}/{pack.hex()}", frame)
    index = MAGIC + SECTION.pack(pack, 1) + ENTRY.pack(blob.digest(), kind, 0, len(frame), len(data))
    put(root, f"index/{pack.hex()}", zstandard.ZstdCompressor().compress(index))
    return blob.hexdigest()


def write_snapshot(root: Path, lines: list[list[Any]]) -> str:
    """A snapshot written from the document alone (sections 8 and 9)."""
    piece = b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines)
    snapshot, when = os.urandom(8).hex(), "2030-01-01T00:00:00Z"
    record = {"version": 1, "id": snapshot, "time": when, "started": when, "files": 1, "dirs": 1, "bytes": 5,
              "entries": len(lines), "manifest": [write_blob(root, piece, 1)]}  # fmt: skip
    put(root, f"snapshots/{snapshot}", json.dumps(record).encode())
    if not (root / "config").exists():
        put(
            root,
            "config",
            json.dumps({"version": 1, "id": os.urandom(16).hex(), "chunk_size": CHUNK}).encode(),
        )
    return snapshot


def line(path: str, kind: str = "f", size: int = 0, extra: str = "") -> list[Any]:
    return [path, kind, 0o755 if kind == "d" else 0o644, 0, 0, 1_600_000_000 * 10**9, size, 0, extra, 0, 0]


def test_the_reader_imports_nothing_of_the_engine() -> None:
    nodes = list(ast.walk(ast.parse(Path(__file__).read_text())))
    modules = [a.name for n in nodes if isinstance(n, ast.Import) for a in n.names]
    modules += [n.module or "" for n in nodes if isinstance(n, ast.ImportFrom)]
    assert "zstandard" in modules
    assert not [m for m in modules if m.startswith("restore.snapshots")]


def test_an_independent_reader_reconstructs_every_snapshot(engine, store, tree: Path, clock) -> None:
    first = engine.backup(tree, BackupOptions(host="web-0")).snapshot.id
    before = describe(tree)
    (tree / "a.txt").write_bytes(b"changed")
    clock.advance(hours=1)
    second = engine.backup(tree, BackupOptions()).snapshot.id
    reader = Reader(store.root)
    records = reader.snapshots()
    assert [r["id"] for r in records] == [second, first]
    assert reader.contents(second) == describe(tree)
    assert reader.contents(first) == before
    assert (records[1]["host"], records[1]["entries"], records[1]["files"], records[1]["dirs"]) == (
        "web-0",
        12,
        7,
        3,
    )
    written = [len(reader.keys(prefix)) for prefix in ("data", "index", "snapshots")]
    assert sum(r["stats"]["objects_written"] for r in records) == sum(written)


def test_merged_index_objects_are_named_after_their_bytes(engine, store, tree: Path, clock) -> None:
    for number in range(9):  # two packs each: more than 16 small index objects, which prune merges
        (tree / "z").write_bytes(b"%d" % number)
        clock.advance(hours=1)
        engine.backup(tree, BackupOptions())
    engine.prune(RetentionPolicy(last=9), now=clock())
    reader = Reader(store.root)
    keys = reader.keys("index")
    assert keys == ["index/" + hashlib.sha256((store.root / key).read_bytes()).hexdigest() for key in keys]
    assert len(keys) == 1
    digests = [hashlib.sha256(b"%d" % n).hexdigest() for n in range(8, -1, -1)]
    assert [reader.contents(r["id"])["z"][3] for r in reader.snapshots()] == digests


def test_a_snapshot_written_from_the_document_restores(engine, store, tmp_path: Path) -> None:
    chunk = write_blob(store.root, b"hello", 0)
    snapshot = write_snapshot(
        store.root, [line("d", "d"), line("d/f", size=5, extra=chunk), line("l", "l", 3, "d/f")]
    )
    dest = tmp_path / "dest"
    dest.mkdir()
    engine.restore(snapshot, dest)
    assert (dest / "d" / "f").read_bytes() == b"hello"
    assert os.readlink(dest / "l") == "d/f"


def _damage_pack(reader: Reader, *, truncate: bool) -> None:
    """Flip, or cut off, the last byte of big.bin's last chunk (random: zstd stored it raw)."""
    chunk = next(e for e in reader.entries(reader.snapshots()[0]) if e["path"] == "a/b/big.bin")["chunks"][-1]
    pack, offset, length, _ = reader.index[chunk]
    path = reader.root / "data" / pack[:2] / pack
    data = bytearray(path.read_bytes())
    data[offset + length - 1] ^= 0xFF
    path.write_bytes(data[: offset + length - 1] if truncate else data)


def _impossible_index_entry(reader: Reader) -> None:
    key = reader.root / reader.keys("index")[0]
    plain = bytearray(zstandard.ZstdDecompressor().decompress(key.read_bytes()))
    plain[len(MAGIC) + SECTION.size + 32] = 2  # the first entry's kind
    key.write_bytes(zstandard.ZstdCompressor().compress(bytes(plain)))


TAMPERED = {
    "flipped byte in a pack": (
        lambda r: _damage_pack(r, truncate=False),
        "hash mismatch",
        "not match its hash",
    ),
    "truncated pack": (lambda r: _damage_pack(r, truncate=True), "truncated", "truncated"),
    "impossible index entry": (_impossible_index_entry, "impossible entry", "impossible kind"),
    "path outside the target": (
        lambda r: write_snapshot(r.root, [line("../x")]),
        "unsafe path",
        "unsafe path",
    ),
    "folder missing": (lambda r: write_snapshot(r.root, [line("d/f")]), "no folder entry", "no folder entry"),
    "out of order": (
        lambda r: write_snapshot(r.root, [line("b"), line("a")]),
        "out of order",
        "out of order",
    ),
    "link target": (
        lambda r: write_snapshot(r.root, [line("l", "l")]),
        "invalid link",
        "invalid symlink target",
    ),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_both_readers_reject_what_the_document_says(
    case: str, engine, store, tree: Path, tmp_path: Path
) -> None:
    tamper, reader_says, engine_says = TAMPERED[case]
    snapshot = engine.backup(tree, BackupOptions()).snapshot.id
    reader = Reader(store.root)
    reader.load_index()
    snapshot = tamper(reader) or snapshot
    with pytest.raises(RejectedError, match=reader_says):
        Reader(store.root).contents(snapshot)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(IntegrityError, match=engine_says):
        engine.restore(snapshot, dest)


def test_unknown_versions_are_refused(engine, store, tree: Path) -> None:
    engine.backup(tree, BackupOptions())
    reader = Reader(store.root)
    [key] = reader.keys("snapshots")
    record = (store.root / key).read_bytes()
    (store.root / key).write_bytes(record.replace(b'"version":1', b'"version":2'))
    assert reader.snapshots() == []
    assert reader.unreadable == [key]
    # The engine leaves such a record out too; with none readable left it refuses the listing
    # (a restore must fail closed, not see an empty repository).
    with pytest.raises(IntegrityError, match="none of the 1 snapshot records"):
        type(engine)(store, encryption=UNENCRYPTED).snapshots()  # a new engine: this one read the config
    (store.root / key).write_bytes(record)
    (store.root / "config").write_bytes(b'{"version": 3}')
    with pytest.raises(RejectedError, match="config version"):
        reader.snapshots()
    with pytest.raises(IntegrityError, match="has format 3"):
        type(engine)(store, encryption=UNENCRYPTED).snapshots()
