"""`caretaker copy` as a real process: S3 to S3 and into a git remote, killed with SIGKILL at
random points and resumed, the destination then checked byte by byte (`verify --read-data
100%`) and restored by the source's snapshot id; the destination's own credentials; and the
sidecar's `copy` job keeping an off-site copy on a schedule."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from restore.backends.registry import OpenOptions, open_repository
from restore.snapshots.engine import Engine
from restore.snapshots.format import LEASE_KEY
from tests.support.cli import CARETAKER, run_caretaker
from tests.support.git_remotes import file_remote, git_env
from tests.support.keys import UNENCRYPTED_ENV, password_env, password_file
from tests.support.restore_runs import Repo, restore
from tests.support.sidecar import Sidecar, wait_until
from tests.support.trees import describe, write_file

pytestmark = pytest.mark.integration

# Printed with every failure: a kill point that broke something can be replayed.
SEED = int(os.environ.get("CARETAKER_TEST_SEED", random.randrange(1 << 30)))


def history(repo: Repo, data: Path, mib: int) -> list[str]:
    """Three snapshots of a changing folder of 8 files of `mib` MiB; return their ids."""
    ids = []
    for round_ in range(3):
        for i in range(8):
            write_file(data / f"d{i % 3}" / f"f{i}.bin", os.urandom((mib << 20) // (1 if round_ == 0 else 4)))
        write_file(data / "notes" / f"round-{round_}.txt", b"round %d\n" % round_)
        ids.append(repo.backup(data).id)
        time.sleep(0.01)
    return ids


def copy_process(source: Repo, to: str, environ: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **source.environ, **environ}
    return subprocess.Popen(
        [CARETAKER, "copy", "--repository", source.url, "--to", to, "--log-format", "json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def expire_lease(url: str, environ: dict[str, str]) -> None:
    """A killed writer's lease expires after 5 minutes; let that time pass at once."""
    repository = open_repository(url, OpenOptions(environ=environ))
    try:
        if isinstance(repository, Engine):
            repository.store.delete([LEASE_KEY])
    finally:
        repository.close()


def kill_and_resume(source: Repo, to: str, environ: dict[str, str], scratch: str, kills: int = 3) -> int:
    """Start the copy and SIGKILL it at random points of its run; return how many kills hit
    a running copy. Then let one copy run to its end.

    The points are fractions of how long a whole copy (to `scratch`) takes on this machine,
    so that a fast or a loaded machine kills the copy while it runs all the same."""
    started = time.monotonic()
    assert copy_process(source, scratch, environ).wait(timeout=300) == 0
    took = time.monotonic() - started
    rng = random.Random(SEED)
    hit = 0
    for _ in range(kills):
        process = copy_process(source, to, environ)
        time.sleep(rng.uniform(0.2, 0.8) * took)
        hit += process.poll() is None
        process.send_signal(signal.SIGKILL)
        process.wait()
        expire_lease(to, {**source.environ, **environ})
    final = copy_process(source, to, environ)
    assert final.wait(timeout=300) == 0, f"seed {SEED}"
    return hit


def check_copy(to: str, env: dict[str, str], ids: list[str], data: Path, tmp_path: Path) -> None:
    """The destination, opened with its own settings `env`, holds `ids`, verifies byte by
    byte and restores the newest as `data`."""
    listed = run_caretaker("snapshots", "--json", "--repository", to, environ=env)
    assert listed.returncode == 0, listed.stderr
    assert sorted(s["id"] for s in json.loads(listed.stdout)) == sorted(ids)
    verified = run_caretaker("verify", "--read-data", "100%", "--repository", to, environ=env)
    assert verified.returncode == 0, f"seed {SEED}: {verified.stdout}"
    target = tmp_path / "restored" / "data"
    target.mkdir(parents=True)
    run = restore(target, Repo(to, env), "--snapshot", ids[-1])
    assert run.code == 0, run.stdout
    assert describe(target) == describe(data)


