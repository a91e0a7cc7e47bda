"""The init container's final word: one outcome, logged, written to the volume and to the
termination log. The sidecar reads the result file and exports it as metrics.

The result file is `<path>/.caretaker/restore-result.json`, one JSON object (see
`Outcome.to_json`); it is replaced atomically, so a reader sees the old or the new one.
The termination log (`/dev/termination-log` by default) gets a one-line JSON summary,
which Kubernetes shows as the container's last state message in `kubectl describe pod`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any, Literal

from restore.clock import format_time, parse_time
from restore.model import STATE_DIR

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

OutcomeKind = Literal["restored", "skipped", "first-boot", "failed", "planned"]
RESULT_FILE = "restore-result.json"
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
    files: int = 0
    bytes: int = 0
    duration_seconds: float = 0.0
    # Snapshots tried and rejected before `snapshot` was restored (or before giving up):
    # corrupt or incomplete, or their restored data failed the --check-cmd health check.
    skipped_snapshots: tuple[str, ...] = ()
    quarantined: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
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
    """Atomically replace the result file on the volume; return its path."""
    target = result_path(data_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_suffix(".tmp")
    temp.write_text(json.dumps(outcome.to_json(), indent=2) + "\n", encoding="utf-8")
    temp.replace(target)
    return target


def read_result(data_path: Path) -> Outcome | None:
    """Return the last restore outcome recorded on the volume, or None if there is none.

    Raise ValueError if the file exists but is not a valid result.
    """
    target = result_path(data_path)
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return Outcome.from_json(json.loads(text))
    except (KeyError, TypeError, json.JSONDecodeError) as error:
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
    not leave a file in the host's /dev. Raise OSError if the file cannot be written.
    """
    if not path.parent.is_dir() or (not create and not path.exists()):
        return False
    path.write_text(termination_message(outcome), encoding="utf-8")
    return True
