"""`sidecar.inject`: caretaker added to real-world manifests, idempotently, or refused."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from caretaker.inject.manifests import InjectOptions, inject_documents
from restore.errors import ConfigError
from tests.chart.kube import assert_password_mounted, container, env_of, pod_spec, validate

MANIFESTS = Path(__file__).parent / "manifests"


def _load(name: str) -> list[Any]:
    return [doc for doc in yaml.safe_load_all((MANIFESTS / name).read_text()) if doc]


def _inject(docs: list[Any], **options: Any) -> list[Any]:
    options.setdefault("repository", "s3://backups/app")
    if not options["repository"].startswith("git+"):
        options.setdefault("password_secret", "app-password")
    inject_documents(docs, InjectOptions(**options))
    return docs


def _without_caretaker(spec: dict[str, Any]) -> dict[str, Any]:
    """The pod spec as it was: caretaker's containers and volumes taken out again."""
    spec = copy.deepcopy(spec)
    for key in ("initContainers", "containers"):
        spec[key] = [c for c in spec.get(key, []) if not c["name"].startswith("caretaker")]
        if not spec[key]:
            del spec[key]
    spec["volumes"] = [v for v in spec["volumes"] if not v["name"].startswith("caretaker-")]
    return spec


class TestDeploymentWithSeveralContainers:
    def test_adds_restore_first_and_sidecar_last_leaving_the_rest_alone(self) -> None:
        original = _load("shop-deployment.yaml")
        docs = _inject(copy.deepcopy(original), volume="shop-data", container="shop", secret="shop-s3")
        spec = pod_spec(docs[1])
        assert [c["name"] for c in spec["initContainers"]] == ["caretaker-restore", "migrate"]
        assert [c["name"] for c in spec["containers"]] == ["nginx", "shop", "log-shipper", "caretaker"]
        assert _without_caretaker(spec) == pod_spec(original[1])
        assert docs[0] == original[0]  # the Service
        assert docs[2] == original[2]  # the ConfigMap
        validate(docs)

    def test_caretaker_uses_the_apps_mount_path_user_and_secret(self) -> None:
        docs = _inject(_load("shop-deployment.yaml"), volume="shop-data", container="shop", secret="shop-s3")
        spec = pod_spec(docs[1])
        for item in (container(spec, "caretaker-restore", init=True), container(spec, "caretaker")):
            assert item["volumeMounts"][0] == {"name": "shop-data", "mountPath": "/var/lib/shop"}
            assert env_of(item)["CARETAKER_PATH"] == "/var/lib/shop"
            assert env_of(item)["CARETAKER_REPOSITORY"] == "s3://backups/app"
            assert item["envFrom"] == [{"secretRef": {"name": "shop-s3"}}]
            assert item["securityContext"]["runAsUser"] == 1000
            assert item["securityContext"]["runAsGroup"] == 1000
            assert item["securityContext"]["readOnlyRootFilesystem"] is True
        sidecar = container(spec, "caretaker")
        assert sidecar["ports"] == [{"name": "ct-metrics", "containerPort": 9090, "protocol": "TCP"}]
        assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"

    def test_names_the_app_as_default_container_but_keeps_existing_annotations(self) -> None:
        docs = _inject(_load("shop-deployment.yaml"), volume="shop-data", container="shop")
        annotations = docs[1]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["kubectl.kubernetes.io/default-container"] == "shop"
        assert annotations["prometheus.io/port"] == "9102"

    def test_restore_and_sidecar_options(self) -> None:
        docs = _inject(
            _load("shop-deployment.yaml"),
            volume="shop-data",
            container="shop",
            secret_files="shop-git-key",
            config_map="shop-caretaker",
            env=(("CARETAKER_S3_REGION", "eu-west-1"),),
            allow_empty="always",
            check_cmd="shop check --database shop.db",
            metrics_port=9191,
        )
        spec = pod_spec(docs[1])
        restore = env_of(container(spec, "caretaker-restore", init=True))
        assert restore["CARETAKER_ALLOW_EMPTY"] == "always"
        assert restore["CARETAKER_CHECK_CMD"] == "shop check --database shop.db"
        assert restore["CARETAKER_S3_REGION"] == "eu-west-1"
        sidecar = container(spec, "caretaker")
        assert env_of(sidecar)["CARETAKER_CONFIG"] == "/etc/caretaker/config/config.yaml"
        assert env_of(sidecar)["CARETAKER_LISTEN"] == ":9191"
        assert "CARETAKER_CHECK_CMD" not in env_of(sidecar)
        mounts = {m["name"]: m["mountPath"] for m in sidecar["volumeMounts"]}
        assert mounts["caretaker-secrets"] == "/etc/caretaker/secrets"
        assert mounts["caretaker-config"] == "/etc/caretaker/config"
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["caretaker-config"]["configMap"] == {"name": "shop-caretaker"}
        assert volumes["caretaker-secrets"]["secret"]["secretName"] == "shop-git-key"
        validate(docs)


