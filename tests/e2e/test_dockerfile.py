"""Static checks of what the e2e tier builds and runs: the Dockerfile (hadolint), the lock
file the image installs from (every runtime dependency, exact versions, hashes) and the pod
manifest (Kubernetes 1.29 schemas, image tag = project version). No podman needed."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.e2e.podman import EXAMPLE_IMAGE, REPO, project_version
from tests.e2e.pods import load_manifest, pod_spec

MANIFEST = REPO / "examples/pod/pod.yaml"
LOCK = REPO / "requirements.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def locked() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock as {canonical name: (version, sha256 hashes)}."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current: list[str] = []
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        if pin := _PIN.match(line):
            current = []
            entries[canonicalize_name(pin.group(1))] = (pin.group(2), current)
        elif "--hash=sha256:" in line:
            current.append(line.split("--hash=sha256:")[1].rstrip(" \\"))
    return entries


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


def runtime_requirements() -> list[Requirement]:
    with (REPO / "pyproject.toml").open("rb") as file:
        return [Requirement(text) for text in tomllib.load(file)["project"]["dependencies"]]


def test_the_lock_pins_every_direct_dependency_within_its_range_with_hashes() -> None:
    pins = locked()
    for requirement in runtime_requirements():
        version, _ = pins[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version), f"{requirement} vs locked {version}"
    assert all(len(hashes) >= 1 and all(len(h) == 64 for h in hashes) for _, hashes in pins.values())


def test_the_lock_is_closed_over_transitive_dependencies() -> None:
    """Every locked package's own requirements are locked too, at versions they accept (read
    from the dev venv, which scripts/setup installs at the locked versions)."""
    pins = locked()
    for name, (version, _) in pins.items():
        assert importlib.metadata.version(name) == version, f"{name}: venv differs from the lock"
        for text in importlib.metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            dependency = canonicalize_name(requirement.name)
            assert dependency in pins, f"{name} needs {requirement}, which is not locked"
            assert requirement.specifier.contains(pins[dependency][0], prereleases=True)


def test_the_image_build_installs_from_the_lock_with_hashes_checked() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert "COPY requirements.lock /wheels/requirements.lock" in dockerfile
    assert (
        "--require-hashes --only-binary=:all: --find-links=/wheels -r /wheels/requirements.lock" in dockerfile
    )
    assert "--no-deps \\\n        /wheels/caretaker-*.whl" in dockerfile  # nothing resolved besides the lock
    assert "/opt/caretaker/bin/pip check" in dockerfile
    build = (REPO / "scripts/build-image").read_text(encoding="utf-8")
    assert re.search(r"pip download .*--require-hashes", build)
    assert "-r requirements.lock" in build
    assert "!requirements.lock" in (REPO / ".dockerignore").read_text(encoding="utf-8")
