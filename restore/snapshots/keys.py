"""Key slots: the repository's master key, sealed by keys derived from passwords.

A slot is the object `keys/<16 hex>`, a JSON document in plain: the Argon2id costs and salt
it was sealed with, when and where it was added, and `sealed`, hex of a nonce, then
AES-256-GCM of the repository id (16 bytes) and the master key (64 bytes) under the key
Argon2id derives from the password, bound to the slot's name. The repository id ties the
slot to the repository whose config names it: a slot copied in from another repository that
shares the password is refused. docs/format.md specifies the bytes.

Every field outside `sealed` is read from storage anyone with the bucket's keys may write:
costs beyond `MAX_*` are refused before any derivation starts, so a planted slot cannot make
an init container allocate more than its memory limit, or derive for minutes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import datetime

from restore.clock import format_time, parse_time
from restore.errors import AuthenticationError, IntegrityError
from restore.snapshots.codec import KEY_SLOT, MASTER_KEY_BYTES, NONCE_BYTES, TAG_BYTES, associated_data
from restore.snapshots.encryption import KdfParams
from restore.snapshots.format import KEYS

SLOT_VERSION = 1
REPOSITORY_ID_BYTES = 16
SALT_BYTES = 16
SEALED_BYTES = NONCE_BYTES + REPOSITORY_ID_BYTES + MASTER_KEY_BYTES + TAG_BYTES
# Four times the default memory, and what fits the chart's 512 MiB limit with room to spare:
# a planted slot must not get the init container OOM-killed (nor take minutes to try).
MAX_MEMORY_KIB = 256 * 1024
MAX_ITERATIONS = 8
MAX_LANES = 16


def slot_key(slot_id: str) -> str:
    return f"{KEYS}{slot_id}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class KeySlot:
    id: str
    kdf: KdfParams
    salt: bytes
    created: datetime
    host: str
    sealed: bytes

    @property
    def key(self) -> str:
        return slot_key(self.id)

    def encode(self) -> bytes:
        document = {
            "version": SLOT_VERSION,
            "kdf": "argon2id",
            "memory_kib": self.kdf.memory_kib,
            "iterations": self.kdf.iterations,
            "lanes": self.kdf.lanes,
            "salt": self.salt.hex(),
            "created": format_time(self.created),
            "host": self.host,
            "sealed": self.sealed.hex(),
        }
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes, key: str) -> KeySlot:
        """Raise IntegrityError if the slot is malformed or asks for implausible costs."""
        try:
            doc = json.loads(data)
            if doc["version"] != SLOT_VERSION or doc["kdf"] != "argon2id":
                raise IntegrityError(f"key slot {key} has unknown format {doc['version']}/{doc['kdf']}")
            kdf = KdfParams(int(doc["memory_kib"]), int(doc["iterations"]), int(doc["lanes"]))
            slot = cls(
                id=key.rpartition("/")[2],
                kdf=kdf,
                salt=bytes.fromhex(doc["salt"]),
                created=parse_time(doc["created"]),
                host=str(doc["host"]),
                sealed=bytes.fromhex(doc["sealed"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise IntegrityError(f"key slot {key} is malformed: {error}") from error
        if not (
            1 <= kdf.lanes <= MAX_LANES
            and 8 * kdf.lanes <= kdf.memory_kib <= MAX_MEMORY_KIB
            and 1 <= kdf.iterations <= MAX_ITERATIONS
            and len(slot.salt) == SALT_BYTES
            and len(slot.sealed) == SEALED_BYTES
        ):
            raise IntegrityError(f"key slot {key} has implausible costs {kdf} or sizes")
        return slot


def derive(password: str, salt: bytes, kdf: KdfParams) -> bytes:
    """The 32-byte key Argon2id derives from a password (the only slow step of opening)."""
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id  # noqa: PLC0415 - only with a password

    return Argon2id(
        salt=salt, length=32, iterations=kdf.iterations, lanes=kdf.lanes, memory_cost=kdf.memory_kib
    ).derive(password.encode())


def seal_slot(
    *, master: bytes, repository_id: bytes, password: str, kdf: KdfParams, created: datetime, host: str
) -> KeySlot:
    """A new slot (with a random id and salt) holding `master` for `repository_id`."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    slot_id, salt, nonce = os.urandom(8).hex(), os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    plain = repository_id + master
    ad = associated_data(KEY_SLOT, slot_key(slot_id).encode())
    sealed = nonce + AESGCM(derive(password, salt, kdf)).encrypt(nonce, plain, ad)
    return KeySlot(id=slot_id, kdf=kdf, salt=salt, created=created, host=host, sealed=sealed)


def open_slot(slot: KeySlot, password: str) -> tuple[bytes, bytes]:
    """(repository id, master key) from a slot. Raise AuthenticationError if the password
    does not open it (or the slot was damaged, or moved under another name)."""
    from cryptography.exceptions import InvalidTag  # noqa: PLC0415
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    aead = AESGCM(derive(password, slot.salt, slot.kdf))
    nonce, body = slot.sealed[:NONCE_BYTES], slot.sealed[NONCE_BYTES:]
    try:
        plain = aead.decrypt(nonce, body, associated_data(KEY_SLOT, slot.key.encode()))
    except InvalidTag:
        raise AuthenticationError(f"key slot {slot.key} does not open with this password") from None
    return plain[:REPOSITORY_ID_BYTES], plain[REPOSITORY_ID_BYTES:]
