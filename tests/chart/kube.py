"""Tools for the chart and example tests: a real `helm`, Kubernetes schemas, promtool.

helm comes from scripts/setup.d/60-helm.sh (into .cache/helm/), promtool from Debian's
prometheus package, the schemas from kubernetes-validate (strict: unknown fields fail).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "caretaker"
EXAMPLES = REPO / "examples"
# The oldest version caretaker supports natively (native sidecars) and the newest known.
KUBE_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
# Custom resources have no schema in kubernetes-validate; tests check them otherwise.
CRD_GROUPS = ("monitoring.coreos.com/",)


def tool(name: str) -> str:
    """Path of a test tool; fail (not skip) when missing: CI installs it via scripts/setup."""
    local = REPO / ".cache" / "helm" / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: run scripts/setup (scripts/setup.d/60-helm.sh)")
    return found


def run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(argv)} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def helm_template(
    values: dict[str, Any] | None = None,
    *,
    files: Iterable[Path] = (),
    chart: Path = CHART,
    release: str = "demo",
    extra: Sequence[str] = (),
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `helm template` with value files and a values dict (given last, so it wins)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        json.dump(values or {}, handle)  # JSON is YAML
        handle.flush()
        argv = [tool("helm"), "template", release, str(chart), "--namespace", "shop"]
        for path in (*files, Path(handle.name)):
            argv += ["--values", str(path)]
        return run([*argv, *extra], check=check)


def render(values: dict[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    """Render the chart and return its documents."""
    return load_documents(helm_template(values, **kwargs).stdout)


def install_notes(values: dict[str, Any], tmp_path: Path) -> str:
    """The NOTES `helm install` prints for these values (a client-side dry run)."""
    path = tmp_path / "notes-values.yaml"
    path.write_text(json.dumps(values), encoding="utf-8")  # JSON is YAML
    argv = [tool("helm"), "install", "demo", str(CHART), "--dry-run=client", "--values", str(path)]
    return run(argv).stdout.split("NOTES:", 1)[1]


def load_documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def validate(documents: Iterable[dict[str, Any]], versions: Sequence[str] = KUBE_VERSIONS) -> int:
    """Validate each document strictly against every version; return how many were checked.

    Custom resources are skipped (see CRD_GROUPS); anything else without a schema fails.
    """
    failures: list[str] = []
    checked = 0
    for doc in documents:
        if str(doc.get("apiVersion", "")).startswith(CRD_GROUPS):
            continue
        checked += 1
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(p) for p in error.path)
                failures.append(f"{name} @ {version}: {path}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError as error:
                failures.append(f"{name} @ {version}: {error.message}")
    assert not failures, "\n".join(failures)
    return checked


def of_kind(documents: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc.get("kind") == kind]


def one(documents: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(documents, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]
    return spec if workload["kind"] == "Pod" else spec["template"]["spec"]


def container(spec: dict[str, Any], name: str, *, init: bool = False) -> dict[str, Any]:
    group = spec.get("initContainers" if init else "containers") or []
    found = [c for c in group if c["name"] == name]
    assert found, f"no {'init ' if init else ''}container {name}: {[c['name'] for c in group]}"
    return found[0]


def env_of(container_spec: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container_spec.get("env", [])}


def check_sidecar_config(config_text: str, tmp_path: Path) -> str:
    """Run `caretaker sidecar --check-config` on a config; return its output (fail on exit 2)."""
    config = tmp_path / "config.yaml"
    config.write_text(config_text, encoding="utf-8")
    argv = [sys.executable, "-m", "caretaker", "sidecar", "--check-config", "--config", str(config)]
    return run([*argv, "--repository", (tmp_path / "repo").as_uri()]).stdout


def promtool(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([tool("promtool"), *args], check=check)


def assert_password_mounted(spec: dict[str, Any], secret: str, key: str) -> None:
    """Both caretaker containers read the repository's password from the mounted Secret."""
    mount = {"name": "caretaker-password", "mountPath": "/etc/caretaker/password", "readOnly": True}
    for name, init in (("caretaker-restore", True), ("caretaker", False)):
        item = container(spec, name, init=init)
        assert env_of(item)["CARETAKER_PASSWORD_FILE"] == f"/etc/caretaker/password/{key}"
        assert mount in item["volumeMounts"]
    volume = next(v for v in spec["volumes"] if v["name"] == "caretaker-password")
    assert volume["secret"] == {"secretName": secret, "defaultMode": 0o440}
