"""`ls`, `diff`, `find`, `dump` and the snapshot filters, as real commands on every backend
(local directory, SeaweedFS S3, a git remote): the same snapshots show the same way."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from restore.model import BackupOptions
from tests.support.cli import CARETAKER, run_caretaker
from tests.support.restore_runs import Repo
from tests.support.trees import age_tree, describe, write_file

pytestmark = pytest.mark.integration


class Browsed:
    """Two snapshots of a small tree in the repository under test, and how to ask about them."""

    def __init__(self, repo: Repo, data: Path) -> None:
        self.repo = repo
        self.data = data
        self.env = {**repo.environ, "CARETAKER_REPOSITORY": repo.url}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_caretaker(*args, environ=self.env)

    def lines(self, *args: str) -> list[dict[str, Any]]:
        done = self.run(*args, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    def dump(self, *args: str) -> bytes:
        env = {"PATH": os.environ["PATH"], **self.env}
        done = subprocess.run([CARETAKER, "dump", *args], env=env, capture_output=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout


def backup(repo: Repo, data: Path, tags: tuple[str, ...]) -> str:
    age_tree(data)
    opened = repo.open()
    try:
        return opened.backup(data, BackupOptions(host="web-0", tags=tags)).snapshot.id
    finally:
        opened.close()


@pytest.fixture
def browsed(repo: Repo, tmp_path: Path) -> tuple[Browsed, str, str, Path]:
    data = tmp_path / "data"
    write_file(data / "app.db", os.urandom(300_000))
    write_file(data / "conf" / "app.yaml", b"answer: 42\n", mode=0o600)
    write_file(data / "conf" / "extra.yaml", b"x: 1\n")
    write_file(data / "logs" / "a.log", b"hello\n" * 100)
    (data / "current").symlink_to("conf/app.yaml")
    (data / "empty").mkdir()
    first = backup(repo, data, ("nightly",))
    snapshot_one = tmp_path / "first"
    subprocess.run(["cp", "-a", str(data), str(snapshot_one)], check=True)
    write_file(data / "conf" / "app.yaml", b"answer: 43, now\n", mode=0o600)
    (data / "logs" / "a.log").unlink()
    write_file(data / "logs" / "b.log", b"new log\n")
    (data / "app.db").chmod(0o640)
    second = backup(repo, data, ("manual",))
    return Browsed(repo, data), first, second, snapshot_one


def test_ls_lists_paths_types_modes_and_sizes(browsed: tuple[Browsed, str, str, Path]) -> None:
    b, first, _, _ = browsed
    listed = {e["path"]: e for e in b.lines("ls", first)}
    assert sorted(listed) == [
        "app.db",
        "conf",
        "conf/app.yaml",
        "conf/extra.yaml",
        "current",
        "empty",
        "logs",
        "logs/a.log",
    ]
    assert (
        listed["conf/app.yaml"]["type"],
        listed["conf/app.yaml"]["mode"],
        listed["conf/app.yaml"]["size"],
    ) == (
        "file",
        "0600",
        11,
    )
    assert (listed["current"]["type"], listed["current"]["target"]) == ("symlink", "conf/app.yaml")
    assert listed["empty"]["type"] == "dir"
    assert [e["path"] for e in b.lines("ls", first, "conf")] == ["conf", "conf/app.yaml", "conf/extra.yaml"]
    text = b.run("ls", first, "conf/app.yaml").stdout
    assert text.startswith("-rw-------")
    assert text.rstrip().endswith("conf/app.yaml")
    missing = b.run("ls", first, "nothere")
    assert missing.returncode == 3


def test_diff_names_every_change(browsed: tuple[Browsed, str, str, Path]) -> None:
    b, first, second, _ = browsed
    changes = {c["path"]: c["change"] for c in b.lines("diff", first, second)}
    assert changes == {
        "app.db": "metadata",
        "conf/app.yaml": "changed",
        "logs/a.log": "removed",
        "logs/b.log": "added",
    }
    text = b.run("diff", first, second).stdout.splitlines()
    assert "M conf/app.yaml  11 B -> 16 B" in text
    assert text[-1].endswith("1 added, 1 removed, 1 changed, 1 with other metadata")


def test_find_searches_every_snapshot_and_filters_choose_them(
    browsed: tuple[Browsed, str, str, Path],
) -> None:
    b, first, second, _ = browsed
    found = [(m["snapshot"], m["path"]) for m in b.lines("find", "*.log")]
    assert found == [(second, "logs/b.log"), (first, "logs/a.log")]
    assert [(m["snapshot"], m["path"]) for m in b.lines("find", "--tag", "nightly", "conf/*.yaml")] == [
        (first, "conf/app.yaml"),
        (first, "conf/extra.yaml"),
    ]
    assert [s["id"] for s in json.loads(b.run("snapshots", "--json", "--tag", "manual").stdout)] == [second]
    assert b.lines("ls", "--tag", "nightly", "latest", "logs")[-1]["path"] == "logs/a.log"
    assert b.run("ls", "--host", "web-9", "latest").returncode == 3


def test_dump_writes_a_file_or_a_folder_as_tar(
    browsed: tuple[Browsed, str, str, Path], tmp_path: Path
) -> None:
    b, first, second, snapshot_one = browsed
    assert b.dump(first, "app.db") == (snapshot_one / "app.db").read_bytes()
    assert b.dump(second, "/conf/app.yaml") == b"answer: 43, now\n"
    for name, path in (("conf", "conf"), ("all", "/")):
        out = tmp_path / "untarred" / name
        out.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(b.dump(first, path))) as archive:
            archive.extractall(out, filter="tar")
        expected = describe(snapshot_one)
        if name == "conf":
            expected = {p: i for p, i in expected.items() if p.startswith("conf")}
        got = describe(out)
        assert {p: i[:2] for p, i in got.items()} == {p: i[:2] for p, i in expected.items()}
        assert {p: i[3] for p, i in got.items() if i[0] == "file"} == {
            p: i[3] for p, i in expected.items() if i[0] == "file"
        }


def test_dump_of_a_symlink_is_a_tar_holding_the_link(browsed: tuple[Browsed, str, str, Path]) -> None:
    b, first, _, _ = browsed
    with tarfile.open(fileobj=io.BytesIO(b.dump(first, "current"))) as archive:
        [member] = archive.getmembers()
    assert (member.name, member.issym(), member.linkname) == ("current", True, "conf/app.yaml")


def test_snapshots_show_host_tags_and_folder_and_backup_records_the_filter_variables(
    browsed: tuple[Browsed, str, str, Path],
) -> None:
    b, first, second, _ = browsed
    listed = b.run("snapshots").stdout
    for snapshot, tag in ((first, "nightly"), (second, "manual")):
        [line] = [row for row in listed.splitlines() if snapshot in row]
        assert "web-0" in line
        assert tag in line
        assert str(b.data) in line
    env = {**b.env, "CARETAKER_HOST": "web-7", "CARETAKER_TAG": "weekly"}
    write_file(b.data / "new.txt", b"new")  # a git repository records no unchanged folder
    done = run_caretaker("backup", "--json", "--path", str(b.data), environ=env)
    assert done.returncode == 0, done.stdout + done.stderr
    third = json.loads(done.stdout)["snapshot"]["id"]
    chosen = run_caretaker("snapshots", "--json", environ=env)
    assert [(s["id"], s["host"], s["tags"]) for s in json.loads(chosen.stdout)] == [
        (third, "web-7", ["weekly"])
    ]


def test_a_filter_that_leaves_no_snapshot_is_exit_3_even_with_allow_empty(
    browsed: tuple[Browsed, str, str, Path], tmp_path: Path
) -> None:
    b, _, _, _ = browsed
    target = tmp_path / "volume" / "data"
    target.mkdir(parents=True)
    run = b.run("restore", "--path", str(target), "--host", "web-9", "--allow-empty")
    assert run.returncode == 3, run.stdout
    assert "host=web-9" in run.stdout
    assert "first-boot" not in run.stdout


def test_dump_of_damaged_data_is_exit_7(browsed: tuple[Browsed, str, str, Path]) -> None:
    b, first, _, _ = browsed
    opened = b.repo.open()
    try:
        store = getattr(opened, "store", None)
        if store is None:
            pytest.skip("a git repository's objects are checked by git itself")
        for item in store.list("data/"):
            data = bytearray(store.get(item.key))
            data[len(data) // 2] ^= 0xFF
            store.put(item.key, bytes(data))
    finally:
        opened.close()
    env = {"PATH": os.environ["PATH"], **b.env}
    done = subprocess.run([CARETAKER, "dump", first, "app.db"], env=env, capture_output=True, check=False)
    assert done.returncode == 7, done.stderr
    assert len(done.stdout) < 300_000
