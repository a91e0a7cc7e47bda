"""The git backend over the network: `git daemon`, a private OpenSSH server, smart HTTP.

Each server is started by the test on 127.0.0.1 and stopped afterwards. SSH uses real
strict host key checking with an ed25519 deploy key; HTTP uses basic auth with a token
read from a file, which must not show up in logs, argv or anything git keeps on disk.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_git_backup import Remote, caretaker, events, sample
from tests.support.git_remotes import GitDaemon, HttpGitServer, SshServer, git_env
from tests.support.trees import describe

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
# `git ls-remote` with the environment the git backend gives every git process.
LS_REMOTE_AS_CARETAKER = """
import os, subprocess, sys
from urllib.parse import urlsplit
from restore.backends.git.auth import GitAuth
from restore.backends.git.settings import GitSettings
settings = GitSettings.from_url(urlsplit(sys.argv[1]), os.environ)
auth = GitAuth(settings)
extra = auth.environ()
if "--without-wrapper" in sys.argv:
    extra.pop("LD_PRELOAD", None)
done = subprocess.run(["git", "ls-remote", settings.remote], env={**os.environ, **extra})
auth.close()
sys.exit(done.returncode)
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[GitDaemon]:
    server = GitDaemon(tmp_path / "daemon")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    server = SshServer(tmp_path_factory.mktemp("sshd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def http(tmp_path: Path) -> Iterator[HttpGitServer]:
    server = HttpGitServer(tmp_path / "http")
    server.start()
    yield server
    server.stop()


def data_of(root: Path) -> dict[str, object]:
    return {k: v for k, v in describe(root).items() if not k.startswith((".caretaker", "clone/.git"))}


def round_trip(remote: Remote, tmp_path: Path) -> None:
    source = sample(tmp_path / "source")
    done = caretaker("backup", "--path", str(source), remote=remote)
    assert done.returncode == 0, done.stdout + done.stderr
    target = tmp_path / "target"
    target.mkdir()
    restored = caretaker("restore", "--path", str(target), remote=remote)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert data_of(target) == data_of(source)


class TestDaemon:
    def test_round_trip_then_unreachable_is_exit_4(self, daemon, tmp_path):
        remote = Remote(daemon.create("pod.git"), git_env(tmp_path / "state"))
        round_trip(remote, tmp_path)
        daemon.stop()
        for command in (["snapshots"], ["backup", "--path", str(tmp_path / "source")]):
            run = caretaker(*command, remote=remote)
            assert run.returncode == 4, run.stdout + run.stderr
            assert "Connection refused" in run.stdout

    def test_a_missing_repository_is_exit_5(self, daemon, tmp_path):
        remote = Remote(daemon.url("nothing-here.git"), git_env(tmp_path / "state"))
        run = caretaker("snapshots", remote=remote)
        assert run.returncode == 5, run.stdout + run.stderr


class TestSsh:
    def test_round_trip_with_strict_host_key_checking(self, sshd, tmp_path):
        sshd.deploy_key.chmod(0o644)  # as Secrets are often mounted; caretaker copies it 0600
        remote = Remote(sshd.create(f"{tmp_path.name}.git"), {**git_env(tmp_path / "state"), **sshd.env()})
        round_trip(remote, tmp_path)
        sshd.deploy_key.chmod(0o600)

    def test_a_wrong_host_key_is_refused_with_exit_5(self, sshd, tmp_path):
        url = sshd.create(f"{tmp_path.name}.git")
        env = {
            **git_env(tmp_path / "state"),
            **sshd.env(),
            "CARETAKER_GIT_KNOWN_HOSTS_FILE": str(sshd.wrong_known_hosts()),
        }
        run = caretaker("backup", "--path", str(sample(tmp_path / "source")), remote=Remote(url, env))
        assert run.returncode == 5, run.stdout + run.stderr
        assert "Host key verification failed" in run.stdout
        assert list((sshd.repos / f"{tmp_path.name}.git" / "refs" / "heads").iterdir()) == []

    def test_an_unknown_host_is_refused_unless_new_keys_are_accepted(self, sshd, tmp_path):
        url = sshd.create(f"{tmp_path.name}.git")
        env = {**git_env(tmp_path / "state"), "CARETAKER_GIT_SSH_KEY_FILE": str(sshd.deploy_key)}
        assert caretaker("snapshots", remote=Remote(url, env)).returncode == 5
        trusting = Remote(url, {**env, "CARETAKER_GIT_ACCEPT_NEW_HOST_KEYS": "true"})
        assert caretaker("snapshots", remote=trusting).returncode == 0

    def test_a_wrong_deploy_key_is_exit_5_and_a_stopped_server_exit_4(self, tmp_path):
        server = SshServer(tmp_path / "own-sshd")
        server.start()
        try:
            url = server.create("pod.git")
            wrong = {
                **git_env(tmp_path / "state"),
                **server.env(),
                "CARETAKER_GIT_SSH_KEY_FILE": str(server.host_key),
            }
            run = caretaker("snapshots", remote=Remote(url, wrong))
            assert run.returncode == 5
            assert "Permission denied" in run.stdout
        finally:
            server.stop()
        run = caretaker("snapshots", remote=Remote(url, {**git_env(tmp_path / "state"), **server.env()}))
        assert run.returncode == 4, run.stdout + run.stderr

    def test_a_uid_without_a_passwd_entry_still_reaches_the_remote(self, sshd, tmp_path):
        """A pod may run caretaker as the app's uid, which the image does not know: ssh then
        gets a passwd entry through nss_wrapper instead of failing "No user exists for uid".

        Run as such a uid by the system's python (the test's own interpreter may sit in a
        folder only root can enter), with the auth module as the backend uses it."""
        uid = 54321
        assert all(entry.pw_uid != uid for entry in pwd.getpwall())
        work = Path(tempfile.mkdtemp(prefix="caretaker-uid-"))  # outside pytest's 0700 folders
        try:
            for name in ("deploy_ed25519", "known_hosts"):
                shutil.copy(sshd.root / name, work / name)
                os.chown(work / name, uid, uid)
            os.chmod(work, 0o755)
            env = {
                "CARETAKER_GIT_SSH_KEY_FILE": str(work / "deploy_ed25519"),
                "CARETAKER_GIT_KNOWN_HOSTS_FILE": str(work / "known_hosts"),
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "PYTHONPATH": str(REPO),
                "HOME": str(work),
            }
            argv = ["/usr/bin/python3", "-c", LS_REMOTE_AS_CARETAKER, sshd.create(f"{tmp_path.name}.git")]
            as_uid = {"user": uid, "group": uid, "capture_output": True, "text": True, "timeout": 60}
            done = subprocess.run(argv, env=env, check=False, **as_uid)
            assert done.returncode == 0, done.stdout + done.stderr
            # Without the wrapper, ssh refuses: the test would catch a regression.
            bare = subprocess.run([*argv, "--without-wrapper"], env=env, check=False, **as_uid)
            assert "No user exists" in bare.stdout + bare.stderr
        finally:
            shutil.rmtree(work, ignore_errors=True)


class TestHttp:
    def test_token_from_a_file_never_leaks(self, http, tmp_path):
        token_file = tmp_path / "token"
        token_file.write_text(http.token + "\n")
        env = {
            **git_env(tmp_path / "state"),
            "CARETAKER_GIT_USERNAME": http.username,
            "CARETAKER_GIT_TOKEN_FILE": str(token_file),
        }
        remote = Remote(http.create("pod.git"), env)
        source = sample(tmp_path / "source")
        scratch = tmp_path / "tmp"
        scratch.mkdir()
        done = caretaker(
            "backup",
            "--path",
            str(source),
            "--log-level",
            "debug",
            remote=remote,
            extra={"TMPDIR": str(scratch)},
        )
        assert done.returncode == 0, done.stdout + done.stderr
        # Even at debug level, the libraries' DEBUG records (GitPython's command lines) are off.
        assert '"level": "debug"' in done.stdout
        assert not any("Popen(" in line for line in done.stdout.splitlines())
        assert http.token not in done.stdout + done.stderr
        kept = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
        assert kept
        assert [p for p in kept if http.token.encode() in p.read_bytes()] == []
        assert os.listdir(scratch) == []  # the askpass helper's private folder is gone
        target = tmp_path / "target"
        target.mkdir()
        assert caretaker("restore", "--path", str(target), remote=remote).returncode == 0
        assert data_of(target) == data_of(source)

    def test_a_wrong_token_is_exit_5(self, http, tmp_path):
        token_file = tmp_path / "token"
        token_file.write_text("not-the-token")
        env = {
            **git_env(tmp_path / "state"),
            "CARETAKER_GIT_USERNAME": http.username,
            "CARETAKER_GIT_TOKEN_FILE": str(token_file),
        }
        run = caretaker("snapshots", "--json", remote=Remote(http.create("pod.git"), env))
        assert run.returncode == 5
        (failed,) = [e for e in events(run) if e["event"] == "snapshots.failed"]
        assert "Authentication failed" in failed["error"]
        assert http.auth_failures >= 1
        assert json.dumps(failed).count("not-the-token") == 0
