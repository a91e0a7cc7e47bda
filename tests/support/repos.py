"""One fixture, every backend: `repository_url` yields (url, environ) for a fresh, empty
repository of each kind, so a suite written once runs on local, S3 and git alike. Local and
S3 repositories are encrypted (the default), their password in a file; git ones cannot be.

The "s3" kind needs the `s3_url`/`s3_env` fixtures of tests/integration/conftest.py;
"git" uses tests.support.git_remotes and is skipped while that module does not exist.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tests.support.keys import password_env

REPOSITORY_KINDS = ["local", "s3", "git"]


def _git(tmp_path: Path) -> tuple[str, dict[str, str]]:
    try:
        remotes = importlib.import_module("tests.support.git_remotes")
    except ModuleNotFoundError:
        pytest.skip("tests.support.git_remotes does not exist yet (git backend)")
    url: str = remotes.file_remote(tmp_path)
    environ: dict[str, str] = remotes.git_env(tmp_path / "git-state")
    return url, environ


@pytest.fixture(params=REPOSITORY_KINDS)
def repository_url(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """(url, environ) of a fresh empty repository of the parametrized kind."""
    kind = request.param
    if kind == "local":
        return (tmp_path / "repository").as_uri(), password_env(tmp_path)
    if kind == "s3":
        url: str = request.getfixturevalue("s3_url")
        environ: dict[str, str] = request.getfixturevalue("s3_env")
        return url, {**environ, **password_env(tmp_path)}
    return _git(tmp_path)
