"""The repository config, and the codec a repository needs: in plain, or sealed under its key.

`config` is written once, in plain JSON (nothing could authenticate it before the key is
known):

    unencrypted  {"version": 1, "id": "<32 hex>", "chunk_size": 1048576}
    encrypted    {"version": 2, "id": "<32 hex>", "chunk_size": 1048576,
                  "encryption": "aes-256-gcm", "content_ids": "hmac-sha256"}

Version 2 makes caretaker versions without encryption refuse an encrypted repository instead
of listing it as empty. What the config says is never trusted to lower protection: with a
password, an unencrypted config is refused (a bucket writer may have put it in place of an
encrypted one's); without one, an encrypted config is a PasswordError, never "no snapshot".
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import threading
from collections.abc import Iterator
from datetime import datetime

import structlog

from restore.deadline import Call, in_helper_thread
from restore.errors import (
    AuthenticationError,
    ConfigError,
    IntegrityError,
    NoSnapshotError,
    ObjectNotFoundError,
    PasswordError,
)
from restore.snapshots.codec import MASTER_KEY_BYTES, Codec, PlainCodec, SealedCodec
from restore.snapshots.encryption import CIPHER, Encryption, PasswordOptions
from restore.snapshots.format import CHUNK_SIZE, CONFIG_KEY, KEYS
from restore.snapshots.keys import REPOSITORY_ID_BYTES, KeySlot, open_slot, seal_slot
from restore.snapshots.store import ObjectStore, get_small

PLAIN_FORMAT = 1
SEALED_FORMAT = 2
CONTENT_IDS = "hmac-sha256"
# A password is tried against at most this many slots (each try costs a key derivation).
MAX_SLOTS = 32
# The config and a key slot are a few hundred bytes.
MAX_SMALL_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True)
class RepositoryConfig:
    id: str
    encrypted: bool

    def encode(self) -> bytes:
        document: dict[str, object] = {
            "version": SEALED_FORMAT if self.encrypted else PLAIN_FORMAT,
            "id": self.id,
            "chunk_size": CHUNK_SIZE,
        }
        if self.encrypted:
            document |= {"encryption": CIPHER, "content_ids": CONTENT_IDS}
        return json.dumps(document).encode()

    @classmethod
    def decode(cls, data: bytes, where: str) -> RepositoryConfig:
        """Raise IntegrityError if this is not a config this version understands."""
        try:
            doc = json.loads(data)
            version = doc["version"]
            if version not in (PLAIN_FORMAT, SEALED_FORMAT):
                raise IntegrityError(
                    f"repository at {where} has format {version}; this caretaker reads "
                    f"{PLAIN_FORMAT} and {SEALED_FORMAT}"
                )
            repository_id = str(doc["id"])
        except (KeyError, TypeError, ValueError) as error:
            raise IntegrityError(f"repository config at {where} is malformed") from error
        if version == PLAIN_FORMAT:
            return cls(repository_id, encrypted=False)
        if (doc.get("encryption"), doc.get("content_ids")) != (CIPHER, CONTENT_IDS):
            raise IntegrityError(
                f"repository at {where} uses encryption {doc.get('encryption')!r} with content ids "
                f"{doc.get('content_ids')!r}; this caretaker knows {CIPHER} with {CONTENT_IDS}"
            )
        return cls(repository_id, encrypted=True)


def read_config(store: ObjectStore) -> RepositoryConfig | None:
    """The config, or None if the repository was never created. Raise IntegrityError if bad."""
    try:
        data = get_small(store, CONFIG_KEY, MAX_SMALL_BYTES)
    except ObjectNotFoundError:
        return None
    return RepositoryConfig.decode(data, store.describe())


def codec_for(store: ObjectStore, config: RepositoryConfig, encryption: Encryption) -> Codec:
    """The codec of an existing repository. Raise PasswordError if the password is missing,
    opens no key slot, or was given for an unencrypted repository."""
    where = store.describe()
    if not config.encrypted:
        if encryption.password is not None:
            raise PasswordError(
                f"{where} is not encrypted, but a password was given ({encryption.password_source}): "
                "nothing authenticates its objects, so refusing to use it as if it were encrypted "
                "(whoever can write to the storage could have replaced an encrypted repository's "
                "config); leave the password out to use it unencrypted"
            )
        return PlainCodec()
    if encryption.password is None:
        raise missing_password(where, encryption.options)
    return SealedCodec(encryption.unlocked.master(config.id, lambda: unlock(store, config, encryption)[0]))


def missing_password(where: str, options: PasswordOptions) -> PasswordError:
    return PasswordError(f"{where} is encrypted: give its password with {options.file} or {options.variable}")


def read_slots(store: ObjectStore) -> Iterator[KeySlot]:
    """The repository's readable key slots; malformed ones are logged and left out."""
    for item in store.list(KEYS):
        try:
            yield KeySlot.decode(get_small(store, item.key, MAX_SMALL_BYTES), item.key)
        except ObjectNotFoundError:
            continue  # removed while we listed
        except IntegrityError as error:
            structlog.get_logger().warning("key.slot_unreadable", key=item.key, error=str(error))