class TestStatefulSet:
    def test_volume_from_a_claim_template_with_sub_path(self) -> None:
        docs = _inject(_load("postgres-statefulset.yaml"), volume="pgdata", schedule="@hourly")
        spec = pod_spec(docs[0])
        restore = container(spec, "caretaker-restore", init=True)
        mount = {"name": "pgdata", "mountPath": "/var/lib/postgresql/data", "subPath": "pg16"}
        assert restore["volumeMounts"][0] == mount
        assert restore["securityContext"]["runAsUser"] == 999
        assert env_of(container(spec, "caretaker"))["CARETAKER_SCHEDULE"] == "@hourly"
        assert [v["name"] for v in spec["volumes"]] == ["caretaker-tmp", "caretaker-password"]
        validate(docs)

    def test_native_sidecar_follows_the_restore(self) -> None:
        spec = pod_spec(_inject(_load("postgres-statefulset.yaml"), volume="pgdata", native=True)[0])
        assert [c["name"] for c in spec["initContainers"]] == ["caretaker-restore", "caretaker"]
        assert spec["initContainers"][1]["restartPolicy"] == "Always"
        assert [c["name"] for c in spec["containers"]] == ["postgres"]


class TestIdempotency:
    def test_injecting_twice_changes_nothing(self) -> None:
        once = _inject(_load("shop-deployment.yaml"), volume="shop-data", container="shop")
        twice = _inject(copy.deepcopy(once), volume="shop-data", container="shop")
        assert twice == once

    def test_injecting_again_with_other_flags_updates_in_place(self) -> None:
        classic = _inject(_load("postgres-statefulset.yaml"), volume="pgdata")
        native = _inject(copy.deepcopy(classic), volume="pgdata", native=True, repository="s3://b/pg2")
        spec = pod_spec(native[0])
        names = [c["name"] for c in spec["initContainers"] + spec["containers"]]
        assert names == ["caretaker-restore", "caretaker", "postgres"]
        assert env_of(spec["initContainers"][0])["CARETAKER_REPOSITORY"] == "s3://b/pg2"
        assert native == _inject(
            _load("postgres-statefulset.yaml"), volume="pgdata", native=True, repository="s3://b/pg2"
        )


class TestListsAndKinds:
    def test_list_items_daemonset_and_pod(self) -> None:
        docs = _inject(_load("kubectl-list.yaml"), volume="cache")
        daemonset, pod = docs[0]["items"]
        assert container(pod_spec(daemonset), "caretaker")["volumeMounts"][0]["mountPath"] == "/data"
        assert container(pod_spec(pod), "caretaker")["volumeMounts"][0]["mountPath"] == "/cache"
        assert pod["metadata"]["annotations"] == {"kubectl.kubernetes.io/default-container": "main"}
        validate(docs[0]["items"])

    def test_only_selects_workloads_by_name(self) -> None:
        docs = _inject(_load("kubectl-list.yaml"), volume="cache", only=frozenset({"scratch"}))
        daemonset, pod = docs[0]["items"]
        assert [c["name"] for c in pod_spec(daemonset)["containers"]] == ["cache"]
        assert [c["name"] for c in pod_spec(pod)["containers"]] == ["main", "caretaker"]

    def test_root_app_makes_a_root_caretaker_and_user_overrides(self) -> None:
        docs = _load("kubectl-list.yaml")
        pod = docs[0]["items"][1]
        pod["spec"]["securityContext"] = {"runAsUser": 0}
        _inject(docs, volume="cache", only=frozenset({"scratch"}))
        context = container(pod_spec(pod), "caretaker")["securityContext"]
        assert (context["runAsUser"], context["runAsNonRoot"]) == (0, False)
        _inject(docs, volume="cache", only=frozenset({"scratch"}), user=(2000, 3000))
        context = container(pod_spec(pod), "caretaker")["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"], context["runAsNonRoot"]) == (2000, 3000, True)