def test_s3_to_s3_killed_at_random_points_then_resumed(
    s3_url: str, s3_env: dict[str, str], s3_bucket: str, tmp_path: Path
) -> None:
    source = Repo(s3_url, s3_env)
    data = tmp_path / "data"
    ids = history(source, data, mib=3)
    to, scratch = (f"s3://{s3_bucket}/{uuid.uuid4().hex[:12]}/copy" for _ in range(2))
    # The destination has a password of its own: every blob is sealed anew under its key.
    to_password = password_file(tmp_path, "the offsite password", "to-password")
    to_env = {"CARETAKER_TO_PASSWORD_FILE": str(to_password)}
    hit = kill_and_resume(source, to, to_env, scratch)
    assert hit, f"seed {SEED}: every copy finished before its kill; make the data bigger"
    dest_env = {**s3_env, "CARETAKER_PASSWORD_FILE": str(to_password)}
    check_copy(to, dest_env, ids, data, tmp_path)
    again = run_caretaker(
        "copy", "--json", "--repository", source.url, "--to", to, environ={**s3_env, **to_env}
    )
    assert again.returncode == 0
    assert '"copied": true' not in again.stdout
    # A missing or wrong password is exit 13 naming the side it belongs to.
    unkeyed = run_caretaker("copy", "--repository", source.url, "--to", to, environ=s3_env)
    assert unkeyed.returncode == 13, unkeyed.stdout
    assert "--to-password-file (CARETAKER_TO_PASSWORD_FILE)" in unkeyed.stdout
    wrong_to = {**s3_env, "CARETAKER_TO_PASSWORD": "not it"}
    refused = run_caretaker("copy", "--repository", source.url, "--to", to, environ=wrong_to)
    assert refused.returncode == 13, refused.stdout
    assert f"the password (CARETAKER_TO_PASSWORD) opens no key slot of {to}" in refused.stdout
    wrong_source = {**s3_env, **to_env, "CARETAKER_PASSWORD_FILE": str(to_password)}
    refused = run_caretaker("copy", "--repository", source.url, "--to", to, environ=wrong_source)
    assert refused.returncode == 13, refused.stdout
    assert f"opens no key slot of {source.url}" in refused.stdout
    # The destination's listing never sees the source's password either.
    browsed = run_caretaker(
        "ls", "--repository", to, ids[-1], environ={k: v for k, v in s3_env.items() if "PASSWORD" not in k}
    )
    assert browsed.returncode == 13, browsed.stdout


def test_local_to_git_killed_at_random_points_then_resumed(tmp_path: Path) -> None:
    source = Repo((tmp_path / "repository").as_uri(), password_env(tmp_path))
    data = tmp_path / "data"
    ids = history(source, data, mib=1)
    to, environ = file_remote(tmp_path), git_env(tmp_path / "git-state")
    # git stores files readable: an encrypted source goes there only when asked.
    refused = run_caretaker(
        "copy", "--repository", source.url, "--to", to, environ={**source.environ, **environ}
    )
    assert refused.returncode == 2, refused.stdout
    assert "--to-insecure-no-encryption" in refused.stdout
    scratch = file_remote(tmp_path)
    plain = {**environ, "CARETAKER_TO_INSECURE_NO_ENCRYPTION": "true"}
    assert kill_and_resume(source, to, plain, scratch), f"seed {SEED}: every copy finished before its kill"
    check_copy(to, environ, ids, data, tmp_path)
    diff = run_caretaker("diff", "--repository", to, ids[0], ids[1], environ=environ)
    assert diff.returncode == 0
    assert "M d0/f0.bin" in diff.stdout
    assert "+ notes/round-1.txt" in diff.stdout


