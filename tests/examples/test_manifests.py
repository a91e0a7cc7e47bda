"""Every example manifest validates against the Kubernetes schemas (1.29 and the newest),
its sidecar configs pass `caretaker sidecar --check-config`, and its scripts work.

The pods themselves run in the e2e tier (tests/e2e, the built image under podman); here
everything that can be checked without a container runtime is checked.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.kube import EXAMPLES, check_sidecar_config, load_documents, of_kind, pod_spec, validate

pytestmark = pytest.mark.integration

# Not Kubernetes manifests: chart values, Prometheus files, a chart's templates; examples/pod
# belongs to the image's tests.
NOT_MANIFESTS = ("prometheus", "chart-include", "pod")
MANIFESTS = sorted(
    path
    for path in EXAMPLES.rglob("*.yaml")
    if path.relative_to(EXAMPLES).parts[0] not in NOT_MANIFESTS and "values" not in path.name
)
WORKLOAD_KINDS = ("Pod", "Deployment", "StatefulSet", "DaemonSet")


def _docs(path: Path) -> list[dict[str, Any]]:
    return load_documents(path.read_text(encoding="utf-8"))


def _caretaker_containers(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            spec = pod_spec(doc)
            found += [
                c for c in spec.get("initContainers", []) + spec["containers"] if "caretaker" in c["image"]
            ]
    return found


def test_the_examples_are_found() -> None:
    names = {str(p.relative_to(EXAMPLES)) for p in MANIFESTS}
    assert {
        "init-container/pod.yaml",
        "poststart-hook/pod.yaml",
        "sidecar/pod.yaml",
        "sidecar/native.yaml",
        "entrypoint-wrapper/pod.yaml",
        "webdav-git/manifests.yaml",
        "sqlite/manifests.yaml",
    } <= names


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_manifest_validates(path: Path) -> None:
    docs = _docs(path)
    assert validate(docs) == len(docs)
    assert any(doc["kind"] in WORKLOAD_KINDS for doc in docs)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_caretaker_containers_are_locked_down(path: Path) -> None:
    docs = _docs(path)
    ours = _caretaker_containers(docs)
    assert ours
    for item in ours:
        assert item["image"] == "ghcr.io/caretaker/caretaker:0.1.0"  # the documented placeholder
        context = item["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert "/tmp" in [m["mountPath"] for m in item["volumeMounts"]]
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            pod_context = pod_spec(doc)["securityContext"]
            assert pod_context["runAsNonRoot"] is True
            assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_every_example_folder_has_a_readme(path: Path) -> None:
    readme = path.parent / "README.md"
    assert readme.exists()
    assert path.name in readme.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "path",
    [p for p in MANIFESTS if any("config.yaml" in d.get("data", {}) for d in of_kind(_docs(p), "ConfigMap"))],
    ids=lambda p: str(p.relative_to(EXAMPLES)),
)
def test_sidecar_configs_pass_the_sidecars_check(path: Path, tmp_path: Path) -> None:
    for config_map in of_kind(_docs(path), "ConfigMap"):
        if "config.yaml" in config_map.get("data", {}):
            config = config_map["data"]["config.yaml"]
            output = check_sidecar_config(config, tmp_path)
            assert "(valid)" in output
            assert len(yaml.safe_load(config)["jobs"]) == output.count("\njob ")


class TestEntrypointWrapper:
    """The wrapper script from the ConfigMap, run by a real sh."""

    @pytest.fixture
    def wrapper(self, tmp_path: Path) -> Path:
        config_map = of_kind(_docs(EXAMPLES / "entrypoint-wrapper" / "pod.yaml"), "ConfigMap")[0]
        script = tmp_path / "wait-for-restore.sh"
        script.write_text(config_map["data"]["wait-for-restore.sh"], encoding="utf-8")
        return script

    def test_runs_the_command_once_the_marker_appears(self, wrapper: Path, tmp_path: Path) -> None:
        marker = tmp_path / "restored"
        env = {"PATH": "/usr/bin:/bin", "RESTORE_MARKER": str(marker), "WAIT_FOR_RESTORE_SECONDS": "30"}
        process = subprocess.Popen(
            ["sh", str(wrapper), "echo", "app started"], env=env, stdout=subprocess.PIPE, text=True
        )
        time.sleep(1.5)
        assert process.poll() is None  # still waiting
        marker.write_text('{"outcome": "restored"}')
        out, _ = process.communicate(timeout=10)
        assert process.returncode == 0
        assert "data ready after" in out
        assert '{"outcome": "restored"}' in out
        assert out.rstrip().endswith("app started")

    def test_gives_up_after_its_limit(self, wrapper: Path, tmp_path: Path) -> None:
        env = {
            "PATH": "/usr/bin:/bin",
            "RESTORE_MARKER": str(tmp_path / "never"),
            "WAIT_FOR_RESTORE_SECONDS": "1",
        }
        result = subprocess.run(
            ["sh", str(wrapper), "echo", "app started"],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert result.returncode == 1
        assert "no restore within 1s" in result.stderr
        assert "app started" not in result.stdout
