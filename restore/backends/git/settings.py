"""Git settings: the `git+…://` URL plus the `CARETAKER_GIT_*` environment, checked at once.

The URL names the remote and, in its fragment, the branch and the folder inside the
repository: `git+ssh://git@host/org/repo.git#branch=backups&path=pods/web`. Credentials are
never part of the URL: a password or token in it would end up in the process list and in
git's own config, so it is refused (over HTTP(S) a user name too, which is often a token)
and the `*_FILE` variables are the only way to pass secrets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import string
import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl

from restore.backends.envreader import EnvReader
from restore.errors import ConfigError
from restore.redaction import redact_url
from restore.values import boolean as parse_bool

DEFAULT_BRANCH = "main"
DEFAULT_AUTHOR = "caretaker <caretaker@localhost>"
DEFAULT_MESSAGE = "backup of {host} at {time}: {files} files, {size}"
# GitHub warns above 50 MiB and rejects files above 100 MiB; every changed copy stays in
# history for good, so a big changing file is worth a warning in every log.
DEFAULT_LARGE_FILE = 50 * 1024 * 1024
MESSAGE_FIELDS = frozenset(
    {"time", "host", "files", "dirs", "bytes", "size", "new", "changed", "deleted", "branch", "path"}
)
PRUNE_MODES = ("off", "squash")
_TRANSPORTS = {
    "git+ssh": "ssh",
    "git+https": "https",
    "git+http": "http",
    "git+file": "file",
    "git+git": "git",
}
_AUTHOR = re.compile(r"^\s*([^<>]+?)\s*<([^<>\s]+)>\s*$")
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_BAD_REF = re.compile(r"(^[-/.])|(\.\.)|([\x00-\x20~^:?*\[\\\x7f])|(@\{)|(/\.)|(//)|(\.lock$)|([/.]$)")


def default_state_dir() -> Path:
    """Where private git dirs live unless CARETAKER_GIT_STATE_DIR says otherwise."""
    return Path(tempfile.gettempdir()) / "caretaker-git"


@dataclasses.dataclass(frozen=True, kw_only=True)
class GitSettings:
    """Everything GitRepository needs to know about its remote and how to write to it."""

    remote: str  # the URL git is given: no `git+`, no fragment, never a password
    display: str  # the caretaker URL for logs and errors
    transport: str  # ssh | https | http | file | git
    branch: str = DEFAULT_BRANCH
    path: str = ""  # folder inside the repository ("" = its root), `/`-separated
    ssh_key_file: Path | None = None
    known_hosts_file: Path | None = None
    accept_new_host_keys: bool = False
    username: str | None = None
    secret_file: Path | None = None  # token or password, read by the askpass helper only
    author_name: str = "caretaker"
    author_email: str = "caretaker@localhost"
    message: str = DEFAULT_MESSAGE
    prune: str = "off"
    large_file_bytes: int = DEFAULT_LARGE_FILE
    state_dir: Path = dataclasses.field(default_factory=default_state_dir)

    @property
    def cache_key(self) -> str:
        """Names this remote+branch+path's folder in the state dir (stable across runs)."""
        text = f"{self.remote}\n{self.branch}\n{self.path}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def ref(self) -> str:
        return f"refs/heads/{self.branch}"

    @property
    def tracking_ref(self) -> str:
        """Where fetches keep the remote's branch locally (`origin`'s remote-tracking ref)."""
        return f"refs/remotes/origin/{self.branch}"

    @classmethod
    def from_url(cls, url: SplitResult, environ: Mapping[str, str]) -> GitSettings:
        """Read URL and environment. Raise ConfigError naming every bad key and value."""
        reader = _Reader(environ)
        remote, display, transport = reader.remote(url)
        branch, path = reader.fragment(url.fragment)
        name, email = reader.author()
        settings = cls(
            remote=remote,
            display=display,
            transport=transport,
            branch=branch,
            path=path,
            ssh_key_file=reader.file("CARETAKER_GIT_SSH_KEY_FILE"),
            known_hosts_file=reader.file("CARETAKER_GIT_KNOWN_HOSTS_FILE"),
            accept_new_host_keys=reader.flag("CARETAKER_GIT_ACCEPT_NEW_HOST_KEYS"),
            username=reader.username(),
            secret_file=reader.secret_file(),
            author_name=name,
            author_email=email,
            message=reader.message(),
            prune=reader.choice("CARETAKER_GIT_PRUNE", PRUNE_MODES) or "off",
            large_file_bytes=reader.size("CARETAKER_GIT_LARGE_FILE", DEFAULT_LARGE_FILE),
            state_dir=Path(reader.first("CARETAKER_GIT_STATE_DIR") or default_state_dir()),
        )
        if reader.problems:
            raise ConfigError(reader.problems)
        return settings


