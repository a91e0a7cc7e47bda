"""Another chart adds caretaker to its own pod with caretaker's named templates
(examples/chart-include), rendered by a real helm with caretaker as its dependency."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.chart.kube import CHART, EXAMPLES, container, load_documents, one, pod_spec, run, tool, validate

pytestmark = pytest.mark.integration


@pytest.fixture
def parent_chart(tmp_path: Path) -> Path:
    """The example parent chart with caretaker unpacked into its charts/ folder."""
    parent = tmp_path / "chart-include"
    shutil.copytree(EXAMPLES / "chart-include", parent)
    shutil.copytree(CHART, parent / "charts" / "caretaker")
    return parent


def _render(parent: Path, *args: str) -> list[dict[str, Any]]:
    return load_documents(run([tool("helm"), "template", "notes", str(parent), *args]).stdout)


def test_parent_chart_lints_and_validates(parent_chart: Path) -> None:
    assert "0 chart(s) failed" in run([tool("helm"), "lint", "--strict", str(parent_chart)]).stdout
    docs = _render(parent_chart)
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "Deployment", "Pod", "Service", "ServiceAccount"]
    validate(docs)
    # caretaker's `helm test` Pod comes along and asks the dependency's metrics Service.
    url = one(docs, "Pod")["spec"]["containers"][0]["command"][-1]
    assert url == f"http://{one(docs, 'Service')['metadata']['name']}:9090/readyz"


def test_named_templates_add_caretaker_to_the_parents_pod(parent_chart: Path) -> None:
    docs = _render(parent_chart)
    spec = pod_spec(one(docs, "Deployment"))
    assert [c["name"] for c in spec["initContainers"]] == ["caretaker-restore", "caretaker"]
    assert [c["name"] for c in spec["containers"]] == ["notes"]
    restore = container(spec, "caretaker-restore", init=True)
    assert {"name": "notes", "mountPath": "/srv/notes"} in restore["volumeMounts"]
    assert {v["name"] for v in spec["volumes"]} == {
        "notes",
        "caretaker-tmp",
        "caretaker-config",
        "caretaker-password",
    }
    # The names the templates compute match the objects the dependency renders.
    config_map = one(docs, "ConfigMap")["metadata"]["name"]
    assert {"name": "caretaker-config", "configMap": {"name": config_map}} in spec["volumes"]
    assert spec["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    service = one(docs, "Service")
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_parent_values_override_caretaker_defaults(parent_chart: Path) -> None:
    docs = _render(parent_chart, "--set", "caretaker.sidecar.native=false")
    spec = pod_spec(one(docs, "Deployment"))
    assert [c["name"] for c in spec["containers"]] == ["notes", "caretaker"]
    assert "schedule: '@hourly'" in one(docs, "ConfigMap")["data"]["config.yaml"]
    validate(docs)
