"""What the restore's per-blob and per-line fast paths must keep: a manifest line's strict
field types and chunk split, a blob's extent at the index's bit-field limits, blob ids
computed from several threads at once."""

from __future__ import annotations

import hmac
import itertools
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from restore.errors import IntegrityError
from restore.snapshots.codec import PlainCodec, SealedCodec
from restore.snapshots.format import BlobEntry
from restore.snapshots.index import BlobIndex
from restore.snapshots.manifest import decode

ONE, TWO = bytes(range(32)), bytes(range(32, 64))


def line(*fields: object) -> bytes:
    row = ["a", "f", 420, 0, 0, 0, 5, 0, ONE.hex(), 0, 0]
    row[1 : 1 + len(fields)] = fields
    return json.dumps(row).encode() + b"\n"


def test_chunk_lists_split_into_ids_in_any_hex_case() -> None:
    assert decode(line("f", 420, 0, 0, 0, 5, 0, ONE.hex().upper(), 2)).chunks == (ONE,)
    assert decode(line("f", 420, 0, 0, 0, 5, 0, (ONE + TWO).hex())).chunks == (ONE, TWO)
    assert decode(line("d", 493, 0, 0, 0, 0, 0, "")).chunks == ()
    assert decode(line("f", 420, 0, 0, 0, 5, 0, ONE.hex(), 2)).unstable is True
    link = decode(line("l", 511, 0, 0, 0, 0, 0, "target", 1))
    assert (link.target, link.chunks, link.unstable) == ("target", (), False)


@pytest.mark.parametrize(
    "fields",
    [("f", True), ("f", 420.0), ("f", 420, 0, 0, 0, 5, False), ("f", 420, 0, 0, 0, 5, 0, ONE.hex()[:-1]),
     ("f", 420, 0, 0, 0, 5, 0, ONE.hex() + "00"), ("f", 420, 0, 0, 0, 5, 0, 1), ("l", 511, 0, 0, 0, 0, 0, None),
     ("f", 420, 0, 0, 0, 5, 0, ONE.hex(), 0, None)],
)  # fmt: skip
def test_mistyped_or_cut_fields_are_malformed(fields: tuple[object, ...]) -> None:
    with pytest.raises(IntegrityError, match="malformed manifest line"):
        decode(line(*fields))


def test_extent_is_what_locate_says_at_the_field_limits() -> None:
    index = BlobIndex(PlainCodec())
    limits = [(0, (1 << 40) - 1), (0, (1 << 24) - 1), (0, (1 << 24) - 1), (0, 1)]
    for number, (offset, length, raw, kind) in enumerate(itertools.product(*limits)):
        entry = BlobEntry(bytes([number]) * 32, kind, offset, length, raw)
        index.add(number.to_bytes(32, "big"), [entry], "i")
    for blob in index.blobs():
        where, extent = index.locate(blob), index.extent(blob)
        assert where is not None
        assert extent is not None
        assert index.packs[extent.pack] == where.pack
        assert (extent.length, extent.raw_length) == (where.length, where.raw_length)
    assert index.extent(bytes(31)) is None


def test_blob_ids_from_several_threads_are_hmac_sha256() -> None:
    master = bytes(range(64, 128))
    codec, data = SealedCodec(master), [bytes([i]) * (i * 997 % 70000) for i in range(64)]
    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(codec.blob_id, data * 8))
    assert found == [hmac.digest(master[32:], d, "sha256") for d in data] * 8
