"""How a process reaches one repository's key: its password, or the explicit choice of none.

Each repository a process opens gets its own `Encryption` (a `copy` between two repositories
holds two, each with its own password). It also remembers the master key once the password
has opened it: the sidecar opens the repository for every job, and the password's key
derivation (0.1 to 0.2 s and 64 MiB) need not be paid each time.

Light on purpose: the command line builds one at start-up, before it knows whether the
repository will be opened at all, so nothing here imports `cryptography`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

CIPHER = "aes-256-gcm"


@dataclasses.dataclass(frozen=True)
class KdfParams:
    """Argon2id costs of deriving a key slot's key from a password.

    The default is RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes): about
    0.13 s of wall time and 0.2 CPU-seconds on two cores here (the lanes run in parallel).
    Recorded in every key slot, so opening one uses its own costs.
    """

    memory_kib: int = 64 * 1024
    iterations: int = 3
    lanes: int = 4


# A few key derivations' time: waiting longer for another thread's is waiting for its storage.
UNLOCK_WAIT_SECONDS = 2.0


class UnlockedKeys:
    """Master keys a password has opened, by repository id (thread-safe).

    A repository's key is derived once even when several threads open it together (the
    sidecar's jobs and readiness at start): the others wait for that one derivation rather
    than each paying its CPU and 64 MiB.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, bytes] = {}
        # Only while some thread opens the id: ids come from storage, and a bucket writer
        # changing the config's at every job must not grow this for the sidecar's lifetime.
        self._unlocking: dict[str, _Gate] = {}

    def get(self, repository_id: str) -> bytes | None:
        with self._lock:
            return self._keys.get(repository_id)

    def put(self, repository_id: str, master: bytes) -> None:
        with self._lock:
            self._keys[repository_id] = master

    def master(self, repository_id: str, unlock: Callable[[], bytes]) -> bytes:
        """The repository's master key: remembered, or from `unlock`, which runs in one
        thread at a time per repository. An error of `unlock` reaches its caller only; a
        thread that waited then tries itself, as does one that waited UNLOCK_WAIT_SECONDS
        (the thread unlocking may be stuck on storage, under a deadline of its own)."""
        with self._lock:
            known = self._keys.get(repository_id)
            if known is not None:
                # Before the gate: a thread stuck on storage may hold it long after another
                # (done waiting) opened the repository, and would delay every opening.
                return known
            gate = self._unlocking.setdefault(repository_id, _Gate())
            gate.users += 1
        held = False
        try:
            held = gate.lock.acquire(timeout=UNLOCK_WAIT_SECONDS)
            master = self.get(repository_id)
            if master is None:
                master = unlock()
                self.put(repository_id, master)
            return master
        finally:
            if held:
                gate.lock.release()
            with self._lock:
                gate.users -= 1
                if not gate.users:
                    del self._unlocking[repository_id]


@dataclasses.dataclass(eq=False)
class _Gate:
    """One repository's unlocking, and how many threads are in `UnlockedKeys.master` for it."""

    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    users: int = 0


@dataclasses.dataclass(frozen=True)
class PasswordOptions:
    """How the options giving one repository's password are named, for messages: without a
    prefix for --repository, `to-` for copy's destination (--to-password-file)."""

    prefix: str = ""

    @property
    def file(self) -> str:
        return f"--{self.prefix}password-file ({self._variable('PASSWORD_FILE')})"

    @property
    def variable(self) -> str:
        return self._variable("PASSWORD")

    @property
    def opt_out(self) -> str:
        return f"--{self.prefix}insecure-no-encryption ({self._variable('INSECURE_NO_ENCRYPTION')})"

    def _variable(self, name: str) -> str:
        return "CARETAKER_" + self.prefix.replace("-", "_").upper() + name


REPOSITORY = PasswordOptions()
DESTINATION = PasswordOptions("to-")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Encryption:
    """What a repository is opened (or created) with.

    `password` opens an encrypted repository, and creates a new one encrypted. Without it, only
    an unencrypted repository opens, and a new one is created only with `unencrypted` (the
    `--insecure-no-encryption` opt-out). `password_source` names where the password came
    from (a flag and its variable), for messages; the password itself is never printed.
    """

    password: str | None = dataclasses.field(default=None, repr=False)
    password_source: str = "--password-file (CARETAKER_PASSWORD_FILE)"  # noqa: S105 - a name, not a secret
    unencrypted: bool = False
    options: PasswordOptions = PasswordOptions()
    kdf: KdfParams = KdfParams()
    unlocked: UnlockedKeys = dataclasses.field(default_factory=UnlockedKeys, repr=False, compare=False)
