"""A store that hangs cannot hold a run past its deadline, nor keep a signal waiting.

Servers of tests/support/hangs.py on 127.0.0.1 accept and never answer (a black-holed load
balancer; for https and ssh that is a TLS handshake or SSH banner that never comes) or
answer headers and stall mid-body. Per backend: `caretaker restore --timeout 2s` exits 4
within the deadline plus a margin for start-up, with a message that names the operation,
the endpoint and the attempts the server really saw; SIGTERM/SIGINT end such a run at
once with 128+N and nothing half done.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client import CollectorRegistry

from restore.backends.registry import OpenOptions, open_repository
from restore.clock import utc_now
from restore.deadline import Deadline
from restore.model import STATE_DIR
from restore.repository import Repository
from sidecar.metrics import Metrics
from sidecar.readiness import Readiness
from sidecar.settings.model import Listen, SidecarConfig
from sidecar.standing import StandingRepository
from sidecar.status import StatusBoard
from tests.integration.conftest import S3_TEST_TUNING, fresh_bucket
from tests.support.git_remotes import git_env
from tests.support.hangs import SilentServer, StallingProxy, StallingServer
from tests.support.keys import password_env
from tests.support.restore_runs import Repo, assert_reported, restore, sample_tree, start
from tests.support.seaweed import SeaweedServer
from tests.support.sidecar import Sidecar, wait_until
from tests.support.trees import write_file

pytestmark = pytest.mark.integration

DEADLINE = 2.0
# Interpreter start-up and imports before the deadline starts, and the report after it.
MARGIN = 3.0
RETRIED_DEADLINE = 4.0
S3_KEYS = {"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_REGION": "us-east-1"}


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    with SilentServer() as server:
        yield server


@pytest.fixture
def stalling() -> Iterator[StallingServer]:
    with StallingServer() as server:
        yield server


def s3_at(server: SilentServer, scheme: str = "http", read_timeout: str = "0.6") -> Repo:
    endpoint = f"{scheme}://127.0.0.1:{server.port}"
    return Repo(
        "s3://backups/app",
        {**S3_KEYS, "CARETAKER_S3_ENDPOINT": endpoint, "CARETAKER_S3_READ_TIMEOUT": read_timeout},
    )


def git_at(server: SilentServer, scheme: str, tmp_path: Path) -> Repo:
    user = "git@" if scheme == "git+ssh" else ""
    env = {**git_env(tmp_path / "state"), "CARETAKER_GIT_ACCEPT_NEW_HOST_KEYS": "true"}
    return Repo(f"{scheme}://{user}127.0.0.1:{server.port}/backups/app.git", env)


def timed_restore(target: Path, repo: Repo, deadline: float = DEADLINE) -> tuple[float, str, object]:
    started = time.monotonic()
    run = restore(target, repo, "--timeout", f"{deadline:g}s")
    elapsed = time.monotonic() - started
    assert_reported(run, "failed", 4)
    assert elapsed < deadline + MARGIN, elapsed
    assert os.listdir(target) == [STATE_DIR]
    assert run.termination is not None
    return elapsed, run.termination["error"], run


def attempts_in(message: str) -> int:
    found = re.search(r"\((\d+) attempts? in [\d.]+s", message)
    assert found, message
    return int(found.group(1))


class TestS3:
    def test_a_server_that_never_answers(self, silent, target):
        # A read timeout of 0.6 s leaves room for several attempts in the deadline.
        _, message, _ = timed_restore(target, s3_at(silent), RETRIED_DEADLINE)
        assert "ListObjectsV2 s3://backups/app" in message
        assert f"at http://127.0.0.1:{silent.port}" in message
        # The last attempt either runs into the deadline or into its own read timeout just
        # before it (a loaded machine): both messages name the deadline and the attempts.
        assert f"the {RETRIED_DEADLINE:g}s deadline" in message
        assert attempts_in(message) == silent.connections >= 2

    def test_a_tls_handshake_that_never_completes(self, silent, target):
        _, message, _ = timed_restore(target, s3_at(silent, "https", read_timeout="60"))
        assert f"at https://127.0.0.1:{silent.port}" in message
        assert attempts_in(message) == silent.connections == 1  # cut short by the deadline

    def test_a_body_that_stalls_midway(self, stalling, target):
        _, message, _ = timed_restore(target, s3_at(stalling), RETRIED_DEADLINE)
        assert "ListObjectsV2" in message
        assert "ReadTimeoutError" in message
        assert attempts_in(message) == len(stalling.requests) >= 2

    def test_sigterm_ends_a_hung_restore_at_once(self, silent, target):
        process = start(target, s3_at(silent, read_timeout="60"), "--timeout", "5m")
        assert silent.wait_for_connection()
        assert_stops(process, signal.SIGTERM)
        assert os.listdir(target) == [STATE_DIR]
        assert sorted(os.listdir(target / STATE_DIR)) == ["restore-result.json"]


@pytest.fixture
def stalled_packs(s3_server: SeaweedServer, tmp_path: Path) -> Iterator[tuple[Repo, StallingProxy]]:
    """A repository with a snapshot, reached through a proxy that stalls every pack download."""
    url = f"s3://{fresh_bucket(s3_server)}/repo"
    password = password_env(tmp_path)
    Repo(url, {**s3_server.env(), **S3_TEST_TUNING, **password}).backup(sample_tree(tmp_path / "source"))
    with StallingProxy(int(urlsplit(s3_server.endpoint).port or 0), "/data/") as proxy:
        yield Repo(url, {**s3_server.env(), "CARETAKER_S3_ENDPOINT": proxy.endpoint, **password}), proxy


@pytest.fixture
def stalled_blobs(s3_server: SeaweedServer, tmp_path: Path) -> Iterator[tuple[Repo, StallingProxy]]:
    """A snapshot that needs a fifth of its only data pack, so its blobs are read one by one
    (range reads requested ahead, in a pool of their own), through a proxy stalling them."""
    url = f"s3://{fresh_bucket(s3_server)}/repo"
    password = password_env(tmp_path)
    repo = Repo(url, {**s3_server.env(), **S3_TEST_TUNING, **password})
    source = tmp_path / "source"
    for i in range(40):
        write_file(source / f"f{i:02}", os.urandom(10_000))
    repo.backup(source)
    for i in range(8, 40):
        (source / f"f{i:02}").unlink()
    repo.backup(source)
    with StallingProxy(int(urlsplit(s3_server.endpoint).port or 0), "/data/") as proxy:
        yield Repo(url, {**s3_server.env(), "CARETAKER_S3_ENDPOINT": proxy.endpoint, **password}), proxy


@pytest.fixture
def stalled_pieces(s3_server: SeaweedServer, tmp_path: Path) -> Iterator[tuple[Repo, StallingProxy]]:
    """A snapshot of empty files whose manifest has several pieces, read a few at once in a
    pool (`BlobLoader.in_order`), through a proxy stalling them: the main thread waits."""
    url = f"s3://{fresh_bucket(s3_server)}/repo"
    password = password_env(tmp_path)
    source = tmp_path / "source"
    for i in range(4000):
        write_file(source / f"folder-{i % 40:02}" / f"a-file-with-a-rather-long-name-{i:05}", b"")
    Repo(url, {**s3_server.env(), **S3_TEST_TUNING, **password}).backup(source)
    with StallingProxy(int(urlsplit(s3_server.endpoint).port or 0), "/data/") as proxy:
        yield Repo(url, {**s3_server.env(), "CARETAKER_S3_ENDPOINT": proxy.endpoint, **password}), proxy


@pytest.fixture
def stalled_index(s3_server: SeaweedServer, tmp_path: Path) -> Iterator[tuple[Repo, StallingProxy]]:
    """A repository whose index objects stall: read ahead while the key is derived, in the
    listing (`caretaker restore` opens the repository to restore from it), or else by the restore."""
    url = f"s3://{fresh_bucket(s3_server)}/repo"
    password = password_env(tmp_path)
    Repo(url, {**s3_server.env(), **S3_TEST_TUNING, **password}).backup(sample_tree(tmp_path / "source"))
    with StallingProxy(int(urlsplit(s3_server.endpoint).port or 0), "/index/") as proxy:
        yield Repo(url, {**s3_server.env(), "CARETAKER_S3_ENDPOINT": proxy.endpoint, **password}), proxy


_STALLED = {
    "whole packs": "stalled_packs",
    "blobs read one by one": "stalled_blobs",
    "manifest pieces": "stalled_pieces",
    "index objects": "stalled_index",
}


@pytest.fixture(params=list(_STALLED))
def stalled(request: pytest.FixtureRequest) -> tuple[Repo, StallingProxy]:
    """A restore whose downloads stall: of packs read whole, of blobs read one by one, of a
    manifest's pieces read ahead, or of index objects."""
    return request.getfixturevalue(_STALLED[request.param])


