"""Notification settings: flags with their twins and files, the config file's top level and
jobs, every problem reported at once and no URL ever shown in a problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from restore.commands import Context
from restore.errors import ConfigError
from sidecar.command import describe
from sidecar.settings.load import load
from sidecar.settings.options import Flags

SECRET = "hunter2"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_global_and_per_job_settings_from_the_file_flags_and_files(tmp_path):
    urls = write(tmp_path, "urls", f"slack://T/B/{SECRET}\njson://127.0.0.1:8080/hook\n")
    beat = write(tmp_path, "beat", f"https://hc.example/{SECRET}")
    config = write(
        tmp_path,
        "config.yaml",
        f"""
        repository: file:///backups
        notify: {{urls: ["ntfy://topic"], events: [success]}}
        heartbeat: {{url_file: {beat}}}
        jobs:
          - name: backup
            kind: backup
            schedule: "@hourly"
            skip_unchanged: true
            notify: {{urls_file: {urls}, events: [failure, success]}}
          - name: vacuum
            kind: command
            schedule: "@daily"
            command: ["true"]
            heartbeat: {{url: "https://hc.example/{SECRET}-2"}}
        """,
    )
    loaded = load(Flags(config=config))
    assert loaded.notify.urls == ("ntfy://topic",)
    assert loaded.notify.events == {"success"}
    assert loaded.notify.heartbeat == f"https://hc.example/{SECRET}"
    backup, vacuum = loaded.jobs
    assert backup.notify is not None
    assert backup.notify.urls == (f"slack://T/B/{SECRET}", "json://127.0.0.1:8080/hook")
    assert backup.notify.events == {"failure", "success"}
    assert backup.action.skip_unchanged is True  # type: ignore[union-attr]
    assert vacuum.notify is not None
    assert vacuum.notify.heartbeat == f"https://hc.example/{SECRET}-2"
    assert vacuum.notify.events == {"failure", "recovery"}  # the default
    # Flags (and their CARETAKER_* twins) win over the file's top level.
    flagged = load(Flags(config=config, notify=("json://h/x",), notify_on="failure"))
    assert (flagged.notify.urls, flagged.notify.events) == (("json://h/x",), {"failure"})
    text = describe(loaded, Context(environ={}))
    assert SECRET not in text
    assert "notify ntfy://*** on success; heartbeat https://***" in text


def test_defaults_are_failure_and_recovery_and_nothing_to_send(tmp_path):
    loaded = load(Flags(repository="file:///b", schedule="@hourly"))
    assert loaded.notify.urls == ()
    assert loaded.notify.events == {"failure", "recovery"}
    assert loaded.notify.heartbeat is None


def test_every_problem_at_once_naming_keys_never_urls(tmp_path):
    config = write(
        tmp_path,
        "config.yaml",
        f"""
        repository: file:///backups
        notify: {{urls: ["hooks.slack.com/{SECRET}"], events: [failure, sucess], retry: 3}}
        jobs:
          - name: backup
            kind: backup
            schedule: "@hourly"
            notify: {{urls_file: {tmp_path}/missing}}
            heartbeat: {{url: "ftp://hc.example/{SECRET}", url_file: {tmp_path}/also-missing}}
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load(Flags(config=config, notify_on="everything", heartbeat_url=f"mailto://{SECRET}@x"))
    keys = {problem.key for problem in caught.value.problems}
    assert {
        "notify.urls",
        "notify.events",
        "notify.retry",
        "jobs.backup.notify.urls file",
        "jobs.backup.heartbeat.url",
        "--notify-on (CARETAKER_NOTIFY_ON)",
        "--heartbeat-url (CARETAKER_HEARTBEAT_URL)",
    } <= keys
    assert SECRET not in str(caught.value)
