"""Snapshots as commits: the message and trailers a backup writes, and reading them back.

Each backup commit carries `Caretaker-*` trailers (files, folders, bytes, host, the folder
inside the repository, tags), so listing snapshots needs commit objects only — never trees
or file contents. Commits without our trailer, or for another `path=`, are not snapshots
of this volume (a README commit, another volume sharing the branch) and are skipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime

from restore.clock import format_time, parse_time
from restore.model import SnapshotInfo, human_size

TRAILER = "Caretaker-"
ROOT_PATH = "/"
_FIELDS = "%H%x00%h%x00%T%x00%P%x00%an%x00%ae%x00%ad%x00%cn%x00%ce%x00%cd%x00%B%x1e"
LOG_ARGS = ("--first-parent", "--abbrev=12", "--date=raw", f"--format={_FIELDS}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Commit:
    """One commit of the branch's first-parent chain, as `git log` printed it."""

    sha: str
    short: str
    tree: str
    parents: tuple[str, ...]
    author: tuple[str, str, str]  # name, email, raw date ("1700000000 +0000")
    committer: tuple[str, str, str]
    message: str

    def trailers(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for line in self.message.splitlines():
            key, sep, value = line.partition(": ")
            if sep and key.startswith(TRAILER) and " " not in key:
                found.setdefault(key.removeprefix(TRAILER).lower(), []).append(value.strip())
        return found

    def env(self) -> dict[str, str]:
        """The identity and dates to recreate this commit with `git commit-tree`."""
        return identity_env(self.author, self.committer)


def identity_env(author: tuple[str, str, str], committer: tuple[str, str, str]) -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": author[0],
        "GIT_AUTHOR_EMAIL": author[1],
        "GIT_AUTHOR_DATE": author[2],
        "GIT_COMMITTER_NAME": committer[0],
        "GIT_COMMITTER_EMAIL": committer[1],
        "GIT_COMMITTER_DATE": committer[2],
    }


def raw_date(moment: datetime) -> str:
    return f"{int(moment.timestamp())} +0000"


def parse_log(output: bytes) -> list[Commit]:
    """Parse `git log LOG_ARGS` output (newest first)."""
    commits = []
    for record in output.decode("utf-8", "surrogateescape").split("\x1e"):
        fields = record.lstrip("\n").split("\x00")
        if len(fields) != 11:
            continue
        sha, short, tree, parents, an, ae, ad, cn, ce, cd, message = fields
        commits.append(
            Commit(
                sha=sha,
                short=short,
                tree=tree,
                parents=tuple(parents.split()),
                author=(an, ae, ad),
                committer=(cn, ce, cd),
                message=message,
            )
        )
    return commits


def snapshot_of(commit: Commit, path: str) -> SnapshotInfo | None:
    """The snapshot a commit records for `path`, or None if it is not one of ours."""
    trailers = commit.trailers()
    if trailers.get("path", [None])[-1] != (path or ROOT_PATH) or "files" not in trailers:
        return None

    def number(key: str) -> int:
        try:
            return int(trailers.get(key, ["0"])[-1])
        except ValueError:
            return 0

    try:  # the trailer has microseconds; git's own dates only seconds
        moment = parse_time(trailers["time"][-1])
    except (KeyError, ValueError):
        moment = datetime.fromtimestamp(int(commit.author[2].split()[0]), tz=UTC)
    return SnapshotInfo(
        # A snapshot copied from another repository keeps its id there (`caretaker copy`).
        id=trailers.get("snapshot", [commit.short])[-1].lower(),
        time=moment,
        files=number("files"),
        dirs=number("dirs"),
        bytes=number("bytes"),
        host=trailers.get("host", [""])[-1],
        tags=tuple(trailers.get("tag", [])),
        path=trailers.get("source-path", [""])[-1],
    )


def message(
    template: str, fields: Mapping[str, object], trailers: Mapping[str, object], tags: tuple[str, ...]
) -> str:
    """The commit message: the user's template, a blank line, then our trailers."""
    subject = template.format_map(fields).strip() or "caretaker backup"
    lines = [f"{TRAILER}{key}: {value}" for key, value in trailers.items()]
    lines += [f"{TRAILER}Tag: {tag}" for tag in tags]
    return f"{subject}\n\n" + "\n".join(lines) + "\n"


def message_fields(
    *, moment: datetime, host: str, counts: Mapping[str, int], branch: str, path: str
) -> dict[str, object]:
    return {
        "time": format_time(moment.replace(microsecond=0)),
        "host": host or "unknown",
        "size": human_size(counts["bytes"]),
        "branch": branch,
        "path": path or ROOT_PATH,
        **counts,
    }
