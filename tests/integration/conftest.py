"""Fixtures for integration tests: a real SeaweedFS S3 server and fresh repositories.

`s3_server` is one server for the whole session (about 1 s to start) with one bucket;
each test that asks for `s3_url` gets a prefix of its own in it, so tests never see each
other's objects. (A bucket per test would not scale: SeaweedFS gives every bucket volumes
of its own.) Tests that kill or stop the server take `private_s3_server` instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.keys import password_env
from tests.support.repos import repository_url  # noqa: F401 - a fixture, re-exported
from tests.support.restore_runs import Repo
from tests.support.seaweed import SeaweedServer

# Small retry budget: a test about an unreachable server must not wait for minutes.
S3_TEST_TUNING = {
    "CARETAKER_S3_MAX_ATTEMPTS": "2",
    "CARETAKER_S3_CONNECT_TIMEOUT": "1",
    "CARETAKER_S3_READ_TIMEOUT": "20",
}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    with SeaweedServer(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


@pytest.fixture
def private_s3_server(tmp_path: Path) -> Iterator[SeaweedServer]:
    """A server of this test's own, free to be killed and restarted."""
    with SeaweedServer(tmp_path / "seaweed") as server:
        yield server


def fresh_bucket(server: SeaweedServer) -> str:
    name = f"t-{uuid.uuid4().hex[:16]}"
    server.make_bucket(name)
    return name


@pytest.fixture
def s3_env(s3_server: SeaweedServer, tmp_path: Path) -> dict[str, str]:
    """What the S3 backend reads: endpoint, region, credentials, and a small retry budget;
    and the repository's password (in a file), as every new repository is encrypted."""
    return {**s3_server.env(), **S3_TEST_TUNING, **password_env(tmp_path)}


@pytest.fixture(scope="session")
def s3_bucket(s3_server: SeaweedServer) -> str:
    return fresh_bucket(s3_server)


@pytest.fixture
def s3_url(s3_bucket: str) -> str:
    """`s3://<session bucket>/<fresh prefix>/repo` (pair it with `s3_env`)."""
    return f"s3://{s3_bucket}/{uuid.uuid4().hex[:12]}/repo"


@pytest.fixture
def repo(repository_url: tuple[str, dict[str, str]]) -> Repo:  # noqa: F811 - the fixture, not the import
    url, environ = repository_url
    return Repo(url, environ)


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "volume" / "data"
    path.mkdir(parents=True)
    return path
