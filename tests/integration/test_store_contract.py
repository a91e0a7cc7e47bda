"""The ObjectStore contract (restore/backends/__init__.py), one suite for every store.

"s3" runs against a real SeaweedFS with real credentials; "s3-emulated" is the same
server with conditional writes switched off (CARETAKER_S3_CONDITIONAL_WRITES=false), i.e.
the write-then-read-back fallback used on stores without If-None-Match/If-Match.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from restore.backends.local import LocalStore
from restore.backends.s3.store import S3Store
from restore.errors import ObjectNotFoundError
from restore.snapshots.store import ObjectStore

pytestmark = pytest.mark.integration

STORES = ["local", "s3", "s3-emulated"]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    opened: ObjectStore
    if request.param == "local":
        opened = LocalStore(tmp_path / "store")
    else:
        environ = dict(request.getfixturevalue("s3_env"))
        if request.param == "s3-emulated":
            environ["CARETAKER_S3_CONDITIONAL_WRITES"] = "false"
        opened = S3Store.from_url(urlsplit(request.getfixturevalue("s3_url")), environ)
    yield opened
    opened.close()


def keys_of(store: ObjectStore, prefix: str) -> list[str]:
    return [item.key for item in store.list(prefix)]


class TestReadWrite:
    def test_put_then_get_returns_the_same_bytes(self, store: ObjectStore) -> None:
        data = bytes(range(256)) * 1000
        store.put("data/ab/pack", data)
        assert store.get("data/ab/pack") == data

    def test_empty_object(self, store: ObjectStore) -> None:
        store.put("empty", b"")
        assert store.get("empty") == b""
        stat = store.stat("empty")
        assert stat is not None
        assert stat.size == 0

    def test_put_overwrites(self, store: ObjectStore) -> None:
        store.put("k", b"first")
        store.put("k", b"second")
        assert store.get("k") == b"second"

    def test_get_missing_raises_object_not_found_naming_the_key(self, store: ObjectStore) -> None:
        with pytest.raises(ObjectNotFoundError) as caught:
            store.get("data/zz/missing")
        assert caught.value.key == "data/zz/missing"

    def test_get_range(self, store: ObjectStore) -> None:
        store.put("r", b"0123456789")
        assert store.get_range("r", 2, 3) == b"234"
        assert store.get_range("r", 0, 10) == b"0123456789"

    def test_get_range_past_the_end_is_short(self, store: ObjectStore) -> None:
        store.put("r", b"0123456789")
        assert store.get_range("r", 8, 100) == b"89"
        assert store.get_range("r", 10, 5) == b""

    def test_get_range_of_missing_object_raises(self, store: ObjectStore) -> None:
        with pytest.raises(ObjectNotFoundError):
            store.get_range("nope", 0, 10)


class TestConditionalWrites:
    def test_create_writes_a_new_object(self, store: ObjectStore) -> None:
        assert store.create("lease", b"mine") is True
        assert store.get("lease") == b"mine"

    def test_create_refuses_an_existing_object_and_keeps_it(self, store: ObjectStore) -> None:
        store.put("lease", b"theirs")
        assert store.create("lease", b"mine") is False
        assert store.get("lease") == b"theirs"

    def test_replace_with_the_current_version(self, store: ObjectStore) -> None:
        store.put("lease", b"v1")
        before = store.stat("lease")
        assert before is not None
        assert store.replace("lease", b"v2-longer", version=before.version) is True
        assert store.get("lease") == b"v2-longer"
        after = store.stat("lease")
        assert after is not None
        assert after.version != before.version

    def test_replace_with_a_stale_version_fails_and_keeps_the_object(self, store: ObjectStore) -> None:
        store.put("lease", b"v1")
        stale = store.stat("lease")
        assert stale is not None
        store.put("lease", b"v2 by someone else")
        assert store.replace("lease", b"v3", version=stale.version) is False
        assert store.get("lease") == b"v2 by someone else"

    def test_replace_of_a_vanished_object_fails(self, store: ObjectStore) -> None:
        store.put("lease", b"v1")
        gone = store.stat("lease")
        assert gone is not None
        store.delete(["lease"])
        assert store.replace("lease", b"v2", version=gone.version) is False
        assert store.stat("lease") is None

    def test_racing_creates_have_exactly_one_winner(
        self, store: ObjectStore, request: pytest.FixtureRequest
    ) -> None:
        if "emulated" in request.node.callspec.id:
            pytest.skip("the write-then-read-back emulation has a documented race (docs/s3.md)")
        barrier = threading.Barrier(8)

        def contend(number: int) -> bool:
            barrier.wait()
            return store.create("lease", f"writer {number}".encode())

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(contend, range(8)))
        assert results.count(True) == 1
        assert store.get("lease") == f"writer {results.index(True)}".encode()


class TestStatListDelete:
    def test_stat(self, store: ObjectStore) -> None:
        assert store.stat("nothing") is None
        store.put("snapshots/one", b"12345")
        stat = store.stat("snapshots/one")
        assert stat is not None
        assert (stat.key, stat.size) == ("snapshots/one", 5)
        assert stat.version
        assert stat.modified.tzinfo is not None

    def test_list_is_by_prefix_in_key_order(self, store: ObjectStore) -> None:
        for key in ["snapshots/b", "snapshots/a", "data/01/x", "data/00/y", "datax", "index/i"]:
            store.put(key, key.encode())
        assert keys_of(store, "snapshots/") == ["snapshots/a", "snapshots/b"]
        assert keys_of(store, "data/") == ["data/00/y", "data/01/x"]
        assert keys_of(store, "data/01/") == ["data/01/x"]
        assert keys_of(store, "nothing/") == []
        listed = {item.key: item.size for item in store.list("")}
        assert listed == {
            k: len(k) for k in ["snapshots/a", "snapshots/b", "data/01/x", "data/00/y", "datax", "index/i"]
        }

    def test_list_of_an_empty_store(self, store: ObjectStore) -> None:
        assert list(store.list("")) == []

    def test_delete_ignores_missing_keys(self, store: ObjectStore) -> None:
        store.put("a", b"1")
        store.put("b", b"2")
        store.delete(["a", "never-there"])
        assert keys_of(store, "") == ["b"]
        store.delete([])

    def test_many_objects_list_and_delete_in_batches(self, store: ObjectStore) -> None:
        # More than one ListObjectsV2 page and one DeleteObjects batch (1000 keys each).
        keys = [f"data/{n:05d}" for n in range(1234)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda key: store.put(key, b"x"), keys))
        assert keys_of(store, "data/") == keys
        store.delete(keys[:1100])
        assert keys_of(store, "data/") == keys[1100:]


class TestThreads:
    def test_concurrent_puts_and_gets_from_many_threads(self, store: ObjectStore) -> None:
        blobs = {f"data/{n:02x}/obj": os.urandom(1000 + n) for n in range(64)}

        def round_trip(item: tuple[str, bytes]) -> bool:
            key, data = item
            store.put(key, data)
            return store.get(key) == data and store.get_range(key, 10, 5) == data[10:15]

        with ThreadPoolExecutor(12) as pool:
            assert all(pool.map(round_trip, blobs.items()))
        assert len(keys_of(store, "data/")) == 64


def test_describe_names_the_store_without_secrets(store: ObjectStore) -> None:
    described = store.describe()
    assert described.startswith(("file://", "s3://"))
    assert "secret" not in described
