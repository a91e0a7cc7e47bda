"""How git authenticates, without a secret ever reaching argv, logs or a git config file.

- SSH: `GIT_SSH_COMMAND` names copies of the deploy key and known_hosts in a private
  temporary folder. Copies, because Kubernetes mounts Secrets read-only and often group-
  readable (ssh ignores such a key) and `accept-new` must be able to add a host key.
  Strict host key checking is the default; no ssh config file is read.
- SSH as a user the image does not know: OpenSSH refuses to run for a uid without a passwd
  entry ("No user exists for uid 1000"), and a pod may run caretaker as the app's uid. Then
  the ssh process gets one through nss_wrapper (`LD_PRELOAD`, a passwd and group file in the
  private folder), the habit of images that run under arbitrary uids (OpenShift).
- HTTP(S): `GIT_ASKPASS` is a small shell script in that folder that prints the user name
  (from an environment variable of the git process) or reads the token/password from its
  file at the moment git asks. The secret is never in our memory, an argument or a URL.

`close()` removes the folder.
"""

from __future__ import annotations

import ctypes.util
import os
import pwd
import shlex
import shutil
import tempfile
from pathlib import Path

from restore.backends.git.settings import GitSettings
from restore.errors import ConfigError, LocalIOError

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
# Where Debian's libnss-wrapper puts the library (the image installs it), else the loader's search.
_NSS_WRAPPER = ("/usr/lib/x86_64-linux-gnu/libnss_wrapper.so", "/usr/lib/aarch64-linux-gnu/libnss_wrapper.so")


class GitAuth:
    """Environment variables that make git authenticate as configured."""

    def __init__(self, settings: GitSettings) -> None:
        self._settings = settings
        self._dir: Path | None = None

    def environ(self) -> dict[str, str]:
        """Return the variables for every git process. Raise ConfigError if a file is unreadable."""
        if self._settings.transport == "ssh":
            return {"GIT_SSH_COMMAND": self._ssh_command(), "GIT_SSH_VARIANT": "ssh", **self._passwd_entry()}
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

    def _passwd_entry(self) -> dict[str, str]:
        """nss_wrapper variables giving our uid a passwd entry, or {} if it has one.

        Raise LocalIOError if it has none and nss_wrapper is not installed.
        """
        uid, gid = os.getuid(), os.getgid()
        try:
            pwd.getpwuid(uid)
        except KeyError:
            pass
        else:
            return {}
        library = next((path for path in _NSS_WRAPPER if os.path.exists(path)), None)
        library = library or ctypes.util.find_library("nss_wrapper")
        if library is None:
            raise LocalIOError(
                f"ssh cannot run as uid {uid}: it has no passwd entry in this image and nss_wrapper "
                "is not installed (run caretaker as a user the image knows, e.g. 65532)"
            )
        passwd = self._private() / "passwd"
        passwd.write_text(f"caretaker:x:{uid}:{gid}:caretaker:{tempfile.gettempdir()}:/usr/sbin/nologin\n")
        group = self._private() / "group"
        group.write_text(f"caretaker:x:{gid}:\n")
        return {"LD_PRELOAD": library, "NSS_WRAPPER_PASSWD": str(passwd), "NSS_WRAPPER_GROUP": str(group)}

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
