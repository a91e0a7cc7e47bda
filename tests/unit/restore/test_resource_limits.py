"""Out of file descriptors is a local resource problem (exit 10), never "access denied":
real EMFILE errors, made by lowering this process's open-file limit and using it up."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from restore.backends.local import LocalStore
from restore.claims.holder import hold
from restore.errors import EXIT_LOCAL_IO, ResourceLimitError, exhausted_resource, exit_code_of
from restore.snapshots.lease import StoreSlot
from tests.support.claims import claimant


@contextlib.contextmanager
def no_file_descriptors_left() -> Iterator[None]:
    """Every descriptor number under a lowered soft limit in use, until the block ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    held: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 16, hard))
    try:
        with pytest.raises(OSError, match="Too many open files"):  # noqa: PT012 - until it fails
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_local_store_without_descriptors_reports_the_limit(tmp_path):
    store = LocalStore(tmp_path / "repo")
    store.put("a", b"x")
    with no_file_descriptors_left(), pytest.raises(ResourceLimitError) as caught:
        store.put("b", b"y")
    assert "Too many open files" in str(caught.value)
    assert "ulimit -n" in str(caught.value)
    assert exit_code_of(caught.value) == EXIT_LOCAL_IO
    assert store.get("a") == b"x"


def test_the_writer_claim_without_descriptors_is_not_access_denied(tmp_path, clock):
    slot = StoreSlot(LocalStore(tmp_path / "repo"))
    with (
        no_file_descriptors_left(),
        pytest.raises(ResourceLimitError),
        hold(lambda: slot, claimant("pod"), role="backup"),
    ):
        pass


def test_a_wrapped_exhaustion_is_found_in_the_chain_of_causes():
    with no_file_descriptors_left(), pytest.raises(urllib.error.URLError) as caught:
        urllib.request.urlopen("http://127.0.0.1:9/", timeout=1)
    found = exhausted_resource(caught.value)
    assert found is not None
    assert found.errno == errno.EMFILE
    assert exhausted_resource(ValueError("x")) is None
