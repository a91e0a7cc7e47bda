"""Repository URL scheme -> implementation.

`file://` and `s3://` are object stores under the snapshot engine; `git+...://` is the git
backend. Heavy libraries (botocore, GitPython) are imported only inside the factory that needs
them, so an init container that finds its volume populated never pays for them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit

from restore.claims.holder import Claimant
from restore.clock import Clock, utc_now
from restore.deadline import Deadline
from restore.errors import ConfigError, Problem
from restore.redaction import has_userinfo, redact_url
from restore.repository import Repository
from restore.snapshots.encryption import Encryption

if TYPE_CHECKING:
    from restore.snapshots.store import ObjectStore


@dataclasses.dataclass(frozen=True, kw_only=True)
class OpenOptions:
    """What every backend factory receives besides the URL."""

    environ: Mapping[str, str]
    clock: Clock = utc_now
    # Who claims the repository to write it (restore.claims); None: a writer named after
    # this process, for tools and tests.
    claimant: Claimant | None = None
    # Bounds every storage call of the run, and stops them all on SIGTERM or a cancelled job.
    deadline: Deadline = dataclasses.field(default_factory=Deadline)
    # The password (or the opt-out of encryption); one per repository opened.
    encryption: Encryption = dataclasses.field(default_factory=Encryption)
    # Opened to restore from: reading ahead what a restore needs is worth it.
    restoring: bool = False


RepositoryFactory = Callable[[SplitResult, OpenOptions], Repository]


def _local(url: SplitResult, options: OpenOptions) -> Repository:
    from restore.backends.local import LocalStore  # noqa: PLC0415 - keeps start-up light

    return _engine(LocalStore.from_url(url), options)


def _s3(url: SplitResult, options: OpenOptions) -> Repository:
    from restore.backends.s3.store import S3Store  # noqa: PLC0415 - imports botocore

    return _engine(S3Store.from_url(url, options.environ, options.deadline), options)


def _engine(store: ObjectStore, options: OpenOptions) -> Repository:
    from restore.snapshots.engine import Engine  # noqa: PLC0415

    return Engine(
        store,
        encryption=options.encryption,
        clock=options.clock,
        claimant=options.claimant,
        restoring=options.restoring,
    )


def _git(url: SplitResult, options: OpenOptions) -> Repository:
    from restore.backends.git.repository import GitRepository  # noqa: PLC0415 - imports GitPython

    return GitRepository.from_url(
        url, options.environ, clock=options.clock, deadline=options.deadline, claimant=options.claimant
    )


_FACTORIES: dict[str, RepositoryFactory] = {
    "file": _local,
    "s3": _s3,
    "git+ssh": _git,
    "git+https": _git,
    "git+http": _git,
    "git+file": _git,
    "git+git": _git,  # git daemon (git://): unauthenticated, for trusted networks and tests
}


def password_problem(url: str, encryption: Encryption) -> Problem | None:
    """A password given for a git repository: git stores browsable files by design, and a
    password it silently ignored would promise a protection that is not there."""
    if encryption.password is None or not urlsplit(url).scheme.startswith("git+"):
        return None
    return Problem(
        encryption.password_source,
        "***",
        "git repositories store the volume as browsable files, unencrypted by design; remove "
        "the password, or use a file:// or s3:// repository to have the data encrypted",
    )


def scheme_problem(url: str) -> str | None:
    """What is wrong with the scheme of a repository URL, or None if a backend serves it."""
    scheme = urlsplit(url).scheme
    if scheme in _FACTORIES:
        return None
    known = ", ".join(f"{name}://" for name in _FACTORIES)
    return f"unsupported repository URL scheme {scheme!r}; use one of {known}"


# Where each kind of repository takes its secrets instead of the URL (mounted Secret files).
_GIT_HTTP_FILES = "CARETAKER_GIT_TOKEN_FILE or CARETAKER_GIT_PASSWORD_FILE (and CARETAKER_GIT_USERNAME)"
_SECRET_FILES = {
    "s3": "AWS_ACCESS_KEY_ID_FILE and AWS_SECRET_ACCESS_KEY_FILE (or the AWS_* variables, or IRSA)",
    "git+https": _GIT_HTTP_FILES,
    "git+http": _GIT_HTTP_FILES,
    "git+ssh": "CARETAKER_GIT_SSH_KEY_FILE (a deploy key)",
}


def credentials_problem(url: str) -> str | None:
    """Why `url` must not be used as written (it carries credentials), or None.

    URLs are printed (logs, /status, process lists, git's config): credentials belong in
    the mounted-Secret files each backend reads. An SSH URL may name its account (`git@`).
    """
    parts = urlsplit(url)
    if not has_userinfo(url) or (parts.scheme == "git+ssh" and parts.password is None):
        return None
    instead = _SECRET_FILES.get(parts.scheme, "the backend's *_FILE variables")
    return f"credentials do not belong in the URL; put them in {instead}"


def _local_settings(url: SplitResult, _: Mapping[str, str]) -> object:
    from restore.backends.local import LocalStore  # noqa: PLC0415

    return LocalStore.from_url(url)


def _s3_settings(url: SplitResult, environ: Mapping[str, str]) -> object:
    from restore.backends.s3.settings import S3Settings  # noqa: PLC0415 - no botocore in it

    return S3Settings.from_url(url, environ)


def _git_settings(url: SplitResult, environ: Mapping[str, str]) -> object:
    from restore.backends.git.settings import GitSettings  # noqa: PLC0415 - no GitPython in it

    return GitSettings.from_url(url, environ)


# What each backend reads from the URL and the environment, judged without opening anything.
_SETTINGS: dict[str, Callable[[SplitResult, Mapping[str, str]], object]] = {
    "file": _local_settings,
    "s3": _s3_settings,
    **dict.fromkeys((s for s in _FACTORIES if s.startswith("git+")), _git_settings),
}


def repository_problems(url: str, environ: Mapping[str, str]) -> list[Problem]:
    """Every problem with a repository URL and its backend's settings in `environ` (scheme,
    bucket name rules, path, credentials files, tuning), found without opening anything:
    the checks `open_repository` makes, for a configuration check before anything runs."""
    problem = scheme_problem(url) or credentials_problem(url)
    if problem is not None:
        return [Problem("repository", redact_url(url), problem)]
    try:
        _SETTINGS[urlsplit(url).scheme](urlsplit(url), environ)
    except ConfigError as error:
        return _as_written(url, error).problems
    return []


def _as_written(url: str, error: ConfigError) -> ConfigError:
    # Name the URL as the user wrote it (urllib normalises `file:x` to `file:///x`), without
    # the password a refused URL may hold.
    shown = redact_url(url)
    problems = [Problem(p.key, shown, p.message) if p.key == "repository" else p for p in error.problems]
    return ConfigError(problems)


def open_repository(url: str, options: OpenOptions) -> Repository:
    """Open the repository a URL names.

    Raise ConfigError for an unknown scheme, credentials in the URL, a bad URL, or a
    password for a git repository.
    """
    problem = scheme_problem(url) or credentials_problem(url)
    if problem is not None:
        raise ConfigError.single("repository", redact_url(url), problem)
    refused = password_problem(url, options.encryption)
    if refused is not None:
        raise ConfigError([refused])
    parts = urlsplit(url)
    factory = _FACTORIES[parts.scheme]
    try:
        return factory(parts, options)
    except ConfigError as error:
        raise _as_written(url, error) from error
