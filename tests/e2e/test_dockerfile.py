"""Static checks of what the e2e tier builds and runs: the Dockerfile (hadolint) and the pod
manifest (Kubernetes 1.29 schemas, image tag = project version). No podman needed."""

from __future__ import annotations

import shutil
import subprocess

from tests.e2e.podman import EXAMPLE_IMAGE, REPO, project_version
from tests.e2e.pods import load_manifest, pod_spec

MANIFEST = REPO / "examples/pod/pod.yaml"


def tool(name: str) -> str:
    """A console script of the dev extras (in the venv, which may not be on PATH)."""
    found = shutil.which(name) or shutil.which(name, path=str(REPO / ".venv/bin"))
    assert found, f"{name} not found: scripts/setup installs the dev extras"
    return found


def test_dockerfile_is_hadolint_clean() -> None:
    done = subprocess.run(
        [tool("hadolint"), "Dockerfile"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_example_manifest_is_valid_kubernetes() -> None:
    done = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "-k", "1.29.0", str(MANIFEST)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_example_runs_this_version_of_the_image() -> None:
    spec = pod_spec(load_manifest(MANIFEST))
    images = {c["image"] for c in spec["initContainers"] + spec["containers"]}
    ours = {image for image in images if image.startswith(f"{EXAMPLE_IMAGE}:")}
    assert ours == {f"{EXAMPLE_IMAGE}:{project_version()}"}
