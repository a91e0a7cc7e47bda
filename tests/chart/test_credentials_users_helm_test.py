"""What a chart user reaches for first: bitnami-style Secret names (`existingSecret`, and
`existingSecretKeys` for Secrets with other key names), a warning at install when the app
runs as another user than caretaker, and `helm test` asking the sidecar's /readyz."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.kube import (
    EXAMPLES,
    container,
    env_of,
    helm_template,
    install_notes,
    of_kind,
    one,
    pod_spec,
    render,
    validate,
)

pytestmark = pytest.mark.integration

APP = {"name": "app", "image": "busybox", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
BASE = {
    "repository": {"url": "s3://shop-backups/orders"},
    "encryption": {"passwordSecret": "orders-password"},
    "workload": {"containers": [APP]},
}


def caretaker_containers(values: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(one(render(values), "Deployment"))
    return [container(spec, "caretaker-restore", init=True), container(spec, "caretaker")]


@pytest.mark.parametrize("key", ["existingSecret", "envSecret"])
def test_an_existing_secret_becomes_the_containers_environment(key: str) -> None:
    for found in caretaker_containers({**BASE, "credentials": {key: "orders-s3"}}):
        assert found["envFrom"] == [{"secretRef": {"name": "orders-s3"}}]


def test_both_names_may_name_the_same_secret_but_not_two() -> None:
    same = {**BASE, "credentials": {"existingSecret": "a", "envSecret": "a"}}
    assert caretaker_containers(same)[0]["envFrom"] == [{"secretRef": {"name": "a"}}]
    result = helm_template({**BASE, "credentials": {"existingSecret": "a", "envSecret": "b"}}, check=False)
    assert result.returncode != 0
    assert (
        "credentials.existingSecret (a) and credentials.envSecret (b) name different Secrets" in result.stderr
    )


def test_existing_secret_keys_read_only_those_keys_as_those_variables() -> None:
    keys = {"AWS_ACCESS_KEY_ID": "root-user", "AWS_SECRET_ACCESS_KEY": "root-password"}
    values = {**BASE, "credentials": {"existingSecret": "minio", "existingSecretKeys": keys}}
    for found in caretaker_containers(values):
        assert "envFrom" not in found, "the Secret's other keys (invalid variable names) stay out"
        env = env_of(found)
        for variable, key in keys.items():
            assert env[variable] == {"secretKeyRef": {"name": "minio", "key": key}}
    validate(render(values))


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        (
            {"existingSecretKeys": {"AWS_ACCESS_KEY_ID": "user"}},
            "existingSecretKeys needs credentials.existingSecret",
        ),
        ({"existingSecret": "s", "existingSecretKeys": {"aws-key": "user"}}, "aws-key"),
    ],
    ids=["keys-without-secret", "bad-variable-name"],
)
def test_bad_secret_values_are_refused(credentials: dict[str, Any], message: str) -> None:
    result = helm_template({**BASE, "credentials": credentials}, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_notes_warn_when_the_app_runs_as_another_user(tmp_path: Path) -> None:
    app = {**APP, "securityContext": {"runAsUser": 1000}}
    notes = install_notes({**BASE, "workload": {"containers": [app]}}, tmp_path)
    assert 'WARNING: container "app" runs as user 1000, caretaker as 65532.' in notes
    assert "--set securityContext.runAsUser=1000" in notes
    # The pod's user counts for containers that do not set their own.
    pod_user = {"containers": [APP], "podSecurityContext": {"runAsUser": 0}}
    assert 'container "app" runs as user 0' in install_notes({**BASE, "workload": pod_user}, tmp_path)


def test_notes_stay_quiet_when_the_users_match(tmp_path: Path) -> None:
    same = {**APP, "securityContext": {"runAsUser": 65532}}
    assert "WARNING" not in install_notes({**BASE, "workload": {"containers": [same]}}, tmp_path)
    assert "WARNING" not in install_notes(BASE, tmp_path), "an image's own user is not known"
    example = yaml.safe_load((EXAMPLES / "app-user" / "values.yaml").read_text())
    assert "WARNING" not in install_notes(example, tmp_path)


def test_helm_test_pod_asks_readyz_through_the_metrics_service() -> None:
    docs = render({**BASE, "metrics": {"service": {"port": 9100}}})
    (pod,) = of_kind(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    service = one(docs, "Service")
    assert service["spec"]["publishNotReadyAddresses"] is True, "a failing /readyz still answers"
    (test,) = pod["spec"]["containers"]
    assert test["command"][-1] == f"http://{service['metadata']['name']}:9100/readyz"
    assert test["image"] == container(pod_spec(one(docs, "Deployment")), "caretaker")["image"]
    assert test["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["restartPolicy"] == "Never"
    validate(docs)


@pytest.mark.parametrize(
    "values",
    [{"sidecar": {"enabled": False}}, {"metrics": {"service": {"enabled": False}}}],
    ids=["no-sidecar", "no-metrics-service"],
)
def test_no_helm_test_without_a_sidecar_behind_a_service(values: dict[str, Any]) -> None:
    assert of_kind(render({**BASE, **values}), "Pod") == []
