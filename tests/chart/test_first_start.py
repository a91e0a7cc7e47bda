"""The chart's first start: by default (`restore.allowEmpty: new-repository`) a first
install on a repository that never held a snapshot starts the app empty, once, and NOTES
say so; the older boolean values keep working."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chart.kube import container, env_of, install_notes, one, pod_spec, render

pytestmark = pytest.mark.integration

APP = {"name": "app", "image": "busybox", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
BASE = {
    "repository": {"url": "s3://shop-backups/orders"},
    "encryption": {"passwordSecret": "orders-password"},
    "workload": {"containers": [APP]},
}


def restore_env(values: dict[str, Any]) -> dict[str, Any]:
    spec = pod_spec(one(render({**BASE, **values}), "Deployment"))
    return env_of(container(spec, "caretaker-restore", init=True))


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "new-repository"), ("always", "always"), (True, "always"), ("never", None), (False, None)],
)
def test_allow_empty_reaches_the_restore_as_a_mode(value: Any, expected: str | None) -> None:
    values = {} if value is None else {"restore": {"allowEmpty": value}}
    assert restore_env(values).get("CARETAKER_ALLOW_EMPTY") == expected


def notes(values: dict[str, Any], tmp_path: Path) -> str:
    return install_notes({**BASE, **values}, tmp_path)


def test_notes_say_what_a_first_install_does(tmp_path: Path) -> None:
    text = notes({}, tmp_path)
    assert "First start (restore.allowEmpty=new-repository):" in text
    assert 'outcome\n  "first-boot", reason "new repository: ..."' in text
    assert 'exit 3, reason "emptied"' in text
    assert "exit 4" in text


def test_notes_tell_the_other_modes_what_they_cost(tmp_path: Path) -> None:
    assert "set restore.allowEmpty=new-repository" in notes({"restore": {"allowEmpty": False}}, tmp_path)
    assert "WARNING: the app starts on an empty volume whenever" in notes(
        {"restore": {"allowEmpty": True}}, tmp_path
    )
    assert "First start" not in notes({"restore": {"enabled": False}}, tmp_path)
