"""A git snapshot written into the restore's folder by caretaker's tree writer, not by git.

`git checkout-index` writes by path: it checks a path's folders for symlinks, then opens
it — a race a writer swapping folders on the volume meanwhile could win, and applying the
metadata afterwards by path would be another. So git writes nothing into the volume: the
tree's entries (with their `.caretaker-meta` modes, owners and mtimes) go to the same tree
writer as the engine's restore (`restore.snapshots.treewriter`: through folder descriptors,
never following a symlink, setuid/setgid stripped unless kept), and file contents come
from `git cat-file --batch`. Every blob is hashed on its way to the disk and must match its
id: each byte written is checked, as the engine checks its chunks.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from restore.backends.git import meta as git_meta
from restore.backends.git.cmd import GitRunner
from restore.backends.git.tree import FILE_MODES, SYMLINK_MODE, TREE_MODE, TreeEntry
from restore.errors import IntegrityError
from restore.model import Progress, RestoreStats
from restore.nodes import DIR, FILE, SYMLINK, sort_key
from restore.snapshots.manifest import Entry
from restore.snapshots.treewriter import TreeWriter, open_target, write_error

# A blob reaches the writer in pieces of at most this many bytes: a large file is never
# held in memory whole.
PIECE = 8 << 20
BATCH = ("cat-file", "--batch")
# A commit made by hand has no `.caretaker-meta`: what a checkout with umask 022 gives.
_PLAIN_MODES = {"100644": 0o644, "100755": 0o755, TREE_MODE: 0o755, SYMLINK_MODE: 0o777}
_KINDS = {TREE_MODE: DIR, SYMLINK_MODE: SYMLINK}


def write_tree(
    runner: GitRunner,
    dest: Path,
    tree: Sequence[TreeEntry],
    meta: Sequence[git_meta.Meta] | None,
    progress: Progress,
    *,
    keep_setid: bool,
) -> RestoreStats:
    """Write the checked `tree` (with its metadata lines) into the empty folder `dest`.

    Raise IntegrityError if a blob is not what the tree says, LocalIOError if `dest`
    cannot be written (or is not a real folder, or something changed it meanwhile).
    """
    links = blobs_of(tree, links=True)
    targets = link_targets(runner.run(*BATCH, stdin=_requests(links)), tree) if links else {}
    todo = entries(tree, meta, targets, (os.geteuid(), os.getegid()))
    with open_target(dest) as root, runner.piped(*BATCH) as git:
        assert git.stdin is not None  # noqa: S101 - piped makes both pipes
        assert git.stdout is not None  # noqa: S101
        feed = BlobFeed(git.stdin, git.stdout, blobs_of(tree, links=False))
        writer = TreeWriter(root, feed, progress, keep_setid=keep_setid)
        try:
            writer.write_all(todo)
        except OSError as error:
            raise write_error(dest, error) from error
        finally:
            writer.close()
        feed.finish()
    return writer.stats


def entries(
    tree: Sequence[TreeEntry],
    meta: Sequence[git_meta.Meta] | None,
    targets: dict[str, str],
    owner: tuple[int, int],
) -> list[Entry]:
    """The snapshot as the tree writer takes it: each folder before its contents.

    `tree` and `meta` are checked already (`tree_problems`, `git_meta.check`); folders only
    `meta` names (git keeps no empty folder) are added; `.caretaker-meta` itself is left
    out. `targets` holds each symlink's target; entries `meta` does not describe get a
    plain checkout's modes, `owner` (uid, gid) and the current time.
    """
    described = {line.path: line for line in meta or ()}
    now = time.time_ns()
    found: dict[str, Entry] = {}
    for item in tree:
        if item.path == git_meta.META and meta is not None:
            continue
        line = described.get(item.path)
        kind = _KINDS.get(item.mode, FILE)
        uid, gid = (line.uid, line.gid) if line else owner
        found[item.path] = Entry(
            path=item.path,
            kind=kind,
            mode=line.mode if line else _PLAIN_MODES[item.mode],
            uid=uid,
            gid=gid,
            mtime_ns=line.mtime_ns if line else now,
            size=item.size if kind == FILE else 0,
            target=targets.get(item.path, ""),
            chunks=(b"",) * -(-item.size // PIECE) if kind == FILE else (),
        )
    for line in meta or ():
        if line.kind == "d" and line.path not in found:
            found[line.path] = Entry(line.path, DIR, line.mode, line.uid, line.gid, line.mtime_ns)
    return sorted(found.values(), key=lambda entry: sort_key(entry.path))


def blobs_of(tree: Sequence[TreeEntry], *, links: bool) -> list[tuple[str, int]]:
    """(id, size) of the symlinks' blobs (`links`) or of the files' non-empty blobs, in
    the order the tree writer takes them (`entries`)."""
    if links:
        chosen = [e for e in tree if e.mode == SYMLINK_MODE]
    else:
        chosen = [e for e in tree if e.mode in FILE_MODES and e.size and e.path != git_meta.META]
    return [(e.sha, e.size) for e in sorted(chosen, key=lambda e: sort_key(e.path))]


def _hasher(sha: str, size: int) -> hashlib._Hash:
    """Git's object id in the making: SHA-1, or SHA-256 in a repository that uses it."""
    hasher = hashlib.sha256() if len(sha) == 64 else hashlib.sha1()  # noqa: S324 - git's object id
    hasher.update(b"blob %d\0" % size)
    return hasher


