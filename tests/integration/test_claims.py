"""One writer per repository, shown with real processes and real signals (docs/claims.md).

Sidecars ("pods", each with its own data folder, pod name and UID) share one repository:
only one writes, the others stand by and say so; one takes over at once after the writer's
SIGTERM, within the expiry after a SIGKILL. A restore for a new pod
started while the old pod runs waits for the old pod's final backup and restores exactly
that. Clock skew of minutes between the processes (tests.support.skewed) changes none of
it. Short claim timings (heartbeat 1 s, expiry 3 s) keep every test to seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest

from restore.backends.registry import open_repository
from tests.support.cli import run_caretaker
from tests.support.keys import UNENCRYPTED_ENV, open_options, password_env
from tests.support.sidecar import REPO, Sidecar, caretaker_argv, wait_until
from tests.support.trees import describe, write_file

pytestmark = pytest.mark.integration

HEARTBEAT, EXPIRY = 1.0, 3.0
SKEW = 7 * 60.0  # seconds: pod A's clock this far ahead, pod B's this far behind


def uid(name: str) -> str:
    return f"{name[-1]}7c1f3e2-9b4d"


def pod_env(name: str, workdir: Path, base: dict[str, str]) -> dict[str, str]:
    return {
        **base,
        "CARETAKER_POD_NAME": name,
        "CARETAKER_POD_UID": uid(name),
        "CARETAKER_GIT_STATE_DIR": str(workdir / "git-state"),  # a pod's own disk
    }


def pod(tmp_path: Path, name: str, repository: tuple[str, dict[str, str]], **options: Any) -> Sidecar:
    """A sidecar backing up its own data folder every second, with a final backup on SIGTERM."""
    url, base = repository
    workdir = tmp_path / name
    data = workdir / "data"
    write_file(data / "who", name.encode())
    config = f"""
repository: {url}
path: {data}
shutdown: {{grace: 20s, backup_on_shutdown: true}}
claim: {{heartbeat: {HEARTBEAT:.0f}s, expiry: {EXPIRY:.0f}s}}
jobs:
  - {{name: backup, kind: backup, schedule: "@every 1s", run_on_start: true, retries: 0}}
