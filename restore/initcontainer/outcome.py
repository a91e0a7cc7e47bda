"""The init container's final word: one outcome, logged, written to the volume and to the
termination log. The sidecar reads the result file and exports it as metrics.

The result file is `<path>/.caretaker/restore-result.json`, one JSON object (see
`Outcome.to_json`); it is replaced atomically, so a reader sees the old or the new one.
The app can write the volume: the file is written and read through descriptors of
caretaker's state folder, never through a symlink, and read only if it is a regular file
(`restore.initcontainer.statedir`).

The termination log (`/dev/termination-log` by default) gets a one-line JSON summary,
which Kubernetes shows as the container's last state message in `kubectl describe pod`.
It is outside the volume (the kubelet mounts a file there), so its path is trusted up to
its last name; that name must be a regular file (`O_NOFOLLOW`, checked before it is
opened): a symlink, FIFO or device there is not written.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import TYPE_CHECKING, Any, Literal

from restore.clock import format_time, parse_time
from restore.errors import LocalIOError
from restore.initcontainer.statedir import RESULT_FILE, RESULT_TEMP, Volume
from restore.model import STATE_DIR
from restore.redaction import redact_text
from restore.safefs import open_regular

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

OutcomeKind = Literal["restored", "skipped", "first-boot", "failed", "planned"]
# Far above any outcome; bounds what a planted file can make the sidecar read.
RESULT_LIMIT = 1 << 20
# Kubernetes keeps at most this many bytes of a termination message.
TERMINATION_LOG_LIMIT = 4096
_SUMMARY_KEYS = (
    "outcome",
    "exit_code",
    "reason",
    "snapshot",
    "skipped_snapshots",
    "quarantined",
    "files",
    "bytes",
    "error",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outcome:
    outcome: OutcomeKind
    exit_code: int
    finished_at: datetime
    reason: str = ""
    snapshot: str | None = None
    snapshot_time: datetime | None = None
    # How old the restored snapshot was when the restore finished: a restore of an older
    # snapshot than expected (deleted newer ones, a replayed record) shows here.
    snapshot_age_seconds: float | None = None
    files: int = 0
    bytes: int = 0
    duration_seconds: float = 0.0
    # Snapshots tried and rejected before `snapshot` was restored (or before giving up):
    # corrupt or incomplete, or their restored data failed the --check-cmd health check.
    skipped_snapshots: tuple[str, ...] = ()
    quarantined: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The outcome as logged and written; an error text's URLs are redacted."""
        data = dataclasses.asdict(self)
        data["error"] = redact_text(self.error) if self.error else self.error
        data["finished_at"] = format_time(self.finished_at)
        data["snapshot_time"] = format_time(self.snapshot_time) if self.snapshot_time else None
        data["skipped_snapshots"] = list(self.skipped_snapshots)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        """Parse a result file's object. Raise KeyError/ValueError/TypeError if malformed."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values["finished_at"] = parse_time(data["finished_at"])
        if data.get("snapshot_time"):
            values["snapshot_time"] = parse_time(data["snapshot_time"])
        values["skipped_snapshots"] = tuple(data.get("skipped_snapshots") or ())
        return cls(**values)


def result_path(data_path: Path) -> Path:
    return data_path / STATE_DIR / RESULT_FILE


def write_result(data_path: Path, outcome: Outcome) -> Path:
    """Atomically and durably replace the result file on the volume; return its path.

    Raise UnsafeVolumeError if `.caretaker` or the file's names hold something caretaker
    did not put there (nothing is written then), OSError if the volume cannot be written.
    """
    text = json.dumps(outcome.to_json(), indent=2) + "\n"
    with Volume.open(data_path, create=True) as volume:
        volume.state().replace(RESULT_FILE, text.encode(), temp=RESULT_TEMP)
    return result_path(data_path)


def read_result(data_path: Path) -> Outcome | None:
    """Return the last restore outcome recorded on the volume, or None if there is none.

    Raise ValueError if the file exists but is not a valid result (or is not a regular
    file in a real `.caretaker` folder: it is then not read), OSError if it cannot be read.
    """
    target = result_path(data_path)
    try:
        with Volume.open(data_path, create=False) as volume:
            state = volume.existing_state()
            data = state.read(RESULT_FILE, limit=RESULT_LIMIT) if state else None
    except FileNotFoundError:
        return None
    except LocalIOError as error:  # not a folder, or an unsafe entry (UnsafeVolumeError)
        raise ValueError(str(error)) from error
    if data is None:
        return None
    try:
        return Outcome.from_json(json.loads(data))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"malformed restore result file {target}: {error}") from error


def termination_message(outcome: Outcome, limit: int = TERMINATION_LOG_LIMIT) -> str:
    """Return a one-line JSON summary of `outcome` no longer than `limit` bytes.

    Empty fields are left out; a long error message is shortened, never the JSON broken.
    """
    full = outcome.to_json()
    data = {k: full[k] for k in _SUMMARY_KEYS if full[k] or k in ("outcome", "exit_code")}
    text = json.dumps(data)  # ASCII only (escaped), so characters are bytes
    excess = len(text) - limit
    if excess > 0 and data.get("error"):
        # Dropping n characters of the message drops at least n bytes of its JSON form.
        error = str(data["error"])
        data["error"] = error[: max(len(error) - excess - 3, 0)] + "..."
        text = json.dumps(data)
    if len(text) > limit:
        text = json.dumps({k: data[k] for k in ("outcome", "exit_code", "reason") if k in data})
    return text


def write_termination_log(path: Path, outcome: Outcome, *, create: bool = True) -> bool:
    """Write the summary to `path`; return False if nothing was written.

    Nothing is written when the folder does not exist, nor, with `create=False`, when the
    file does not: the kubelet creates `/dev/termination-log` in every container, so the
    default path exists exactly where it is read, and a run on a workstation as root must
    not leave a file in the host's /dev. Raise OSError if the file cannot be written, and
    NotAFileError (an OSError) if its name holds a symlink, FIFO, device or folder.
    """
    if not path.parent.is_dir():
        return False
    try:
        fd = open_regular(path, os.O_WRONLY | os.O_TRUNC)
    except FileNotFoundError:
        if not create:
            return False
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(termination_message(outcome))
    return True