def test_the_destination_uses_its_own_credentials(
    s3_url: str, s3_env: dict[str, str], s3_bucket: str, tmp_path: Path
) -> None:
    source = Repo(s3_url, s3_env)
    write_file(tmp_path / "data" / "a.txt", b"a")
    source.backup(tmp_path / "data")
    to = f"s3://{s3_bucket}/{uuid.uuid4().hex[:12]}/copy"
    to_env = {"CARETAKER_TO_PASSWORD_FILE": str(password_file(tmp_path, "offsite", "to-password"))}
    wrong = {**s3_env, **to_env, "CARETAKER_TO_AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    refused = run_caretaker("copy", "--repository", s3_url, "--to", to, environ=wrong)
    assert refused.returncode == 5
    assert "not-the-secret" not in refused.stdout + refused.stderr
    right = {**s3_env, **to_env, "CARETAKER_TO_AWS_SECRET_ACCESS_KEY": s3_env["AWS_SECRET_ACCESS_KEY"]}
    assert run_caretaker("copy", "--repository", s3_url, "--to", to, environ=right).returncode == 0


def test_a_git_repository_is_not_a_copy_source(tmp_path: Path) -> None:
    to, environ = file_remote(tmp_path), git_env(tmp_path / "git-state")
    run = run_caretaker("copy", "--repository", to, "--to", (tmp_path / "x").as_uri(), environ=environ)
    assert run.returncode == 2
    assert "copy reads file:// and s3:// repositories only" in run.stdout


def test_the_sidecar_keeps_an_off_site_copy(tmp_path: Path) -> None:
    write_file(tmp_path / "data" / "app.db", os.urandom(50_000))
    config = f"""
repository: file://{tmp_path}/repo
path: {tmp_path}/data
jobs:
  - {{name: backup, kind: backup, schedule: "@every 1h", run_on_start: true, then: [offsite]}}
  - {{name: offsite, kind: copy, to: "file://{tmp_path}/offsite"}}
"""
    for name in ("repo", "offsite"):
        (tmp_path / f"key-{name}").mkdir()
    keys = {name: password_env(tmp_path / f"key-{name}", f"{name} password") for name in ("repo", "offsite")}
    env = {**keys["repo"], "CARETAKER_TO_PASSWORD_FILE": keys["offsite"]["CARETAKER_PASSWORD_FILE"]}
    with Sidecar(tmp_path, [], config=config, env=env) as sidecar:
        wait_until(lambda: sidecar.events("copy.done"), 30, "the copy job")
        [done] = sidecar.events("copy.done")
        assert done["copied"] == 1
    source, offsite = (Repo((tmp_path / name).as_uri(), keys[name]).open() for name in ("repo", "offsite"))
    try:
        assert offsite.snapshots() == source.snapshots() != []
    finally:
        source.close()
        offsite.close()


def test_into_a_folder_of_a_shared_branch_reading_only_what_changed(tmp_path: Path) -> None:
    source = Repo((tmp_path / "repository").as_uri(), UNENCRYPTED_ENV)
    data = tmp_path / "data"
    for i in range(20):
        write_file(data / f"f{i}.txt", b"file %d\n" % i)
    first = source.backup(data).id
    write_file(data / "f7.txt", b"changed\n")
    second = source.backup(data).id
    remote, environ = file_remote(tmp_path), git_env(tmp_path / "git-state")
    web, db = f"{remote}&path=pods/web", f"{remote}&path=pods/db"
    env = {**environ}
    assert run_caretaker("copy", "--repository", source.url, "--to", web, first, environ=env).returncode == 0
    write_file(tmp_path / "db" / "x", b"x")
    Repo(db, environ).backup(tmp_path / "db")  # another folder's backup moves the branch's tip
    done = run_caretaker("copy", "--json", "--repository", source.url, "--to", web, environ=env)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert [(c["snapshot"], c["copied"], c["blobs"]) for c in json.loads(done.stdout)] == [
        (first, False, 0),
        (second, True, 1),
    ]
    target = tmp_path / "restored"
    target.mkdir()
    assert restore(target, Repo(web, environ), "--snapshot", second).code == 0
    assert describe(target) == describe(data)


def test_copy_takes_the_snapshots_the_filters_or_ids_choose(tmp_path: Path) -> None:
    source = Repo((tmp_path / "repository").as_uri(), UNENCRYPTED_ENV)
    data = tmp_path / "data"
    made = []
    for tag in ("nightly", "manual", "nightly"):
        write_file(data / "f.txt", tag.encode() + os.urandom(8))
        backup = run_caretaker(
            "backup",
            "--json",
            "--repository",
            source.url,
            "--path",
            str(data),
            "--tag",
            tag,
            environ=UNENCRYPTED_ENV,
        )
        made.append(json.loads(backup.stdout)["snapshot"]["id"])
    to = (tmp_path / "offsite").as_uri()
    plain = {**UNENCRYPTED_ENV, "CARETAKER_TO_INSECURE_NO_ENCRYPTION": "true"}

    def copied(*args: str) -> list[str]:
        done = run_caretaker("copy", "--json", "--repository", source.url, "--to", to, *args, environ=plain)
        assert done.returncode == 0, done.stdout + done.stderr
        return [c["snapshot"] for c in json.loads(done.stdout) if c["copied"]]

    assert sorted(copied("--tag", "nightly")) == sorted([made[0], made[2]])
    assert copied(made[1][:6]) == [made[1]]
    nothing = run_caretaker("copy", "--repository", source.url, "--to", to, "--host", "web-9", environ=plain)
    assert nothing.returncode == 3
    assert "host=web-9" in nothing.stdout
