"""The edges of the git backend: error translation and authentication without leaks."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import git
import pytest

from restore.backends.git.auth import GitAuth
from restore.backends.git.cmd import MissingRefError, translate
from restore.backends.git.settings import GitSettings
from restore.errors import (
    IntegrityError,
    LeaseHeldError,
    LocalIOError,
    PermanentBackendError,
    TransientBackendError,
)

REMOTE = "git+ssh://git@example.com/org/repo.git#branch=backups"

# stderr as git 2.39 / OpenSSH 9.2 print it (collected from the integration tests' remotes).
CASES = {
    "ssh refused": (
        (
            "ssh: connect to host 127.0.0.1 port 2222: Connection refused\n"
            "fatal: Could not read from remote repository.\n\nPlease make sure you have "
            "the correct access rights\nand the repository exists."
        ),
        TransientBackendError,
    ),
    "daemon refused": (
        ("fatal: unable to connect to 127.0.0.1:\n127.0.0.1[0: 127.0.0.1]: errno=Connection refused"),
        TransientBackendError,
    ),
    "dns": (
        "ssh: Could not resolve hostname nowhere.invalid: Name or service not known",
        TransientBackendError,
    ),
    "http 503": (
        ("fatal: unable to access 'https://example.com/r.git/': The requested URL returned error: 503"),
        TransientBackendError,
    ),
    "host key": (
        "Host key verification failed.\nfatal: Could not read from remote repository.",
        PermanentBackendError,
    ),
    "auth": (
        ("git@127.0.0.1: Permission denied (publickey).\nfatal: Could not read from remote repository."),
        PermanentBackendError,
    ),
    "http auth": ("fatal: Authentication failed for 'http://127.0.0.1:1/r.git/'", PermanentBackendError),
    "no repo": ("fatal: '/srv/missing.git' does not appear to be a git repository", PermanentBackendError),
    "no branch": ("fatal: couldn't find remote ref refs/heads/backups", MissingRefError),
    "moved": (
        " ! [rejected]        abc -> backups (fetch first)\nerror: failed to push some refs",
        LeaseHeldError,
    ),
    "stale lease": (" ! [rejected]        abc -> backups (stale info)", LeaseHeldError),
    "hook": (" ! [remote rejected] abc -> backups (pre-receive hook declined)", PermanentBackendError),
    "corrupt": (
        (
            "remote: fatal: loose object 4766d999693e904ecd976a2e161c9bc19d29c505 (stored in "
            "./objects/47/66d9) is corrupt\nremote: aborting due to possible repository "
            "corruption on the remote side.\nfatal: protocol error: bad pack header"
        ),
        IntegrityError,
    ),
    "swapped": (
        (
            "fatal: did not receive expected object 4766d999693e904ecd976a2e161c9bc19d29c505\n"
            "fatal: index-pack failed"
        ),
        IntegrityError,
    ),
    "hostile": (
        (
            "error: object 1234567890123456789012345678901234567890: hasDotgit: contains '.git'\n"
            "fatal: fsck error in packed object"
        ),
        IntegrityError,
    ),
    "disk full": ("fatal: write error: No space left on device", LocalIOError),
    "unknown": ("fatal: something new", PermanentBackendError),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_translate(case):
    stderr, kind = CASES[case]
    error = translate(
        git.GitCommandError(["git", "fetch"], 128, stderr.encode()), remote=REMOTE, action="fetch"
    )
    assert type(error) is kind
    assert REMOTE in str(error)
    assert "Please make sure" not in str(error)


def test_translation_keeps_the_object_name():
    stderr, _ = CASES["corrupt"]
    error = translate(git.GitCommandError(["git"], 128, stderr.encode()), remote=REMOTE, action="x")
    assert "4766d999693e904ecd976a2e161c9bc19d29c505" in str(error)


def auth(tmp_path: Path, url: str, **environ: str) -> GitAuth:
    return GitAuth(GitSettings.from_url(urlsplit(url), environ))


class TestSsh:
    def test_key_and_known_hosts_are_private_copies_with_strict_checking(self, tmp_path):
        key = tmp_path / "mounted key"  # a space, to prove the quoting
        key.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\nxyz\n-----END OPENSSH PRIVATE KEY-----")
        key.chmod(0o644)  # as a Secret is often mounted: ssh would ignore it as it is
        known = tmp_path / "known_hosts"
        known.write_text("[127.0.0.1]:22 ssh-ed25519 AAAA\n")
        helper = auth(
            tmp_path, REMOTE, CARETAKER_GIT_SSH_KEY_FILE=str(key), CARETAKER_GIT_KNOWN_HOSTS_FILE=str(known)
        )
        argv = shlex.split(helper.environ()["GIT_SSH_COMMAND"])
        copy = Path(argv[argv.index("-i") + 1])
        assert copy != key
        assert copy.read_bytes().endswith(b"KEY-----\n")  # the missing newline added
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
        assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
        assert "StrictHostKeyChecking=yes" in argv
        assert "BatchMode=yes" in argv
        known_copy = next(a.split("=", 1)[1] for a in argv if a.startswith("UserKnownHostsFile="))
        assert Path(known_copy).read_text() == known.read_text()
        helper.close()
        assert not copy.parent.exists()

    def test_accept_new_gets_a_writable_known_hosts(self, tmp_path):
        helper = auth(tmp_path, REMOTE, CARETAKER_GIT_ACCEPT_NEW_HOST_KEYS="true")
        argv = shlex.split(helper.environ()["GIT_SSH_COMMAND"])
        assert "StrictHostKeyChecking=accept-new" in argv
        known = next(a.split("=", 1)[1] for a in argv if a.startswith("UserKnownHostsFile="))
        assert os.access(known, os.W_OK)
        helper.close()


class TestAskpass:
    def ask(self, environ: dict[str, str], prompt: str) -> str:
        done = subprocess.run(
            [environ["GIT_ASKPASS"], prompt],
            env={**os.environ, **environ},
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    @pytest.mark.parametrize("content", ["s3cr3t", "s3cr3t\n", "s3cr3t\r\n"])
    def test_prints_the_user_and_reads_the_secret_only_when_asked(self, tmp_path, content):
        token = tmp_path / "token"
        token.write_bytes(content.encode())
        helper = auth(
            tmp_path,
            "git+https://example.com/r.git",
            CARETAKER_GIT_TOKEN_FILE=str(token),
            CARETAKER_GIT_USERNAME="robot",
        )
        environ = helper.environ()
        assert "s3cr3t" not in repr(environ)  # only the file's path travels
        assert "s3cr3t" not in Path(environ["GIT_ASKPASS"]).read_text()
        assert self.ask(environ, "Username for 'https://example.com': ") == "robot\n"
        assert self.ask(environ, "Password for 'https://robot@example.com': ") == "s3cr3t\n"
        helper.close()
        assert not Path(environ["GIT_ASKPASS"]).exists()

    def test_no_secret_no_askpass(self, tmp_path):
        assert auth(tmp_path, "git+https://example.com/r.git").environ() == {}
