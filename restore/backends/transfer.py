"""`caretaker copy`: snapshots from one repository into another, by destination kind.

An object-store destination receives the source's blobs and records, re-sealed under its
own key when either side is encrypted (`restore.snapshots.copy`); a git destination
receives each snapshot as a commit (`restore.backends.git.importer`). Either way the copy
holds the destination's writer claim. The source must be an object store: git repositories
hold no blob ids to compare, so copying out of one is not supported.

Data never leaves encryption silently: from an encrypted source, a destination that stores
it readable (git, or an unencrypted object store) is refused unless the caller opted out
of encryption for the destination (`plain_allowed`, --to-insecure-no-encryption).

The destination reads the same environment as the source, except where a `CARETAKER_TO_*`
variable names its own value (`destination_environ`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from restore.errors import ConfigError, IntegrityError
from restore.model import Copied, SnapshotInfo
from restore.repository import Repository
from restore.snapshots.encryption import DESTINATION

_PREFIX = "CARETAKER_TO_"
_WORKERS = 4
ROLE = "copy"


def destination_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the destination is opened with: `CARETAKER_TO_AWS_X` stands for
    `AWS_X`, `CARETAKER_TO_X` for `CARETAKER_X` (`CARETAKER_TO_S3_ENDPOINT`,
    `CARETAKER_TO_GIT_SSH_KEY_FILE`); the rest is shared. (The destination's password is
    not read from here: see restore.commands.copy.)"""
    overrides = {}
    for key, value in environ.items():
        if key.startswith(_PREFIX) and len(key) > len(_PREFIX):
            name = key.removeprefix(_PREFIX)
            overrides[name if name.startswith("AWS_") else f"CARETAKER_{name}"] = value
    return {**environ, **overrides}


def copy_snapshots(
    source: Repository, dest: Repository, snapshots: Sequence[SnapshotInfo], *, plain_allowed: bool
) -> list[Copied]:
    """Copy the snapshots `dest` lacks; then verify what was written (structure: every
    object each copied snapshot needs is there). Raise ConfigError for a git source, a
    copy into itself, or encrypted data into a readable destination without
    `plain_allowed`; LeaseHeldError if another writer holds the destination; IntegrityError
    if the source or the written copy is damaged."""
    from restore.snapshots.engine import Engine  # noqa: PLC0415 - zstandard, only when copying

    if not isinstance(source, Engine):
        raise ConfigError.single(
            "repository", source.describe(), "copy reads file:// and s3:// repositories only"
        )
    if dest.describe() == source.describe():
        raise ConfigError.single("to", dest.describe(), "is the repository copied from")
    records = [source.record(s.id) for s in snapshots]
    encrypted = source.codec().cipher is not None if records else False
    if isinstance(dest, Engine):
        with dest.writer(ROLE) as claim:
            codec = dest.ensure()
            if encrypted and codec.cipher is None and not plain_allowed:
                raise _readable(dest, "is not encrypted")
            from restore.snapshots.copy import Side, copy_snapshots as copy_records  # noqa: PLC0415, I001

            sides = Side(source.store, source.codec()), Side(dest.store, codec)
            done = copy_records(sides[0], records, sides[1], claim, _WORKERS)
    else:
        from restore.backends.git.importer import import_snapshots  # noqa: PLC0415 - GitPython
        from restore.backends.git.repository import GitRepository  # noqa: PLC0415

        assert isinstance(dest, GitRepository)  # noqa: S101 - the only other kind
        if encrypted and not plain_allowed:
            raise _readable(dest, "is a git repository: it stores files readable, by design")
        with dest.writer(ROLE):
            done = import_snapshots(dest.remote, source, snapshots)
    _verify(dest, [c.snapshot.id for c in done if c.copied])
    return sorted(done, key=lambda c: c.snapshot.time)


def _readable(dest: Repository, why: str) -> ConfigError:
    return ConfigError.single(
        DESTINATION.opt_out,
        False,
        f"the source is encrypted and {dest.describe()} {why}: refusing to write its data "
        "where whoever can read the storage reads it; pass --to-insecure-no-encryption to "
        "copy it there anyway, or copy into an encrypted file:// or s3:// repository",
    )


def _verify(dest: Repository, ids: list[str]) -> None:
    if not ids:
        return
    damaged = [r for r in dest.verify(ids) if not r.ok]
    if damaged:
        problems = "; ".join(f"{r.snapshot_id}: {d.object}: {d.problem}" for r in damaged for d in r.damage)
        raise IntegrityError(f"the copies in {dest.describe()} do not verify: {problems}")
