"""`caretaker copy`: snapshots from one repository into another, by destination kind.

An object-store destination receives the source's blobs and records as they are
(`restore.snapshots.copy`); a git destination receives each snapshot as a commit
(`restore.backends.git.importer`). The source must be an object store: git repositories
hold no blob ids to compare, so copying out of one is not supported. The destination reads
the same environment as the source, except where a `CARETAKER_TO_*` variable names its own
value (`destination_environ`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from restore.errors import ConfigError, IntegrityError
from restore.model import Copied, SnapshotInfo
from restore.repository import Repository

_PREFIX = "CARETAKER_TO_"
_WORKERS = 4


def destination_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the destination is opened with: `CARETAKER_TO_AWS_X` stands for
    `AWS_X`, `CARETAKER_TO_X` for `CARETAKER_X` (`CARETAKER_TO_S3_ENDPOINT`,
    `CARETAKER_TO_GIT_SSH_KEY_FILE`, `CARETAKER_TO_PASSWORD_FILE`); the rest is shared."""
    overrides = {}
    for key, value in environ.items():
        if key.startswith(_PREFIX) and len(key) > len(_PREFIX):
            name = key.removeprefix(_PREFIX)
            overrides[name if name.startswith("AWS_") else f"CARETAKER_{name}"] = value
    return {**environ, **overrides}


def copy_snapshots(source: Repository, dest: Repository, snapshots: Sequence[SnapshotInfo]) -> list[Copied]:
    """Copy the snapshots `dest` lacks; then verify what was written (structure: every
    object each copied snapshot needs is there). Raise ConfigError for a git source or a
    copy into itself, IntegrityError if the source or the written copy is damaged."""
    from restore.snapshots.engine import Engine  # noqa: PLC0415 - zstandard, only when copying

    if not isinstance(source, Engine):
        raise ConfigError.single(
            "repository", source.describe(), "copy reads file:// and s3:// repositories only"
        )
    if dest.describe() == source.describe():
        raise ConfigError.single("to", dest.describe(), "is the repository copied from")
    if isinstance(dest, Engine):
        with dest.lease() as lease:
            dest.ensure_config()
            records = [source.record(s.id) for s in snapshots]
            from restore.snapshots.copy import copy_snapshots as copy_records  # noqa: PLC0415

            done = copy_records(source.store, records, dest.store, lease, _WORKERS)
    else:
        from restore.backends.git.importer import import_snapshots  # noqa: PLC0415 - GitPython
        from restore.backends.git.repository import GitRepository  # noqa: PLC0415

        assert isinstance(dest, GitRepository)  # noqa: S101 - the only other kind
        done = import_snapshots(dest.remote, source, snapshots)
    _verify(dest, [c.snapshot.id for c in done if c.copied])
    return sorted(done, key=lambda c: c.snapshot.time)


def _verify(dest: Repository, ids: list[str]) -> None:
    if not ids:
        return
    damaged = [r for r in dest.verify(ids) if not r.ok]
    if damaged:
        problems = "; ".join(f"{r.snapshot_id}: {d.object}: {d.problem}" for r in damaged for d in r.damage)
        raise IntegrityError(f"the copies in {dest.describe()} do not verify: {problems}")
