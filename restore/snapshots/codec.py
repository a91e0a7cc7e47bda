"""How the engine's objects are stored: in plain, or sealed under the repository's master key.

Both codecs name a blob by a hash of its plain bytes and check that name on every read.
In plain (a repository created with `--insecure-no-encryption`, or before encryption
existed) the name is its SHA-256 and objects are stored as they are encoded.

Sealed (every new repository): the 64-byte master key is two keys. Blobs are named by
HMAC-SHA256 under the second, so identical content still deduplicates while the store
cannot test whether it holds a known file. Every blob and every index object and snapshot
record is encrypted and authenticated with AES-256-GCM under the first: a random 96-bit
nonce, then the ciphertext and its 16-byte tag. The associated data binds each ciphertext
to its kind and name (a blob's id; an object's key), so nothing can be moved under another
name or read as another kind. docs/format.md specifies the bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import TYPE_CHECKING, Protocol

from restore.errors import AuthenticationError
from restore.snapshots.encryption import CIPHER
from restore.snapshots.format import KIND_DATA, KIND_MANIFEST, BlobDamageError, decompress_frame

if TYPE_CHECKING:
    import zstandard
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    Decompressor = zstandard.ZstdDecompressor | None

MASTER_KEY_BYTES = 64
NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = NONCE_BYTES + TAG_BYTES
_BLOB_KINDS = {KIND_DATA: "data", KIND_MANIFEST: "manifest"}
# The kinds of whole objects, as they appear in the associated data.
INDEX_OBJECT = "index"
SNAPSHOT_RECORD = "snapshot"
KEY_SLOT = "keyslot"
_HMAC_BLOCK = 64  # SHA-256's block size


def associated_data(kind: str, name: bytes) -> bytes:
    """`caretaker` NUL kind NUL name: what a ciphertext is bound to besides its key."""
    return b"caretaker\0" + kind.encode() + b"\0" + name


def blob_kind(kind: int) -> str:
    """The name of an index entry's kind. Raise AuthenticationError for an unknown one."""
    try:
        return _BLOB_KINDS[kind]
    except KeyError:
        raise AuthenticationError(f"unknown blob kind {kind}") from None


class Codec(Protocol):
    """Names, seals and opens what the engine stores."""

    @property
    def cipher(self) -> str | None:
        """The cipher sealing the objects, or None when they are stored in plain."""

    def blob_id(self, data: bytes | memoryview) -> bytes:
        """A blob's 32-byte name, from its plain bytes."""

    def seal_blob(self, frame: bytes, blob: bytes, kind: int) -> bytes:
        """What a pack holds for a blob, given its compressed frame."""

    def open_blob(
        self, stored: bytes | memoryview, blob: bytes, kind: int, pack: str, decompressor: Decompressor = None
    ) -> bytes:
        """A blob's plain bytes, checked against its name. Raise BlobDamageError if the stored
        bytes do not authenticate, decompress or match the name. A caller opening many blobs
        passes one decompressor for them all (see `decompress_frame`)."""

    def seal(self, data: bytes, kind: str, key: str) -> bytes:
        """What the store holds under `key` for an object of `kind`."""

    def open(self, data: bytes, kind: str, key: str) -> bytes:
        """The encoded object stored under `key`. Raise AuthenticationError if it does not
        authenticate as an object of `kind` named `key`."""


class PlainCodec:
    """Unencrypted repositories: SHA-256 names, objects stored as encoded."""

    cipher = None

    def blob_id(self, data: bytes | memoryview) -> bytes:
        return hashlib.sha256(data).digest()

    def seal_blob(self, frame: bytes, blob: bytes, kind: int) -> bytes:  # noqa: ARG002 - protocol
        return frame

    def open_blob(
        self,
        stored: bytes | memoryview,
        blob: bytes,
        kind: int,  # noqa: ARG002 - the sealed codec's signature: unsealed blobs have no kind to check
        pack: str,
        decompressor: Decompressor = None,
    ) -> bytes:
        return checked(self, decompress_frame(stored, blob, pack, decompressor), blob, pack)

    def seal(self, data: bytes, kind: str, key: str) -> bytes:  # noqa: ARG002 - protocol
        return data

    def open(self, data: bytes, kind: str, key: str) -> bytes:  # noqa: ARG002 - protocol
        return data


class SealedCodec:
    """Encrypted repositories: HMAC-SHA256 names, AES-256-GCM on every object and blob."""

    cipher = CIPHER

    def __init__(self, master: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415 - unencrypted repositories never pay for it

        if len(master) != MASTER_KEY_BYTES:
            raise ValueError("a master key is 64 bytes")
        from cryptography.exceptions import InvalidTag  # noqa: PLC0415 - as above

        self._aead: AESGCM = AESGCM(master[:32])
        self._invalid_tag = InvalidTag
        self._inner, self._outer = _hmac_pads(master[32:])

    def blob_id(self, data: bytes | memoryview) -> bytes:
        # HMAC (RFC 2104) from the key's two padded hash states, copied for each blob: a
        # third of what `hmac.digest` costs, which sets the key up anew for every small blob.
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def seal_blob(self, frame: bytes, blob: bytes, kind: int) -> bytes:
        return self._seal(frame, associated_data(blob_kind(kind), blob))

    def open_blob(
        self, stored: bytes | memoryview, blob: bytes, kind: int, pack: str, decompressor: Decompressor = None
    ) -> bytes:
        try:
            frame = self._open(stored, associated_data(blob_kind(kind), blob))
        except AuthenticationError as error:
            raise BlobDamageError(f"fails authentication ({error})", blob=blob, pack=pack) from error
        return checked(self, decompress_frame(frame, blob, pack, decompressor), blob, pack)

    def seal(self, data: bytes, kind: str, key: str) -> bytes:
        return self._seal(data, associated_data(kind, key.encode()))

    def open(self, data: bytes, kind: str, key: str) -> bytes:
        try:
            return self._open(data, associated_data(kind, key.encode()))
        except AuthenticationError as error:
            raise AuthenticationError(f"{key} fails authentication as a {kind} object ({error})") from error

    def _seal(self, data: bytes, associated: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data, associated)

    def _open(self, stored: bytes | memoryview, associated: bytes) -> bytes:
        if len(stored) < OVERHEAD:
            raise AuthenticationError(f"{len(stored)} bytes, shorter than nonce and tag")
        view = memoryview(stored)
        try:
            return self._aead.decrypt(view[:NONCE_BYTES], view[NONCE_BYTES:], associated)
        except self._invalid_tag:
            raise AuthenticationError("wrong key, damaged, or stored under another name or kind") from None


def _hmac_pads(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """SHA-256 states after hashing the key XOR ipad and XOR opad (RFC 2104; key <= 64 bytes)."""
    block = key.ljust(_HMAC_BLOCK, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
    return inner, outer


def checked(codec: Codec, plain: bytes, blob: bytes, pack: str) -> bytes:
    """`plain` if its name is `blob`. Raise BlobDamageError otherwise."""
    if not hmac.compare_digest(codec.blob_id(plain), blob):
        raise BlobDamageError("content does not match its hash", blob=blob, pack=pack)
    return plain