class TestRefusals:
    def _problems(self, docs: list[Any], **options: Any) -> list[str]:
        before = copy.deepcopy(docs)
        with pytest.raises(ConfigError) as caught:
            _inject(docs, **options)
        assert docs == before  # refused means untouched
        return [str(p) for p in caught.value.problems]

    def test_missing_volume_is_named_with_the_ones_there_are(self) -> None:
        [problem] = self._problems(_load("shop-deployment.yaml"), volume="data", container="shop")
        assert "--volume='data'" in problem
        assert "Deployment/shop" in problem
        assert "nginx-conf, shop-config, shop-data" in problem

    def test_missing_container_and_volume_are_both_reported(self) -> None:
        problems = self._problems(_load("postgres-statefulset.yaml"), volume="data", container="db")
        assert any("--container='db'" in p and "postgres" in p for p in problems)
        assert any("--volume='data'" in p and "pgdata" in p for p in problems)

    def test_several_containers_need_a_name(self) -> None:
        [problem] = self._problems(_load("shop-deployment.yaml"), volume="shop-data")
        assert "Deployment/shop has 3 containers" in problem
        assert "nginx, shop, log-shipper" in problem

    def test_container_must_mount_the_volume(self) -> None:
        [problem] = self._problems(
            _load("shop-deployment.yaml"), volume="shop-config", container="log-shipper"
        )
        assert "container log-shipper does not mount this volume" in problem

    def test_metrics_port_already_taken(self) -> None:
        [problem] = self._problems(
            _load("shop-deployment.yaml"), volume="shop-data", container="shop", metrics_port=9102
        )
        assert "--metrics-port=9102" in problem
        assert "container shop already uses it" in problem

    def test_no_workload_at_all(self) -> None:
        [problem] = self._problems([_load("shop-deployment.yaml")[0]], volume="data")
        assert "no Deployment, StatefulSet" in problem

    def test_no_repository(self) -> None:
        with pytest.raises(ConfigError, match="--repository"):
            inject_documents(_load("postgres-statefulset.yaml"), InjectOptions(volume="pgdata"))

    def test_nothing_changes_when_one_workload_is_refused(self) -> None:
        docs = _load("kubectl-list.yaml")
        docs[0]["items"][1]["spec"]["volumes"][0]["name"] = "scratch-space"
        docs[0]["items"][1]["spec"]["containers"][0]["volumeMounts"][0]["name"] = "scratch-space"
        [problem] = self._problems(docs, volume="cache")
        assert "Pod/scratch has no such volume (it has: scratch-space)" in problem


class TestPassword:
    def test_the_password_secret_is_mounted_for_both_containers(self) -> None:
        spec = pod_spec(_inject(_load("shop-deployment.yaml"), volume="shop-data", container="shop")[1])
        assert_password_mounted(spec, "app-password", "password")

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"password_secret": None}, "--password-secret=None: name the Secret holding"),
            ({"insecure_no_encryption": True}, "--insecure-no-encryption=True: give it or --password-secret"),
            ({"repository": "git+ssh://git@h/r.git"}, "--password-secret='app-password': git repositories"),
        ],
    )
    def test_refused_without_a_password_with_two_or_for_git(
        self, options: dict[str, Any], message: str
    ) -> None:
        opts = {"repository": "s3://b/a", "password_secret": "app-password", **options}
        with pytest.raises(ConfigError, match=re.escape(message)):
            inject_documents(_load("shop-deployment.yaml"), InjectOptions(volume="shop-data", **opts))

    def test_the_opt_out_reaches_both_containers(self) -> None:
        docs = _inject(
            _load("shop-deployment.yaml"),
            volume="shop-data",
            container="shop",
            password_secret=None,
            insecure_no_encryption=True,
        )
        spec = pod_spec(docs[1])
        for item in (container(spec, "caretaker-restore", init=True), container(spec, "caretaker")):
            assert env_of(item)["CARETAKER_INSECURE_NO_ENCRYPTION"] == "true"
            assert "CARETAKER_PASSWORD_FILE" not in env_of(item)
