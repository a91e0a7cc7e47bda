"""The Helm chart, rendered by a real helm for several value sets and checked against the
Kubernetes schemas (1.29 and the newest), the sidecar's own config check and promtool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.kube import (
    CHART,
    EXAMPLES,
    assert_password_mounted,
    check_sidecar_config,
    container,
    env_of,
    helm_template,
    install_notes,
    of_kind,
    one,
    pod_spec,
    promtool,
    render,
    run,
    tool,
    validate,
)

pytestmark = pytest.mark.integration

APP = {
    "name": "app",
    "image": "docker.io/library/busybox:1.36",
    "command": ["httpd", "-f", "-p", "8080", "-h", "/data"],
    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "s3-classic-monitoring": {
        "repository": {
            "url": "s3://shop-backups/orders",
            "s3": {"endpoint": "http://minio.storage:9000", "pathStyle": True, "sse": "AES256"},
        },
        "credentials": {"envSecret": "orders-s3"},
        "encryption": {"passwordSecret": "orders-backup-password"},
        "restore": {"checkCommand": "test -s orders.db", "timeout": "10m"},
        "sidecar": {"rpo": "2h", "jobs": {"backup": {"excludes": ["*.tmp"], "jitter": "30s"}}},
        "workload": {"containers": [APP]},
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
    },
    "git-native-statefulset": {
        "repository": {
            "url": "git+ssh://git@git.example.com/backups/wiki.git#branch=wiki",
            "git": {"sshKey": "ssh-privatekey", "knownHosts": "known_hosts", "author": "ct <ct@x>"},
        },
        "credentials": {"fileSecret": "wiki-deploy-key"},
        "sidecar": {"native": True, "jobs": {"prune": None, "verify": {"enabled": False}}},
        "workload": {
            "kind": "StatefulSet",
            "containers": [APP],
            "persistence": {
                "volumeClaimTemplate": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                }
            },
            "service": {"enabled": True, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
    },
    "irsa-existing-claim": {
        "repository": {"url": "s3://shop-backups/catalog", "s3": {"region": "eu-central-1"}},
        "encryption": {"passwordSecret": "catalog-password", "passwordKey": "key.txt"},
        "serviceAccount": {"irsaRoleArn": "arn:aws:iam::123456789012:role/catalog-backup"},
        "workload": {"containers": [APP], "persistence": {"existingClaim": "catalog-data"}},
    },
    "existing-service-account-restore-only": {
        "repository": {"url": "s3://shop-backups/cache"},
        "credentials": {"envSecret": "cache-s3"},
        "encryption": {"insecureNoEncryption": True},
        "serviceAccount": {"create": False, "name": "shared"},
        "sidecar": {"enabled": False},
        "metrics": {"service": {"enabled": False}},
        "workload": {"containers": [APP]},
    },
}
EXAMPLE_VALUES = {
    "webdav-example": EXAMPLES / "webdav-git" / "values.yaml",
    "e2e-values": EXAMPLES / "chart-e2e-values.yaml",
    "app-user": EXAMPLES / "app-user" / "values.yaml",
}
ALL_SETS = [*VALUE_SETS, *EXAMPLE_VALUES]


def _render_set(name: str, **kwargs: Any) -> list[dict[str, Any]]:
    files = [EXAMPLE_VALUES[name]] if name in EXAMPLE_VALUES else []
    return render(VALUE_SETS.get(name), files=files, **kwargs)


def _workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    found = of_kind(docs, "Deployment") + of_kind(docs, "StatefulSet")
    assert len(found) == 1
    return found[0]


def test_lint_strict_with_defaults() -> None:
    result = run([tool("helm"), "lint", "--strict", str(CHART)])
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("name", ALL_SETS)
def test_lint_strict(name: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(VALUE_SETS.get(name, {})), encoding="utf-8")
    argv = [tool("helm"), "lint", "--strict", str(CHART), "--values", str(values)]
    if name in EXAMPLE_VALUES:
        argv += ["--values", str(EXAMPLE_VALUES[name])]
    assert "0 chart(s) failed" in run(argv).stdout


@pytest.mark.parametrize("name", ALL_SETS)
def test_every_manifest_validates(name: str) -> None:
    docs = _render_set(name)
    assert validate(docs) >= 2


@pytest.mark.parametrize("name", [n for n in ALL_SETS if n != "existing-service-account-restore-only"])
def test_rendered_sidecar_config_passes_the_sidecars_check(name: str, tmp_path: Path) -> None:
    config = one(_render_set(name), "ConfigMap")["data"]["config.yaml"]
    output = check_sidecar_config(config, tmp_path)
    assert "(valid)" in output
    for job in yaml.safe_load(config)["jobs"]:
        assert f"job {job['name']} ({job['kind']})" in output


def test_defaults_render_only_the_shared_objects() -> None:
    docs = _render_set("defaults")
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "Pod", "Service", "ServiceAccount"]
    assert one(docs, "Pod")["metadata"]["annotations"]["helm.sh/hook"] == "test"
    service = one(docs, "Service")
    assert service["spec"]["selector"] == {"caretaker/instance": "demo-caretaker"}


def test_classic_sidecar_runs_beside_the_app_after_the_restore() -> None:
    spec = pod_spec(_workload(_render_set("s3-classic-monitoring")))
    assert [c["name"] for c in spec["initContainers"]] == ["caretaker-restore"]
    assert [c["name"] for c in spec["containers"]] == ["app", "caretaker"]
    assert "restartPolicy" not in container(spec, "caretaker")


def test_native_sidecar_is_an_init_container_after_the_restore() -> None:
    spec = pod_spec(_workload(_render_set("git-native-statefulset")))
    assert [c["name"] for c in spec["initContainers"]] == ["caretaker-restore", "caretaker"]
    assert container(spec, "caretaker", init=True)["restartPolicy"] == "Always"
    assert [c["name"] for c in spec["containers"]] == ["app"]


def test_native_sidecar_is_refused_before_kubernetes_1_29() -> None:
    result = helm_template(
        VALUE_SETS["git-native-statefulset"], extra=["--kube-version", "1.28.0"], check=False
    )
    assert result.returncode != 0
    assert "sidecar.native needs Kubernetes >= 1.29" in result.stderr


def test_native_sidecar_manifest_is_invalid_for_1_27_schemas() -> None:
    """The schemas really are strict: before 1.28, containers had no restartPolicy."""
    workload = _workload(_render_set("git-native-statefulset"))
    validate([workload], versions=["1.29.0"])
    with pytest.raises(AssertionError, match="restartPolicy"):
        validate([workload], versions=["1.27.0"])


@pytest.mark.parametrize("name", ["s3-classic-monitoring", "git-native-statefulset"])
def test_caretaker_containers_are_locked_down(name: str) -> None:
    spec = pod_spec(_workload(_render_set(name)))
    ours = [c for c in spec["initContainers"] + spec["containers"] if c["name"].startswith("caretaker")]
    assert len(ours) == 2
    for item in ours:
        context = item["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == 65532
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert {"name": "caretaker-tmp", "mountPath": "/tmp"} in item["volumeMounts"]
        assert item["resources"]["limits"]["memory"]
    assert spec["securityContext"]["fsGroup"] == 65532


def test_sidecar_probes_and_metrics_port() -> None:
    sidecar = container(pod_spec(_workload(_render_set("s3-classic-monitoring"))), "caretaker")
    assert sidecar["ports"] == [{"name": "ct-metrics", "containerPort": 9090, "protocol": "TCP"}]
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ct-metrics"}
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ct-metrics"}
    assert env_of(sidecar)["CARETAKER_CONFIG"] == "/etc/caretaker/config/config.yaml"


def test_s3_settings_restore_options_and_secret_reach_the_containers() -> None:
    spec = pod_spec(_workload(_render_set("s3-classic-monitoring")))
    restore = container(spec, "caretaker-restore", init=True)
    env = env_of(restore)
    assert env["CARETAKER_REPOSITORY"] == "s3://shop-backups/orders"
    assert env["CARETAKER_S3_ENDPOINT"] == "http://minio.storage:9000"
    assert env["CARETAKER_S3_PATH_STYLE"] == "true"
    assert env["CARETAKER_S3_SSE"] == "AES256"
    assert env["CARETAKER_CHECK_CMD"] == "test -s orders.db"
    assert env["CARETAKER_TIMEOUT"] == "10m"
    assert env["CARETAKER_ALLOW_EMPTY"] == "new-repository"  # only a never-used repository starts empty
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    for item in (restore, container(spec, "caretaker")):
        assert item["envFrom"] == [{"secretRef": {"name": "orders-s3"}}]
        assert item["args"] in (["restore"], ["sidecar"])


def test_git_key_files_come_from_the_mounted_secret() -> None:
    docs = _render_set("git-native-statefulset")
    spec = pod_spec(_workload(docs))
    sidecar = container(spec, "caretaker", init=True)
    env = env_of(sidecar)
    assert env["CARETAKER_GIT_SSH_KEY_FILE"] == "/etc/caretaker/secrets/ssh-privatekey"
    assert env["CARETAKER_GIT_KNOWN_HOSTS_FILE"] == "/etc/caretaker/secrets/known_hosts"
    assert "envFrom" not in sidecar
    mount = {"name": "caretaker-secrets", "mountPath": "/etc/caretaker/secrets", "readOnly": True}
    assert mount in sidecar["volumeMounts"]
    secret = next(v for v in spec["volumes"] if v["name"] == "caretaker-secrets")["secret"]
    assert secret == {"secretName": "wiki-deploy-key", "defaultMode": 0o440}


def test_statefulset_gets_a_claim_template_and_a_governing_service() -> None:
    docs = _render_set("git-native-statefulset")
    workload = _workload(docs)
    assert workload["kind"] == "StatefulSet"
    assert workload["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert "data" not in [v["name"] for v in pod_spec(workload)["volumes"]]
    services = {s["metadata"]["name"] for s in of_kind(docs, "Service")}
    assert workload["spec"]["serviceName"] in services


def test_disabled_jobs_are_left_out_of_the_config() -> None:
    config = yaml.safe_load(one(_render_set("git-native-statefulset"), "ConfigMap")["data"]["config.yaml"])
    assert [job["name"] for job in config["jobs"]] == ["backup"]


def test_irsa_role_annotates_the_service_account() -> None:
    docs = _render_set("irsa-existing-claim")
    account = one(docs, "ServiceAccount")
    role = "arn:aws:iam::123456789012:role/catalog-backup"
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": role}
    spec = pod_spec(_workload(docs))
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    data = next(v for v in spec["volumes"] if v["name"] == "data")
    assert data == {"name": "data", "persistentVolumeClaim": {"claimName": "catalog-data"}}
    assert "envFrom" not in container(spec, "caretaker")  # credentials from the role


def test_existing_service_account_and_restore_only() -> None:
    docs = _render_set("existing-service-account-restore-only")
    assert not of_kind(docs, "ServiceAccount")
    assert not of_kind(docs, "Service")
    spec = pod_spec(_workload(docs))
    assert spec["serviceAccountName"] == "shared"
    assert [c["name"] for c in spec["initContainers"] + spec["containers"]] == ["caretaker-restore", "app"]


def test_service_monitor_selects_the_metrics_service_without_honor_labels() -> None:
    docs = _render_set("s3-classic-monitoring")
    monitor = one(docs, "ServiceMonitor")
    service = next(s for s in of_kind(docs, "Service") if s["metadata"]["name"].endswith("-metrics"))
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert "honorLabels" not in endpoint  # caretaker labels no series `job` or `instance`
    pod_labels = _workload(docs)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_prometheus_rule_passes_promtool_and_is_scoped_to_the_release(tmp_path: Path) -> None:
    rule = one(_render_set("s3-classic-monitoring"), "PrometheusRule")
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), encoding="utf-8")
    assert "SUCCESS: 5 rules found" in promtool("check", "rules", str(rules_file)).stdout
    expressions = [r["expr"] for r in rule["spec"]["groups"][0]["rules"]]
    scope = 'namespace="shop",service="demo-caretaker-metrics"'
    assert all('namespace="shop"' in expr for expr in expressions)
    assert sum(scope in expr for expr in expressions) == 4  # all but the kube-state-metrics one


def test_config_checksum_follows_the_jobs() -> None:
    def checksum(schedule: str) -> str:
        values = {
            **VALUE_SETS["s3-classic-monitoring"],
            "sidecar": {"jobs": {"backup": {"schedule": schedule}}},
        }
        workload = _workload(render(values))
        return str(workload["spec"]["template"]["metadata"]["annotations"]["checksum/caretaker-config"])

    assert checksum("@hourly") != checksum("@daily")
    assert checksum("@hourly") == checksum("@hourly")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"workload": {"containers": [APP]}}, "set repository.url"),
        (
            {
                "repository": {"url": "s3://b/p"},
                "encryption": {"passwordSecret": "p"},
                "workload": {"containers": [APP], "persistence": {"volumeClaimTemplate": {"a": 1}}},
            },
            "volumeClaimTemplate needs workload.kind StatefulSet",
        ),
        (
            {"repository": {"url": "s3://b/p"}, "workload": {"containers": [APP]}},
            (
                "set encryption.passwordSecret to an existing Secret holding the repository's password "
                "(keep a copy outside the cluster"
            ),
        ),
        (
            {
                "repository": {"url": "s3://b/p"},
                "encryption": {"passwordSecret": "p", "insecureNoEncryption": True},
                "workload": {"containers": [APP]},
            },
            "not both",
        ),
        (
            {
                "repository": {"url": "git+ssh://git@h/r.git"},
                "encryption": {"passwordSecret": "p"},
                "workload": {"containers": [APP]},
            },
            "git repositories store browsable files and cannot be encrypted",
        ),
        ({"sidecar": {"jobs": {"backup": {"schedul": "@daily"}}}}, "'schedul' not allowed"),
        ({"sidecar": {"jobs": {"Nightly": {"kind": "backup"}}}}, "Nightly"),
        ({"sidecar": {"jobs": {"x": {"kind": "command", "schedule": "@daily"}}}}, "command"),
        ({"sidecar": {"jobs": {"backup": {"keep": {"last": 3}}}}}, "allOf"),
        ({"repository": {"url": "https://bucket"}}, "/repository/url"),
        (
            {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
            "needs metrics.service",
        ),
    ],
    ids=[
        "no-repository",
        "claim-template-on-deployment",
        "no-password",
        "password-and-opt-out",
        "password-for-git",
        "typo",
        "bad-job-name",
        "command-without-argv",
        "keep-on-backup",
        "bad-url-scheme",
        "monitor-without-service",
    ],
)
def test_bad_values_are_refused_naming_the_problem(values: dict[str, Any], message: str) -> None:
    result = helm_template(values, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_notes_tell_how_to_check_the_first_backup(tmp_path: Path) -> None:
    notes = install_notes(VALUE_SETS["s3-classic-monitoring"], tmp_path)
    assert "logs deployment/demo-caretaker -c caretaker-restore" in notes
    assert "caretaker snapshots" in notes
    assert "/status" in notes


def test_grafana_dashboard_is_a_labelled_configmap_when_enabled() -> None:
    assert not [
        d for d in _render_set("s3-classic-monitoring") if d["metadata"]["name"].endswith("-dashboard")
    ]
    values = {
        **VALUE_SETS["s3-classic-monitoring"],
        "metrics": {"grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Backups"}}},
    }
    [dashboard] = [d for d in render(values) if d["metadata"]["name"].endswith("-dashboard")]
    assert dashboard["kind"] == "ConfigMap"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Backups"}
    shipped = (CHART / "dashboards" / "caretaker.json").read_text()
    assert json.loads(dashboard["data"]["caretaker.json"]) == json.loads(shipped)


def test_notes_say_that_losing_the_password_loses_the_backups(tmp_path: Path) -> None:
    notes = " ".join(install_notes(VALUE_SETS["s3-classic-monitoring"], tmp_path).split())
    assert 'password in Secret "orders-backup-password"' in notes
    assert "LOSING THAT PASSWORD LOSES THE BACKUPS" in notes
    assert "Keep a copy OUTSIDE the cluster" in notes
    unencrypted = " ".join(
        install_notes(VALUE_SETS["existing-service-account-restore-only"], tmp_path).split()
    )
    assert "WARNING: encryption.insecureNoEncryption is set" in unencrypted


def test_the_password_file_reaches_both_containers() -> None:
    assert_password_mounted(
        pod_spec(_workload(_render_set("irsa-existing-claim"))), "catalog-password", "key.txt"
    )
    opted_out = container(
        pod_spec(_workload(_render_set("existing-service-account-restore-only"))),
        "caretaker-restore",
        init=True,
    )
    assert env_of(opted_out)["CARETAKER_INSECURE_NO_ENCRYPTION"] == "true"
