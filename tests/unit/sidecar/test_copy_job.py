"""The sidecar's `copy` job: its configuration, and what a run does."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from restore.backends.registry import OpenOptions, open_repository
from restore.errors import ConfigError, PasswordError
from restore.model import BackupOptions
from sidecar import jobs
from sidecar.settings.load import load
from sidecar.settings.model import CopyAction
from sidecar.settings.options import Flags
from tests.conftest import FakeClock
from tests.support.keys import PASSWORD, password_file, sealed
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


def test_the_destinations_password_comes_from_its_own_variables(tmp_path: Path) -> None:
    flags = loaded(tmp_path, '  - {name: offsite, kind: copy, schedule: "@daily", to: "s3://offsite/app"}\n')
    environ = {"CARETAKER_TO_PASSWORD_FILE": str(password_file(tmp_path, "offsite password", "to"))}
    config = load(flags, {"CARETAKER_PASSWORD": PASSWORD, **environ})
    assert config.to_encryption.password == "offsite password"
    assert config.to_encryption.options.prefix == "to-"
    with pytest.raises(ConfigError) as caught:
        load(flags, {"CARETAKER_TO_PASSWORD_FILE": str(tmp_path / "none")})
    assert (
        "cannot read"
        in {p.key: p.message for p in caught.value.problems}[
            "--to-password-file (CARETAKER_TO_PASSWORD_FILE)"
        ]
    )


def test_a_run_copies_what_the_destination_lacks_under_its_own_key(tmp_path: Path, clock: FakeClock) -> None:
    write_file(tmp_path / "data" / "a.txt", b"a")
    options = OpenOptions(environ={}, clock=clock, encryption=sealed())
    source = open_repository((tmp_path / "repo").as_uri(), options)
    source.backup(tmp_path / "data", BackupOptions())
    to = (tmp_path / "offsite").as_uri()
    key = sealed("offsite password")
    first = jobs.copy(repo=source, to=to, environ={}, clock=clock, cancel=jobs.Cancel(), encryption=key)
    again = jobs.copy(repo=source, to=to, environ={}, clock=clock, cancel=jobs.Cancel(), encryption=key)
    assert [c.copied for c in first] == [True]
    assert [c.copied for c in again] == [False]
    with pytest.raises(PasswordError):
        jobs.copy(repo=source, to=to, environ={}, clock=clock, cancel=jobs.Cancel(), encryption=sealed())
    source.close()
