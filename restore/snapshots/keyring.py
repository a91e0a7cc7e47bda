"""The key slots of an encrypted repository, as `caretaker key` manages them.

Slots only ever wrap the one master key: adding, removing or changing a password rewrites no
data, and a removed password stops opening the repository at once. The master key itself
never changes (as with restic): whoever once held it keeps being able to read what it seals.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from restore.clock import Clock, format_time
from restore.errors import ConfigError, RefusedError
from restore.snapshots.encryption import Encryption
from restore.snapshots.keys import KeySlot, seal_slot
from restore.snapshots.repokey import MAX_SLOTS, missing_password, read_config, read_slots, unlock
from restore.snapshots.store import ObjectStore


@dataclasses.dataclass(frozen=True)
class SlotInfo:
    slot: KeySlot
    current: bool  # opened by the password given

    def to_json(self) -> dict[str, Any]:
        kdf = self.slot.kdf
        return {
            "id": self.slot.id,
            "current": self.current,
            "created": format_time(self.slot.created),
            "host": self.slot.host,
            "kdf": {"name": "argon2id", **dataclasses.asdict(kdf)},
        }


class KeyRing:
    """Opened with a password that opens one of the slots ("current")."""

    def __init__(self, store: ObjectStore, encryption: Encryption, *, clock: Clock, host: str) -> None:
        """Raise ConfigError if the repository does not exist or is not encrypted, PasswordError
        if the password opens none of its slots."""
        config = read_config(store)
        if config is None or not config.encrypted:
            state = "is not encrypted" if config else "does not exist yet (its first backup creates it)"
            raise ConfigError.single("repository", store.describe(), f"{state}: it has no key slots")
        if encryption.password is None:
            raise missing_password(store.describe(), encryption.options)
        self._master, self._current = unlock(store, config, encryption)
        self._repository_id = bytes.fromhex(config.id)
        self._store = store
        self._encryption = encryption
        self._clock = clock
        self._host = host
        self.replaced = ""

    def slots(self) -> list[SlotInfo]:
        return [SlotInfo(slot, slot.id == self._current.id) for slot in read_slots(self._store)]

    def add(self, password: str) -> KeySlot:
        """Add a slot that `password` opens. Raise RefusedError if there are MAX_SLOTS already."""
        if len(self.slots()) >= MAX_SLOTS:
            raise RefusedError(
                f"{self._store.describe()} has {MAX_SLOTS} key slots, the most a password is tried on"
            )
        slot = seal_slot(
            master=self._master,
            repository_id=self._repository_id,
            password=password,
            kdf=self._encryption.kdf,
            created=self._clock(),
            host=self._host,
        )
        self._store.create(slot.key, slot.encode())
        return slot

    def remove(self, prefix: str) -> KeySlot:
        """Remove the slot whose id starts with `prefix`. Raise ConfigError if none or several
        match, RefusedError for the slot the given password opened (the way back in)."""
        matches = [info.slot for info in self.slots() if prefix and info.slot.id.startswith(prefix)]
        if len(matches) != 1:
            problem = "matches several key slots" if matches else "matches no key slot (`caretaker key list`)"
            raise ConfigError.single("id", prefix, problem)
        slot = matches[0]
        if slot.id == self._current.id:
            raise RefusedError(
                f"key slot {slot.id} is the one this password opens; remove it with another "
                "password, or change this one with `caretaker key passwd`"
            )
        self._store.delete([slot.key])
        return slot

    def change(self, password: str) -> KeySlot:
        """Replace the current slot by one that `password` opens; the old password stops
        working (`replaced` names the slot removed)."""
        added = self.add(password)
        self._store.delete([self._current.key])
        self.replaced, self._current = self._current.id, added
        return added
