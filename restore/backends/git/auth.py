"""How git authenticates, without a secret ever reaching argv, logs or a git config file.

- SSH: `GIT_SSH_COMMAND` names copies of the deploy key and known_hosts in a private
  temporary folder. Copies, because Kubernetes mounts Secrets read-only and often group-
  readable (ssh ignores such a key) and `accept-new` must be able to add a host key.
  Strict host key checking is the default; no ssh config file is read.
- HTTP(S): `GIT_ASKPASS` is a small shell script in that folder that prints the user name
  (from an environment variable of the git process) or reads the token/password from its
  file at the moment git asks. The secret is never in our memory, an argument or a URL.

`close()` removes the folder.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from pathlib import Path

from restore.backends.git.settings import GitSettings
from restore.errors import ConfigError

# Printed by git's askpass protocol: the first argument is the prompt ("Username for …",
# "Password for …"). `printf` is a shell builtin, so the secret never becomes an argv.
_ASKPASS = """#!/bin/sh
case "$1" in
  [Uu]sername*) printf '%s\\n' "$CARETAKER_GIT_ASKPASS_USERNAME" ;;
  *) IFS= read -r secret < "$CARETAKER_GIT_ASKPASS_SECRET" || [ -n "$secret" ]
     cr=$(printf '\\r'); printf '%s\\n' "${secret%"$cr"}" ;;
esac
"""
DEFAULT_USERNAME = "caretaker"
_SSH_OPTIONS = (
    "BatchMode=yes",  # never prompt: an init container has no terminal
    "ConnectTimeout=15",
    "ServerAliveInterval=15",
    "ServerAliveCountMax=4",
    "LogLevel=ERROR",
)


class GitAuth:
    """Environment variables that make git authenticate as configured."""

    def __init__(self, settings: GitSettings) -> None:
        self._settings = settings
        self._dir: Path | None = None

    def environ(self) -> dict[str, str]:
        """Return the variables for every git process. Raise ConfigError if a file is unreadable."""
        if self._settings.transport == "ssh":
            return {"GIT_SSH_COMMAND": self._ssh_command(), "GIT_SSH_VARIANT": "ssh"}
        if self._settings.transport in {"http", "https"} and self._settings.secret_file:
            return self._askpass()
        return {}

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _private(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="caretaker-git-auth-"))  # mode 0700
        return self._dir

    def _copy(self, source: Path, name: str, key: str) -> Path:
        try:
            data = source.read_bytes()
        except OSError as error:
            raise ConfigError.single(key, str(source), f"cannot read: {error.strerror}") from error
        target = self._private() / name
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            # A Secret written without its final newline is "invalid format" to OpenSSH.
            out.write(data if data.endswith(b"\n") or not data else data + b"\n")
        return target

    def _ssh_command(self) -> str:
        settings = self._settings
        args = ["ssh", "-F", "none"]
        for option in _SSH_OPTIONS:
            args += ["-o", option]
        if settings.ssh_key_file is not None:
            key = self._copy(settings.ssh_key_file, "deploy-key", "CARETAKER_GIT_SSH_KEY_FILE")
            args += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
        known: Path | None = None
        if settings.known_hosts_file is not None:
            known = self._copy(settings.known_hosts_file, "known_hosts", "CARETAKER_GIT_KNOWN_HOSTS_FILE")
        elif settings.accept_new_host_keys:
            known = self._private() / "known_hosts"
            known.touch(mode=0o600)
        if known is not None:
            args += ["-o", f"UserKnownHostsFile={known}"]
        checking = "accept-new" if settings.accept_new_host_keys else "yes"
        args += ["-o", f"StrictHostKeyChecking={checking}"]
        return shlex.join(args)

    def _askpass(self) -> dict[str, str]:
        script = self._private() / "askpass"
        fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(_ASKPASS)
        return {
            "GIT_ASKPASS": str(script),
            "CARETAKER_GIT_ASKPASS_USERNAME": self._settings.username or DEFAULT_USERNAME,
            "CARETAKER_GIT_ASKPASS_SECRET": str(self._settings.secret_file),
        }