def parse_size(text: str) -> int:
    """Parse `1048576`, `512k`, `50M`, `50MiB`, `2G`. Raise ValueError if not a size."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size (use e.g. 50M, 1G, 0 to disable): {text!r}")
    power = " kmgt".index(match.group(2).lower() or " ")
    return int(match.group(1)) * int(1024**power)


def check_branch(name: str) -> str | None:
    """Return why `name` is not a usable branch name (git check-ref-format rules), or None."""
    if not name:
        return "must not be empty"
    if _BAD_REF.search(name) or name == "@":
        return "is not a valid git branch name"
    return None


def check_repo_path(path: str) -> str | None:
    """Return why `path` cannot be a folder inside the repository, or None."""
    parts = path.split("/")
    if any(part in {"", ".", ".."} for part in parts):
        return "must be a relative path without empty, '.' or '..' parts"
    if any(part.lower() == ".git" for part in parts):
        return "must not contain a .git folder"
    return None


class _Reader(EnvReader):
    """The git rules: remote URL forms, branch and path, author and message templates."""

    def remote(self, url: SplitResult) -> tuple[str, str, str]:
        transport = _TRANSPORTS.get(url.scheme, "")
        display = redact_url(_unsplit(url.scheme, url.netloc, url.path, url.query, url.fragment))
        if url.password is not None or (transport in {"http", "https"} and url.username):
            self.problem(
                "repository",
                display,
                "put the password or token in CARETAKER_GIT_TOKEN_FILE or "
                "CARETAKER_GIT_PASSWORD_FILE (and a user name in CARETAKER_GIT_USERNAME), not in the URL",
            )
        try:
            url.port  # noqa: B018 - validates the port
        except ValueError:
            self.problem(
                "repository",
                display,
                "bad port; for scp-style `host:org/repo` write git+ssh://user@host/org/repo.git",
            )
        if transport == "file" and url.netloc not in {"", "localhost"}:
            self.problem("repository", display, "git+file URLs are git+file:///absolute/path")
        if transport != "file" and not url.hostname:
            self.problem("repository", display, "the URL names no host")
        if not url.path.strip("/"):
            self.problem("repository", display, "the URL names no repository path")
        remote = _unsplit(transport, url.netloc if transport != "file" else "", url.path, url.query, "")
        return remote, display, transport

    def fragment(self, fragment: str) -> tuple[str, str]:
        values = dict(parse_qsl(fragment, keep_blank_values=True))
        for key in values.keys() - {"branch", "path"}:
            self.problem(f"repository#{key}", values[key], "unknown option; use branch= and path=")
        branch = values.get("branch", DEFAULT_BRANCH)
        if (why := check_branch(branch)) is not None:
            self.problem("repository#branch", branch, why)
        path = values.get("path", "").strip("/")
        if path and (why := check_repo_path(path)) is not None:
            self.problem("repository#path", path, why)
        return branch, path

    def file(self, name: str) -> Path | None:
        value = self.existing_file(name)
        return None if value is None else Path(value)

    def flag(self, name: str) -> bool:
        return self.parsed(name, parse_bool, False)

    def size(self, name: str, default: int) -> int:
        return self.parsed(name, parse_size, default)

    def username(self) -> str | None:
        return self.secret("CARETAKER_GIT_USERNAME")

    def secret_file(self) -> Path | None:
        token, password = self.file("CARETAKER_GIT_TOKEN_FILE"), self.file("CARETAKER_GIT_PASSWORD_FILE")
        if token is not None and password is not None:
            self.problem(
                "CARETAKER_GIT_TOKEN_FILE", str(token), "set it or CARETAKER_GIT_PASSWORD_FILE, not both"
            )
        return token or password

    def author(self) -> tuple[str, str]:
        value = self.first("CARETAKER_GIT_AUTHOR") or DEFAULT_AUTHOR
        match = _AUTHOR.match(value)
        if match is None:
            self.problem("CARETAKER_GIT_AUTHOR", value, 'must look like "Name <email>"')
            match = _AUTHOR.match(DEFAULT_AUTHOR)
            assert match is not None  # noqa: S101 - the default is valid
        return match.group(1), match.group(2)

    def message(self) -> str:
        value = self.first("CARETAKER_GIT_MESSAGE") or DEFAULT_MESSAGE
        try:
            fields = {field for _, field, _, _ in string.Formatter().parse(value) if field is not None}
        except ValueError as error:
            self.problem("CARETAKER_GIT_MESSAGE", value, f"bad template: {error}")
            return DEFAULT_MESSAGE
        if unknown := fields - MESSAGE_FIELDS:
            self.problem(
                "CARETAKER_GIT_MESSAGE",
                value,
                f"unknown placeholder(s) {sorted(unknown)}; use {', '.join(sorted(MESSAGE_FIELDS))}",
            )
            return DEFAULT_MESSAGE
        return value


def _unsplit(scheme: str, netloc: str, path: str, query: str, fragment: str) -> str:
    # urlunsplit drops the `//` of schemes it does not know (git+file:/x).
    text = f"{scheme}://{netloc}{path}"
    return text + (f"?{query}" if query else "") + (f"#{fragment}" if fragment else "")
