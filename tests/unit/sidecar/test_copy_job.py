"""The sidecar's `copy` job: its configuration, and what a run does."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from restore.backends.registry import OpenOptions, open_repository
from restore.errors import ConfigError
from restore.model import BackupOptions
from sidecar import jobs
from sidecar.settings.load import load
from sidecar.settings.model import CopyAction
from sidecar.settings.options import Flags
from tests.conftest import FakeClock
from tests.support.trees import write_file


def loaded(tmp_path: Path, jobs_yaml: str) -> Flags:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent("repository: file:///backups/app\njobs:\n" + jobs_yaml), encoding="utf-8")
    return Flags(config=path)


def test_a_copy_job_names_its_destination(tmp_path: Path) -> None:
    config = load(
        loaded(tmp_path, '  - {name: offsite, kind: copy, schedule: "@daily", to: "s3://offsite/app"}\n')
    )
    assert config.job("offsite").action == CopyAction(to="s3://offsite/app")


@pytest.mark.parametrize(
    ("job", "key", "message"),
    [
        ('{name: offsite, kind: copy, schedule: "@daily"}', "jobs.offsite.to", "is required"),
        (
            '{name: offsite, kind: copy, schedule: "@daily", to: "ftp://x/y"}',
            "jobs.offsite.to",
            "unsupported",
        ),
        (
            '{name: offsite, kind: copy, schedule: "@daily", to: "s3://o/a", timeout: 1h}',
            "jobs.offsite.timeout",
            "not supported",
        ),
    ],
)
def test_a_bad_copy_job_is_refused_naming_the_key(tmp_path: Path, job: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(loaded(tmp_path, f"  - {job}\n"))
    problems = {p.key: p.message for p in caught.value.problems}
    assert message in problems[key]


def test_a_run_copies_what_the_destination_lacks(tmp_path: Path, clock: FakeClock) -> None:
    write_file(tmp_path / "data" / "a.txt", b"a")
    options = OpenOptions(environ={}, clock=clock, owner="test")
    source = open_repository((tmp_path / "repo").as_uri(), options)
    source.backup(tmp_path / "data", BackupOptions())
    to = (tmp_path / "offsite").as_uri()
    first = jobs.copy(repo=source, to=to, environ={}, clock=clock, cancel=jobs.Cancel())
    again = jobs.copy(repo=source, to=to, environ={}, clock=clock, cancel=jobs.Cancel())
    assert [c.copied for c in first] == [True]
    assert [c.copied for c in again] == [False]
    source.close()