class TestStalledDownload:
    """The records list; a download stalls in a pool's threads (the restore's, or the
    listing's that reads the index ahead)."""

    def test_the_deadline_ends_it(self, stalled, target):
        repo, proxy = stalled
        _, message, _ = timed_restore(target, repo)
        assert proxy.stalled >= 1
        assert re.search(
            rf"GetObject s3://\S+/repo{proxy.marker}\S+ at http://127.0.0.1:\d+: no answer", message
        )

    def test_sigterm_ends_it_and_removes_staging(self, stalled, target):
        repo, proxy = stalled
        process = start(target, repo, "--timeout", "5m")
        deadline = time.monotonic() + 30
        while not proxy.stalled and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proxy.stalled, "no download was stalled"
        assert_stops(process, signal.SIGTERM)
        assert sorted(os.listdir(target / STATE_DIR)) == ["restore-result.json"]


def test_a_dry_run_reads_no_index_object(stalled_index, target):
    """`--dry-run` plans from the snapshot records alone: reading index objects ahead, as a
    restore does while the key is derived, would be reads for nothing (here: a hang)."""
    repo, proxy = stalled_index
    run = restore(target, repo, "--dry-run", "--json", "--timeout", f"{DEADLINE:g}s")
    assert run.code == 0, run.stdout
    assert '"action": "restore"' in run.stdout
    assert proxy.stalled == 0