"""
    # git repositories are never encrypted: no password (the helper gives one by default).
    plain = UNENCRYPTED_ENV if url.startswith("git+") else {}
    return Sidecar(workdir, [], env={**pod_env(name, workdir, base), **plain}, config=config, **options)


def claim_of(sidecar: Sidecar) -> dict[str, Any]:
    claim: dict[str, Any] = sidecar.status()["claim"]
    return claim


def wait_claim(sidecar: Sidecar, state: str, timeout: float = 10) -> dict[str, Any]:
    found: dict[str, Any] = wait_until(
        lambda: (claim := claim_of(sidecar))["state"] == state and claim, timeout, f"claim state {state}"
    )
    return found


def writers(repository: tuple[str, dict[str, str]]) -> list[str]:
    """The host (pod) of every snapshot, oldest first."""
    url, environ = repository
    repo = open_repository(url, open_options(environ))
    try:
        return [s.host for s in reversed(repo.snapshots())]
    finally:
        repo.close()


def restore_into(repository: tuple[str, dict[str, str]], target: Path, *, name: str) -> dict[str, Any]:
    """`caretaker restore` as pod `name`; return its outcome."""
    url, base = repository
    target.mkdir(parents=True)
    environ = pod_env(name, target.parent, base)
    run = run_caretaker("restore", "--repository", url, "--path", str(target), "--json", environ=environ)
    assert run.returncode == 0, run.stdout + run.stderr
    outcome: dict[str, Any] = json.loads(run.stdout)
    return outcome


@pytest.mark.parametrize("repository_url", ["local", "s3"], indirect=True)
def test_one_writes_the_others_stand_by_and_take_over_at_once_after_sigterm_within_expiry_after_sigkill(
    tmp_path: Path, repository_url: tuple[str, dict[str, str]]
) -> None:
    # Three pods whose clocks are minutes apart: +7, -7 and +3 minutes.
    with pod(tmp_path, "pod-a", repository_url, clock_offset=SKEW) as a:
        wait_claim(a, "holding")
        wait_until(lambda: writers(repository_url), 15, "pod A's first backup")
        with pod(tmp_path, "pod-b", repository_url, clock_offset=-SKEW) as b:
            holder = wait_claim(b, "standby")["holder"]
            assert holder == f"pod-a (uid a7c1f3e2), sidecar pod-a/{a.pid}"
            assert b.value("caretaker_standby", holder=holder) == 1
            assert a.value("caretaker_standby", holder="") == 0
            wait_until(lambda: standby_runs(b) >= 1, 10, "pod B to skip a backup")
            assert b.events("claim.standby")[0]["holder"] == holder
            assert set(writers(repository_url)) == {"pod-a"}  # B never wrote while A held
            a.signal(signal.SIGTERM)
            assert a.wait(20) == 0
            released = time.monotonic()
            wait_claim(b, "holding", timeout=EXPIRY)
            assert time.monotonic() - released < EXPIRY - HEARTBEAT  # released, not expired
            assert a.events("job.start", reason="shutdown")
            with pod(tmp_path, "pod-c", repository_url, clock_offset=SKEW / 2) as c:
                wait_claim(c, "standby")
                wait_until(lambda: writers(repository_url)[-1] == "pod-b", 10, "pod B's first backup")
                b.signal(signal.SIGKILL)
                killed = time.monotonic()
                b.wait(5)
                wait_claim(c, "holding", timeout=EXPIRY + 5)
                took = time.monotonic() - killed
                wait_until(lambda: writers(repository_url)[-1] == "pod-c", 10, "pod C's first backup")
                assert c.value("caretaker_standby", holder="") == 0
    # C judged B dead by its own clock: at least expiry-minus-one-heartbeat after the kill
    # (B's last renewal may precede it by a heartbeat), and not much more than the expiry.
    assert EXPIRY - HEARTBEAT - 0.3 <= took <= EXPIRY + 2
    history = writers(repository_url)
    assert history == sorted(history)  # A's snapshots, B's, then C's: never interleaved
    # B's clock is 14 minutes behind A's, yet its snapshots came after A's: a restore
    # takes the newest writer's data.
    outcome = restore_into(repository_url, tmp_path / "pod-d" / "data", name="pod-d")
    assert outcome["outcome"] == "restored"
    assert (tmp_path / "pod-d" / "data" / "who").read_bytes() == b"pod-c"


def standby_runs(sidecar: Sidecar) -> float:
    return sidecar.value("caretaker_job_runs_total", task="backup", kind="backup", result="standby")


class Churn:
    """An application that keeps writing: a counter file rewritten every 20 ms."""

    def __init__(self, data: Path) -> None:
        self.path = data / "counter"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        count = 0
        while not self._stop.wait(0.02):
            count += 1
            self.path.write_text(str(count))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def restore_b(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_restore_for_the_next_pod_waits_for_the_old_pods_final_backup(
    tmp_path: Path, repository_url: tuple[str, dict[str, str]], restore_b: list[subprocess.Popen[str]]
) -> None:
    url, base = repository_url
    target = tmp_path / "pod-b" / "data"
    target.mkdir(parents=True)
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CARETAKER_")},
        **pod_env("pod-b", tmp_path / "pod-b", base),
        "PYTHONPATH": str(REPO),
    }
    argv = [*caretaker_argv(-SKEW), "restore", "--repository", url, "--path", str(target)]
    with pod(tmp_path, "pod-a", repository_url, clock_offset=SKEW) as a, Churn(a.workdir / "data"):
        wait_claim(a, "holding")
        wait_until(lambda: a.events("backup.done"), 20, "pod A's first backup")
        log = tmp_path / "restore-b.log"
        with log.open("w") as out:
            restore_b.append(
                subprocess.Popen(
                    [*argv, "--log-format", "json"], env=environ, stdout=out, stderr=out, text=True
                )
            )
        waiting = lambda: '"restore.handover_waiting"' in log.read_text()  # noqa: E731
        wait_until(waiting, 20, "pod B's restore to wait for pod A")
        wait_until(lambda: len(a.events("backup.done")) >= 3, 20, "more backups of pod A meanwhile")
        assert restore_b[0].poll() is None
        a.signal(signal.SIGTERM)
        assert a.wait(30) == 0
    assert restore_b[0].wait(30) == 0, log.read_text()
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    outcome = next(e for e in events if e["event"] == "restore.outcome")
    done = next(e for e in events if e["event"] == "restore.handover_done")
    assert done["how"] == "released"
    final = a.events("backup.done")[-1]["snapshot"]
    assert a.events("job.start", reason="shutdown")
    assert outcome["snapshot"] == final
    reference = tmp_path / "final"
    reference.mkdir()
    repo = open_repository(url, open_options(pod_env("test", tmp_path, base)))
    try:
        repo.restore(final, reference)
    finally:
        repo.close()
    assert describe(target) == describe(reference)


def test_sigterm_ends_a_restore_waiting_for_a_handover_at_once(tmp_path: Path) -> None:
    repository = ((tmp_path / "repository").as_uri(), password_env(tmp_path))
    target = tmp_path / "pod-b" / "data"
    target.mkdir(parents=True)
    environ = {"PATH": os.environ["PATH"], **pod_env("pod-b", tmp_path / "pod-b", repository[1])}
    argv = [*caretaker_argv(), "restore", "--repository", repository[0], "--path", str(target)]
    with pod(tmp_path, "pod-a", repository) as a:
        wait_claim(a, "holding")
        wait_until(lambda: a.events("backup.done"), 20, "pod A's first backup")
        restore = subprocess.Popen(
            [*argv, "--log-format", "json"], env=environ, stdout=subprocess.PIPE, text=True
        )
        try:
            lines: list[str] = []
            while '"restore.handover_waiting"' not in (line := restore.stdout.readline()):  # type: ignore[union-attr]
                lines.append(line)
                assert line, "".join(lines)
            restore.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            output, _ = restore.communicate(timeout=10)
            took = time.monotonic() - signalled
        finally:
            restore.kill()
    assert restore.returncode == 128 + signal.SIGTERM, output
    assert took < 1.5
    outcome = json.loads(next(line for line in output.splitlines() if '"restore.outcome"' in line))
    assert (outcome["outcome"], outcome["reason"]) == ("failed", "cancelled")
    assert [p.name for p in target.iterdir()] == [".caretaker"]  # the result file, nothing else


def test_one_shot_writers_respect_a_live_sidecar_unless_they_run_in_its_pod(tmp_path: Path) -> None:
    repository = ((tmp_path / "repository").as_uri(), password_env(tmp_path))
    with pod(tmp_path, "pod-a", repository) as a:
        wait_claim(a, "holding")
        data = str(a.workdir / "data")
        started = time.monotonic()
        elsewhere = run_caretaker(
            "backup",
            "--repository",
            repository[0],
            "--path",
            data,
            environ={"CARETAKER_POD_NAME": "cron", **repository[1]},
        )
        took = time.monotonic() - started
        assert elsewhere.returncode == 6, elsewhere.stdout
        assert f"claimed by pod-a (uid a7c1f3e2), sidecar pod-a/{a.pid}" in elsewhere.stdout
        assert took < HEARTBEAT + 3  # told as soon as a renewal was seen
        inside = run_caretaker(
            "prune",
            "--repository",
            repository[0],
            "--keep-last",
            "1",
            environ=pod_env("pod-a", a.workdir, repository[1]),
        )
        assert inside.returncode == 0, inside.stdout
        assert '"claim.borrowed"' in inside.stdout


def test_unlock_shows_and_breaks_a_claim_and_a_live_sidecar_claims_again(tmp_path: Path) -> None:
    repository = ((tmp_path / "repository").as_uri(), {})
    with pod(tmp_path, "pod-a", repository) as a:
        wait_claim(a, "holding")
        shown = run_caretaker("unlock", "--repository", repository[0], "--dry-run", "--json", environ={})
        assert shown.returncode == 0, shown.stderr
        document = json.loads(shown.stdout)
        assert (document["claim"]["pod"], document["claim"]["role"], document["broken"]) == (
            "pod-a",
            "sidecar",
            False,
        )
        broken = run_caretaker("unlock", "--repository", repository[0], "--json", environ={})
        assert broken.returncode == 0, broken.stderr
        assert json.loads(broken.stdout)["broken"] is True
        [warning] = [json.loads(x) for x in broken.stderr.splitlines() if '"claim.broken"' in x]
        assert (warning["level"], warning["holder"]) == ("warning", document["claim"]["owner"])
        wait_until(lambda: a.events("claim.lost"), 10, "the sidecar to notice")
        wait_until(lambda: len(a.events("claim.acquired")) == 2, 10, "the sidecar to claim again")
        assert a.stop() == 0
    gone = run_caretaker("unlock", "--repository", repository[0], "--json", environ={})
    assert json.loads(gone.stdout)["claim"] is None  # released on SIGTERM
