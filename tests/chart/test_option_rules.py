"""One bad value per rule through the chart's values: refused before a pod runs, either by
the chart's schema (`helm template` fails) or by the checks the containers make at start
(the restore's options, the sidecar's --check-config on the rendered ConfigMap), naming the
value. The other entry points are in tests/unit/test_option_rules.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from caretaker.inject.checks import literal_env, restore_problems
from tests.chart.kube import container, helm_template, load_documents, one, pod_spec
from tests.support.cli import run_caretaker

pytestmark = pytest.mark.integration

APP = {
    "name": "app",
    "image": "docker.io/library/busybox:1.36",
    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
}
BASE = {
    "repository": {"url": "s3://shop-backups/orders"},
    "encryption": {"passwordSecret": "orders-password"},
    "workload": {"containers": [APP]},
}


def refusal(values: dict[str, Any], tmp_path: Path) -> str:
    """Why the chart with `values` would not give a running pod ("" if it would)."""
    rendered = helm_template({**BASE, **values}, check=False)
    if rendered.returncode != 0:
        return rendered.stderr
    documents = load_documents(rendered.stdout)
    spec = pod_spec(one(documents, "Deployment"))
    said = [str(p) for p in restore_problems(literal_env(container(spec, "caretaker-restore", init=True)))]
    config = tmp_path / "config.yaml"
    config.write_text(one(documents, "ConfigMap")["data"]["config.yaml"], encoding="utf-8")
    sidecar_env = literal_env(container(spec, "caretaker"))
    checked = run_caretaker("sidecar", "--check-config", "--config", str(config), environ=sidecar_env)
    if checked.returncode != 0:
        said.append(checked.stdout + checked.stderr)
    return "\n".join(said)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"sidecar": {"jobs": {"prune": {"keep": {"daily": -1}}}}}, "keep/daily"),
        ({"restore": {"timeout": "5x"}}, "/restore/timeout"),
        ({"restore": {"timeout": "1.5h"}}, "/restore/timeout"),
        ({"sidecar": {"jobs": {"verify": {"read_data": 1.5}}}}, "read_data"),
        ({"sidecar": {"jobs": {"backup": {"schedule": "61 * * * *"}}}}, "bad minute field '61'"),
        ({"sidecar": {"jobs": {"backup": {"timezone": "Mars/Olympus"}}}}, "unknown time zone 'Mars/Olympus'"),
        ({"repository": {"url": "ftp://host/x"}}, "/repository/url"),
        ({"repository": {"url": "s3://Bucket_x/app"}}, "a bucket name is 3-63 characters"),
        ({"repository": {"url": "s3:/bucket"}}, "/repository/url"),
        ({"sidecar": {"jobs": {"backup": {"then": ["prun"]}}}}, "no job named prun"),
    ],
    ids=[
        "count",
        "duration",
        "duration-decimal",
        "share",
        "cron",
        "time-zone",
        "url-scheme",
        "bucket-name",
        "bucket-missing",
        "job-reference",
    ],
)
def test_a_bad_value_is_refused_before_a_pod_runs(values: dict[str, Any], named: str, tmp_path: Path) -> None:
    said = refusal(values, tmp_path)
    assert named in said, said


def test_the_defaults_pass(tmp_path: Path) -> None:
    assert refusal({}, tmp_path) == ""