def read_blob(stream: IO[bytes], sha: str, size: int) -> Iterator[bytes]:
    """Yield the content of the next answer of `git cat-file --batch` in pieces, checking
    that it is blob `sha` of `size` bytes. Raise IntegrityError if it is not — before the
    last piece is yielded, so a blob that fails its hash is never written whole."""
    header = stream.readline().decode("ascii", "replace").split()
    if header != [sha, "blob", str(size)]:
        raise IntegrityError(f"blob {sha} of {size} bytes cannot be read: git answered {' '.join(header)!r}")
    hasher = _hasher(sha, size)
    left = size
    while left:
        piece = stream.read(min(left, PIECE))
        if not piece:
            raise IntegrityError(f"blob {sha}: git's answer ends {left} bytes short")
        hasher.update(piece)
        left -= len(piece)
        if not left:
            _check(stream, sha, hasher)
        yield piece
    if not size:
        _check(stream, sha, hasher)


def _check(stream: IO[bytes], sha: str, hasher: hashlib._Hash) -> None:
    stream.read(1)  # the newline after each answer
    if hasher.hexdigest() != sha:
        raise IntegrityError(f"blob {sha} does not hash to its id (got {hasher.hexdigest()})")


def link_targets(answers: bytes, tree: Sequence[TreeEntry]) -> dict[str, str]:
    """path -> target of every symlink, from `cat-file --batch` answers to `blobs_of(tree,
    links=True)`. Raise IntegrityError for a blob that is not what the tree says."""
    stream = io.BytesIO(answers)
    links = sorted((e for e in tree if e.mode == SYMLINK_MODE), key=lambda e: sort_key(e.path))
    found = {}
    for link in links:
        raw = b"".join(read_blob(stream, link.sha, link.size))
        found[link.path] = raw.decode("utf-8", "surrogateescape")
    return found


class BlobFeed:
    """The files' contents from a running `git cat-file --batch`, piece by piece, in the
    order of `blobs` (see `blobs_of`); a thread sends the requests while the writer reads."""

    def __init__(self, stdin: IO[bytes], stdout: IO[bytes], blobs: list[tuple[str, int]]) -> None:
        self._pieces = (piece for sha, size in blobs for piece in read_blob(stdout, sha, size))
        self._sender = threading.Thread(target=_send, args=(stdin, blobs), daemon=True)
        self._sender.start()

    def next(self) -> bytes:
        piece = next(self._pieces, None)
        if piece is None:
            raise IntegrityError("git answered fewer blobs than the tree holds")
        return piece

    def finish(self) -> None:
        """Wait for the requests to be sent (after the last piece was read)."""
        self._sender.join()


def _requests(blobs: Sequence[tuple[str, int]]) -> bytes:
    return b"".join(b"%s\n" % sha.encode("ascii") for sha, _ in blobs)


def _send(stdin: IO[bytes], blobs: list[tuple[str, int]]) -> None:
    # Requests go in while answers come out: written from the reading thread, a full pipe
    # each way would block both. A git that died (the restore failing) ends the sending.
    try:
        for start in range(0, len(blobs), 1024):
            stdin.write(_requests(blobs[start : start + 1024]))
        stdin.close()
    except (BrokenPipeError, ValueError):
        pass
