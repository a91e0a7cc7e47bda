"""docs/format.md's encryption test vectors (15.8), computed two ways: with `cryptography`'s primitives
as the document describes them, and through caretaker's codec and key slots."""

from __future__ import annotations

import hmac
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from restore.snapshots.codec import SealedCodec
from restore.snapshots.encryption import KdfParams
from restore.snapshots.format import KIND_DATA
from restore.snapshots.keys import KeySlot, derive, open_slot

DOC = Path(__file__).parents[3] / "docs" / "format.md"
MASTER = bytes(range(64))
NONCE = bytes(range(12))
PLAIN = b"hello, caretaker\n"
PASSWORD = "correct horse battery staple"
REPOSITORY = bytes(range(0x64, 0x74))


def vector(name: str) -> bytes:
    """A hex value of the document's test vectors, joined across its lines."""
    block = DOC.read_text().split("### 15.8 Test vectors", 1)[1]
    found = re.search(rf"^{name}\s*=\s*(?:[^\n]*\n\s*=\s*)?((?:[0-9a-f]{{8,}}\s*)+)", block, re.MULTILINE)
    assert found, name
    return bytes.fromhex("".join(found.group(1).split()))


def test_the_blob_vector() -> None:
    blob = hmac.digest(MASTER[32:], PLAIN, "sha256")
    assert blob == vector("id")
    frame = zstandard.ZstdCompressor(level=3, write_content_size=True).compress(PLAIN)
    assert frame == vector("frame")
    associated = b"caretaker\0data\0" + blob
    assert NONCE + AESGCM(MASTER[:32]).encrypt(NONCE, frame, associated) == vector("stored")
    codec = SealedCodec(MASTER)
    assert codec.blob_id(PLAIN) == blob
    assert codec.open_blob(vector("stored"), blob, KIND_DATA, "data/00/00") == PLAIN


@pytest.mark.parametrize("size", [0, 1, 55, 56, 63, 64, 65, 4096, 1 << 20])
def test_blob_ids_are_hmac_sha256_of_every_length(size: int) -> None:
    codec = SealedCodec(MASTER)
    data = bytes(i * 7 % 251 for i in range(size))
    assert codec.blob_id(data) == hmac.digest(MASTER[32:], data, "sha256")
    assert codec.blob_id(memoryview(data)) == codec.blob_id(data)


def test_the_key_slot_vector() -> None:
    kdf = KdfParams(memory_kib=1024, iterations=1, lanes=1)
    kek = derive(PASSWORD, bytes(range(16)), kdf)
    assert kek == vector("KEK")
    associated = b"caretaker\0keyslot\0keys/0123456789abcdef"
    assert NONCE + AESGCM(kek).encrypt(NONCE, REPOSITORY + MASTER, associated) == vector("sealed")
    slot = KeySlot(
        id="0123456789abcdef",
        kdf=kdf,
        salt=bytes(range(16)),
        created=datetime(2026, 1, 15, tzinfo=UTC),
        host="web-0",
        sealed=vector("sealed"),
    )
    assert KeySlot.decode(slot.encode(), slot.key) == slot
    assert open_slot(slot, PASSWORD) == (REPOSITORY, MASTER)
