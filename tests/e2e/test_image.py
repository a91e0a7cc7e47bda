"""The image built from the real Dockerfile, run with podman the way a locked-down pod runs it:
read-only root filesystem with only /tmp writable, no capabilities, host network (the
test's SeaweedFS listens on 127.0.0.1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests.e2e.podman import Podman, project_version, run_locked_down
from tests.e2e.pods import E2E_PASSWORD, host_backup
from tests.e2e.test_dockerfile import locked
from tests.support.seaweed import SeaweedServer

pytestmark = pytest.mark.e2e

BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"
# What the Dockerfile adds to the base (git with perl, ssh, tini; the venv): ~188 MB now,
# 15 MB of it cryptography (issue 16). A budget, so growth is a decision rather than an accident.
ADDED_BYTES_BUDGET = 200_000_000


def test_entrypoint_user_and_labels(podman: Podman, caretaker_image: str) -> None:
    config = podman.inspect(caretaker_image)["Config"]
    assert config["Entrypoint"] == ["tini", "--", "caretaker"]
    assert config["Cmd"] == ["sidecar"]
    assert config["User"] == "65532:65532"
    assert {"PYTHONDONTWRITEBYTECODE=1", "HOME=/tmp"} <= set(config["Env"])
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == project_version()
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert "org.opencontainers.image.source" in labels


def test_version_on_a_read_only_root(podman: Podman, caretaker_image: str) -> None:
    done = run_locked_down(podman, caretaker_image, "--version")
    assert done.stdout.strip() == f"caretaker {project_version()}"


def test_snapshots_lists_what_the_host_backed_up(
    podman: Podman, caretaker_image: str, e2e_s3: SeaweedServer, bucket: str, tmp_path: Path
) -> None:
    """The image's own `cryptography` opens what the host encrypted (key slot included)."""
    repository = f"s3://{bucket}/smoke"
    (tmp_path / "hello.txt").write_text("hello\n")
    host_backup(e2e_s3, repository, tmp_path)
    done = run_locked_down(
        podman,
        caretaker_image,
        "snapshots",
        "--json",
        "--repository",
        repository,
        env={**e2e_s3.env(), "CARETAKER_PASSWORD": E2E_PASSWORD},
    )
    (snapshot,) = json.loads(done.stdout)
    assert (snapshot["files"], snapshot["encrypted"]) == (1, True)


def test_tools_present_and_no_build_leftovers(podman: Podman, caretaker_image: str) -> None:
    script = (
        "git --version && ssh -V 2>&1 && tini --version && id -u && "
        "for tool in gcc cc c++ make ld strip /opt/caretaker/bin/pip; do "
        "command -v $tool && echo LEFTOVER $tool; done; "
        # the builder's wheels and pip caches (the base's own ensurepip wheels are fine)
        "{ ls -d /wheels; find /opt -name '*.whl'; find / -xdev -path '*/.cache/pip'; } "
        "2>/dev/null | sed 's/^/LEFTOVER /'; true"
    )
    done = run_locked_down(podman, caretaker_image, "-c", script, entrypoint="sh")
    out = done.stdout
    assert "git version" in out
    assert "OpenSSH" in out
    assert "tini version" in out
    assert "65532" in out.splitlines()
    assert "LEFTOVER" not in out


def test_the_image_holds_exactly_the_locked_versions(podman: Podman, caretaker_image: str) -> None:
    script = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    done = run_locked_down(podman, caretaker_image, "-c", script, entrypoint="/opt/caretaker/bin/python")
    installed = {canonicalize_name(name): version for name, version in json.loads(done.stdout).items()}
    expected = {name: version for name, (version, _) in locked().items()}
    assert installed.pop("caretaker") == project_version()
    assert installed == expected


def test_image_size_within_budget(podman: Podman, caretaker_image: str) -> None:
    added = podman.inspect(caretaker_image)["Size"] - podman.inspect(BASE_IMAGE)["Size"]
    assert added < ADDED_BYTES_BUDGET, f"the Dockerfile adds {added / 1e6:.0f} MB to its base"
