"""The sidecar's configuration as typed, frozen values.

Two sources: the environment/flags alone (one backup job, optional prune and verify), or a
YAML file (`--config`, typically a ConfigMap) with any number of jobs. Top-level flags
(repository, path, listen, rpo, shutdown) override the file. Loading reports every problem
at once (`ConfigError`, exit 2) before anything runs. The readers live in
`sidecar.settings.yamlfile` (YAML) and `sidecar.settings.options` (flags), merged by
`sidecar.settings.load`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from restore.claims.holder import DEFAULT_TIMING, Timing
from restore.notify import Notify
from restore.redaction import has_userinfo
from restore.retention import RetentionPolicy
from restore.snapshots.encryption import DESTINATION, Encryption
from sidecar.settings.schedule import Schedule

JobKind = Literal["backup", "prune", "verify", "copy", "command", "http"]
JOB_KINDS: tuple[JobKind, ...] = ("backup", "prune", "verify", "copy", "command", "http")
DEFAULT_LISTEN = ":9090"
DEFAULT_GRACE = timedelta(seconds=25)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CommandSpec:
    """A process to run: argv (no shell), extra environment, working directory, time limit.

    `inherit_env` names caretaker's own variables (`AWS_*`, `CARETAKER_*`) the process may
    see; it gets none of them otherwise (see `sidecar.children`).
    """

    argv: tuple[str, ...]
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    inherit_env: tuple[str, ...] = ()
    workdir: Path | None = None  # None: the data folder
    timeout: timedelta = timedelta(hours=1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class HttpSpec:
    """An HTTP request to the app (typically on localhost) and the status it must answer."""

    url: str
    method: str = "GET"
    expect_status: int = 200
    timeout: timedelta = timedelta(seconds=10)
    # A redirect is an answer like any other unless asked to follow it: a POST followed
    # as a GET (what HTTP clients do on 302) did not do what the hook was meant to do.
    follow_redirects: bool = False


Hook = CommandSpec | HttpSpec


@dataclasses.dataclass(frozen=True, kw_only=True)
class BackupAction:
    excludes: tuple[str, ...] = ()
    allow_empty: bool = False
    skip_unchanged: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class PruneAction:
    policy: RetentionPolicy


@dataclasses.dataclass(frozen=True, kw_only=True)
class VerifyAction:
    read_data: float = 0.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class CopyAction:
    to: str  # the second repository's URL; its settings from CARETAKER_TO_* variables


Action = BackupAction | PruneAction | VerifyAction | CopyAction | CommandSpec | HttpSpec


@dataclasses.dataclass(frozen=True, kw_only=True)
class Defaults:
    """Per-job settings every job inherits unless it sets its own."""

    timezone: str = "UTC"
    jitter: timedelta = timedelta(0)
    retries: int = 2
    retry_backoff: timedelta = timedelta(seconds=30)
    misfire_grace: timedelta = timedelta(minutes=5)


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobConfig:
    name: str
    kind: JobKind
    action: Action
    schedule: Schedule | None  # None: runs only after another job (`then`)
    run_on_start: bool = False
    retries: int = 2
    retry_backoff: timedelta = timedelta(seconds=30)
    misfire_grace: timedelta = timedelta(minutes=5)
    # Backups honour it by aborting cleanly; commands and HTTP calls carry their own.
    timeout: timedelta | None = None
    before: tuple[Hook, ...] = ()
    after: tuple[Hook, ...] = ()
    then: tuple[str, ...] = ()  # jobs to run after each successful run of this one
    notify: Notify | None = None  # this job's own notifications and heartbeat


@dataclasses.dataclass(frozen=True)
class Listen:
    host: str  # "" = every interface
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SidecarConfig:
    repository: str
    path: Path
    listen: Listen
    jobs: tuple[JobConfig, ...]
    rpo: timedelta | None = None
    shutdown_grace: timedelta = DEFAULT_GRACE
    backup_on_shutdown: bool = False
    # Every job's notifications; the heartbeat pings around backup runs.
    notify: Notify = dataclasses.field(default_factory=Notify)
    claim: Timing = DEFAULT_TIMING
    unready_on_standby: bool = False
    source: str = "environment"  # or the config file's path, for logs
    # The repository's password (never printed) or the opt-out; one for the process, so the
    # password's key derivation is paid once, not by every job.
    encryption: Encryption = dataclasses.field(default_factory=Encryption)
    # The copy jobs' destination's (CARETAKER_TO_PASSWORD_FILE...), likewise.
    to_encryption: Encryption = dataclasses.field(default_factory=lambda: Encryption(options=DESTINATION))

    def job(self, name: str) -> JobConfig:
        return next(job for job in self.jobs if job.name == name)

    @property
    def writes(self) -> bool:
        """Whether a job writes the repository (then the sidecar claims it)."""
        return any(job.kind in {"backup", "prune"} for job in self.jobs)


def parse_listen(text: str) -> Listen:
    """Parse `:9090`, `127.0.0.1:9090` or `[::1]:9090`. Raise ValueError if malformed."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be host:port or :port with a port from 0 to 65535")
    return Listen(host.removeprefix("[").removesuffix("]"), int(port))


def check_http_url(url: str) -> None:
    """Raise ValueError unless `url` is an absolute http(s) URL with a host and no user info.

    `user:password@` would not be sent as credentials (the call would fail at run time,
    not here), and it is a secret in a URL that is printed; query values are redacted.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8080/")
    if has_userinfo(url):
        raise ValueError("user information (user:password@) is not supported in HTTP call URLs")