class TestGit:
    @pytest.mark.parametrize("scheme", ["git+ssh", "git+https", "git+http"])
    def test_a_server_that_never_answers(self, scheme, silent, target, tmp_path):
        _, message, _ = timed_restore(target, git_at(silent, scheme, tmp_path))
        shown = f"{scheme}://{'git@' if scheme == 'git+ssh' else ''}127.0.0.1:{silent.port}/backups/app.git"
        assert f"git remote {shown}: list snapshots: no answer within" in message
        assert attempts_in(message) == silent.connections == 1

    def test_a_ref_advertisement_that_stalls_midway(self, stalling, target, tmp_path):
        _, message, _ = timed_restore(target, git_at(stalling, "git+http", tmp_path))
        assert "list snapshots: no answer within" in message
        assert stalling.requests == ["GET /backups/app.git/info/refs?service=git-upload-pack HTTP/1.1"]

    def test_sigint_ends_a_hung_restore_at_once(self, silent, target, tmp_path):
        process = start(target, git_at(silent, "git+ssh", tmp_path), "--timeout", "5m")
        assert silent.wait_for_connection()
        assert_stops(process, signal.SIGINT)
        assert os.listdir(target) == [STATE_DIR]


def assert_stops(process, signum: int) -> None:
    """Send `signum`; the run ends within a second or two with 128+N and says so."""
    time.sleep(0.3)
    sent = time.monotonic()
    process.send_signal(signum)
    out, _ = process.communicate(timeout=30)
    assert time.monotonic() - sent < 2.0
    assert process.returncode == 128 + signum, out
    assert f'"error": "cancelled by signal {signum}"' in out


class TestSidecar:
    def test_readiness_answers_within_its_own_deadline(self, silent):
        repo = s3_at(silent, read_timeout="60")
        board = StatusBoard(
            SidecarConfig(repository=repo.url, path=Path("/"), listen=Listen("", 0), jobs=()),
            Metrics.create(CollectorRegistry(), [], version="test"),
            utc_now,
        )

        def opener(deadline: Deadline) -> Repository:
            return open_repository(repo.url, OpenOptions(environ=repo.environ, deadline=deadline))

        opener(Deadline()).close()  # botocore imported: the check's second is the store's
        standing = StandingRepository(opener, seconds=1.0)
        readiness = Readiness(board=board, repository=standing, clock=utc_now, rpo=None)
        started = time.monotonic()
        [reason] = readiness.check()
        assert time.monotonic() - started < 2.5
        assert reason.startswith("repository unreachable: S3 unreachable: ListObjectsV2")
        assert "no answer within the 1s deadline (1 attempt" in reason
        assert silent.connections == 1
        standing.close()

    def test_a_sidecar_that_cannot_reach_its_store_claims_nothing_and_writes_nothing(self, silent, tmp_path):
        repo = s3_at(silent, read_timeout="60")
        write_file(tmp_path / "data" / "a.txt", b"data")
        config = f"""
repository: {repo.url}
path: {tmp_path / "data"}
shutdown: {{grace: 3s}}
jobs:
  - {{name: backup, kind: backup, schedule: "@every 1h", run_on_start: true, retries: 0}}
"""
        with Sidecar(tmp_path, [], env=repo.environ, config=config) as sidecar:
            assert silent.wait_for_connection()
            [failure] = wait_until(lambda: sidecar.events("job.failure", job="backup"), 15, "the backup")
            started = time.monotonic()
            sidecar.signal(signal.SIGTERM)
            assert sidecar.wait(10) == 0
            took = time.monotonic() - started
        assert took < 3.5
        assert failure["reason"] == "unreachable"
        assert failure["error"].startswith("the writer claim could not be taken: S3 ")
        assert "the 4s deadline passed" in failure["error"]  # the sidecar's own calls' limit

    def test_sigterm_aborts_a_backup_hung_on_storage_within_the_grace(self, stalled_packs, tmp_path):
        # The claim is taken (its requests pass the proxy); reading the previous snapshot's
        # manifest from a pack stalls.
        repo, proxy = stalled_packs
        write_file(tmp_path / "data" / "a.txt", b"data")
        config = f"""
repository: {repo.url}
path: {tmp_path / "data"}
shutdown: {{grace: 3s}}
jobs:
  - {{name: backup, kind: backup, schedule: "@every 1h", run_on_start: true, retries: 0}}
"""
        with Sidecar(tmp_path, [], env=repo.environ, config=config) as sidecar:
            wait_until(lambda: proxy.stalled, 20, "the backup to hang on a pack download")
            started = time.monotonic()
            sidecar.signal(signal.SIGTERM)
            assert sidecar.wait(10) == 0
            took = time.monotonic() - started
        # Aborted at 60% of the grace; the claim's release (cleanup) may take a moment more.
        assert took < 3.5
        [failure] = sidecar.events("job.failure", job="backup")
        assert failure["reason"] == "aborted"