def unlock(store: ObjectStore, config: RepositoryConfig, encryption: Encryption) -> tuple[bytes, KeySlot]:
    """(master key, the slot that opened). Raise PasswordError if no slot of this repository
    opens with the password."""
    password = encryption.password
    assert password is not None  # noqa: S101 - callers check
    # Cheapest first: slots caretaker wrote cost the default, and a slot planted with the
    # highest costs allowed (seconds each) must not delay them.
    slots = sorted(itertools.islice(read_slots(store), MAX_SLOTS), key=_cost)
    for slot in slots:
        try:
            repository_id, master = open_slot(slot, password)
        except AuthenticationError:
            continue
        if repository_id.hex() != config.id:
            structlog.get_logger().warning(
                "key.foreign_slot", key=slot.key, repository=repository_id.hex(), expected=config.id
            )
            continue
        return master, slot
    raise PasswordError(
        f"the password ({encryption.password_source}) opens no key slot of {store.describe()} "
        f"({len(slots)} tried): a wrong password, or its key slots were removed, damaged or replaced"
    )


def _cost(slot: KeySlot) -> int:
    return slot.kdf.memory_kib * slot.kdf.iterations


def create_repository(
    store: ObjectStore, encryption: Encryption, *, created: datetime, host: str
) -> Codec | None:
    """Create the repository: encrypted with a password, unencrypted only when asked.

    The key slot is written before the config: a crash in between leaves a slot no config
    names (ignored), never a config no slot opens. Return None if another writer created
    the repository first. Raise ConfigError if there is no password and no opt-out.
    """
    if encryption.password is None and not encryption.unencrypted:
        options = encryption.options
        raise ConfigError.single(
            options.file,
            None,
            f"{store.describe()} does not exist yet, and new repositories are encrypted: give a "
            f"password (a mounted Secret; {options.variable} works too), or create it unencrypted "
            f"with {options.opt_out.replace(')', '=true)')}",
        )
    repository_id = os.urandom(REPOSITORY_ID_BYTES)
    config = RepositoryConfig(repository_id.hex(), encrypted=encryption.password is not None)
    slot: KeySlot | None = None
    codec: Codec = PlainCodec()
    if encryption.password is not None:
        master = os.urandom(MASTER_KEY_BYTES)
        slot = seal_slot(
            master=master,
            repository_id=repository_id,
            password=encryption.password,
            kdf=encryption.kdf,
            created=created,
            host=host,
        )
        store.create(slot.key, slot.encode())
        codec = SealedCodec(master)
    if not store.create(CONFIG_KEY, config.encode()):
        if slot is not None:
            store.delete([slot.key])
        return None
    if slot is None:
        structlog.get_logger().warning(
            "repository.created_unencrypted",
            repository=store.describe(),
            detail="--insecure-no-encryption: whoever can read the storage reads the data, "
            "and whoever can write to it can plant snapshots that restore",
        )
    else:
        encryption.unlocked.put(config.id, master)
        structlog.get_logger().info("repository.created", repository=store.describe(), cipher=CIPHER)
    return codec


class RepositoryCodec:
    """The codec of one repository: read from its config once (it never changes), or made
    by creating the repository. Thread-safe."""

    def __init__(self, store: ObjectStore, encryption: Encryption) -> None:
        self._store = store
        self._encryption = encryption
        self._lock = threading.Lock()
        self._codec: Codec | None = None
        self._opening: Call[Codec | None] | None = None

    def start(self) -> None:
        """Begin opening the repository in a helper thread, if it is not open yet.

        Opening an encrypted repository derives its key from the password: 0.1 to 0.2 s of
        CPU, which then overlaps the round trips the caller makes meanwhile (taking the
        writer claim, listing and fetching snapshot records). `opened` waits for it.
        """
        with self._lock:
            # One that failed was an earlier caller's (its listing failed too, storage down):
            # this caller must not get its stale error.
            if self._codec is None and (self._opening is None or self._opening.failed):
                self._opening = in_helper_thread(self._open, name="open-repository")

    def opening(self) -> bool:
        """Whether the repository is being opened in the helper thread (`start`) now."""
        with self._lock:
            return self._opening is not None and not self._opening.done.is_set()

    def opened(self) -> Codec | None:
        """The codec, or None if the repository does not exist yet.

        Raise PasswordError if its key cannot be used as configured, IntegrityError if its
        config is damaged or of an unknown format.
        """
        with self._lock:
            if self._codec is None:
                opening, self._opening = self._opening, None
                codec = opening.result() if opening is not None else None
                # Not there when the helper looked: it may be now, and the caller may have
                # listed the records of a repository created since.
                self._codec = codec if codec is not None else self._open()
            return self._codec

    def _open(self) -> Codec | None:
        config = read_config(self._store)
        return None if config is None else codec_for(self._store, config, self._encryption)

    def known(self) -> Codec:
        """The codec, once a listing found records (so the repository exists)."""
        codec = self.opened()
        if codec is None:
            raise NoSnapshotError(f"{self._store.describe()} does not exist yet")
        return codec

    def ensure(self, *, created: datetime, host: str) -> Codec:
        """The codec, creating the repository first if it does not exist (by the writer).

        Raise ConfigError if it must be created and there is neither a password nor the
        opt-out of encryption.
        """
        codec = self.opened()
        if codec is None:
            # Looked for first (above): creating costs writes, a key derivation with a password.
            self._codec = create_repository(self._store, self._encryption, created=created, host=host)
            codec = self.opened()  # another writer's repository, if it was quicker
        if codec is None:
            where = self._store.describe()
            raise IntegrityError(f"{where}: the repository config vanished as it was created")
        return codec

    def cipher(self) -> str | None:
        """The cipher sealing the repository's objects (or, before it exists, the one its
        first backup will use), or None for an unencrypted repository."""
        codec = self.opened()
        if codec is not None:
            return codec.cipher
        return CIPHER if self._encryption.password is not None else None
