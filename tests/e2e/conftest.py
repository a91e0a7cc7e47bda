"""Fixtures for the e2e tier: the image built from the real Dockerfile, run with podman.

All session-wide and lazy (only e2e tests pay for them):
- `podman`: podman/buildah on caretaker's own configuration and image store;
- `caretaker_image`: scripts/build-image (the base stand-in and the layer cache make a
  repeated build take seconds), also tagged with the placeholder name the examples use;
- `app_image`: the busybox stand-in the examples' app containers run;
- `e2e_s3`: SeaweedFS on 127.0.0.1, which pods reach over host networking;
- `git_host` (per test): a private sshd with git-shell, a git host over ssh.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.podman import EXAMPLE_IMAGE, Podman, project_version
from tests.support.git_remotes import SshServer
from tests.support.seaweed import SeaweedServer


@pytest.fixture(scope="session")
def podman() -> Podman:
    return Podman.configured()


@pytest.fixture(scope="session")
def caretaker_image(podman: Podman) -> str:
    """Build the image (cached layers make a rebuild of unchanged sources take seconds)."""
    version = project_version()
    podman.script("scripts/build-image", f"{EXAMPLE_IMAGE}:{version}")
    return f"localhost/caretaker:{version}"


@pytest.fixture(scope="session")
def app_image(podman: Podman) -> str:
    return podman.ensure_busybox()


@pytest.fixture(scope="session")
def e2e_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    with SeaweedServer(tmp_path_factory.mktemp("e2e-seaweed")) as server:
        yield server


@pytest.fixture
def git_host(tmp_path: Path) -> Iterator[SshServer]:
    """A private sshd on 127.0.0.1 running git-shell for one deploy key (pods reach it over
    host networking)."""
    server = SshServer(tmp_path / "git-host")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(e2e_s3: SeaweedServer) -> str:
    """A fresh, empty bucket on the session's server."""
    name = f"e2e-{uuid.uuid4().hex[:12]}"
    e2e_s3.make_bucket(name)
    return name
