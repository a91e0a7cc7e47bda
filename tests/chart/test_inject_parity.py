"""`caretaker inject` and the Helm chart add the same containers and volumes, so a pod
looks the same (and the docs hold for both) whichever way caretaker was added."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from caretaker.inject.manifests import InjectOptions, inject_documents
from tests.chart.kube import container, of_kind, pod_spec, render

pytestmark = pytest.mark.integration

SAME_FIELDS = (
    "image",
    "imagePullPolicy",
    "args",
    "envFrom",
    "securityContext",
    "terminationMessagePolicy",
    "resources",
    "volumeMounts",
    "ports",
    "livenessProbe",
    "readinessProbe",
    "restartPolicy",
)
# The chart also passes its restore options and sidecar config as env; inject sets the
# sidecar's listen address from --metrics-port.
ONLY_CHART = {"CARETAKER_SNAPSHOT", "CARETAKER_TIMEOUT", "CARETAKER_MAX_FALLBACKS"}
ONLY_INJECT = {"CARETAKER_LISTEN"}


def _chart_pod(native: bool) -> dict[str, Any]:
    values = {
        "repository": {"url": "s3://shop-backups/orders"},
        "credentials": {"envSecret": "orders-s3"},
        "encryption": {"passwordSecret": "orders-password"},
        "sidecar": {"native": native},
        "workload": {
            "containers": [
                {
                    "name": "app",
                    "image": "busybox",
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ]
        },
    }
    docs = render(values)
    return pod_spec(of_kind(docs, "Deployment")[0])


def _injected_pod(native: bool, config_map: str) -> dict[str, Any]:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "orders"},
        "spec": {
            "template": {
                "spec": {
                    "securityContext": {"runAsUser": 65532, "runAsGroup": 65532},
                    "containers": [
                        {
                            "name": "app",
                            "image": "busybox",
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                }
            }
        },
    }
    options = InjectOptions(
        volume="data",
        repository="s3://shop-backups/orders",
        secret="orders-s3",
        password_secret="orders-password",
        config_map=config_map,
        native=native,
    )
    docs = [copy.deepcopy(deployment)]
    inject_documents(docs, options)
    return pod_spec(docs[0])


@pytest.mark.parametrize("native", [False, True], ids=["classic", "native"])
def test_inject_and_chart_add_the_same_caretaker(native: bool) -> None:
    chart = _chart_pod(native)
    config_map = next(v for v in chart["volumes"] if v["name"] == "caretaker-config")["configMap"]["name"]
    injected = _injected_pod(native, config_map)
    for name in ("caretaker-restore", "caretaker"):
        init = name == "caretaker-restore" or native
        ours, theirs = container(injected, name, init=init), container(chart, name, init=init)
        for field in SAME_FIELDS:
            assert ours.get(field) == theirs.get(field), f"{name}.{field}"
        chart_env = {e["name"]: e for e in theirs["env"] if e["name"] not in ONLY_CHART}
        inject_env = {e["name"]: e for e in ours["env"] if e["name"] not in ONLY_INJECT}
        assert inject_env == chart_env, name
    assert [v for v in injected["volumes"] if v["name"] != "data"] == [
        v for v in chart["volumes"] if v["name"] != "data"
    ]
    assert [c["name"] for c in injected["initContainers"]] == [c["name"] for c in chart["initContainers"]]
    assert [c["name"] for c in injected["containers"]] == [c["name"] for c in chart["containers"]]
