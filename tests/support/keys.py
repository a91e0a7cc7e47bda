"""Encryption settings for tests: plain repositories, or sealed ones with a cheap password.

A password's key derivation costs about 0.35 s with the default Argon2id costs; tests open
repositories hundreds of times, so theirs costs 1 MiB and one pass (the costs are recorded in
each key slot, so the command line opens such a repository just as cheaply).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from restore.backends.registry import OpenOptions
from restore.commands.options import PASSWORD_VARIABLE, encryption_from
from restore.snapshots.encryption import Encryption, KdfParams
from restore.values import boolean

PASSWORD = "correct horse battery staple"
FAST_KDF = KdfParams(memory_kib=1024, iterations=1, lanes=1)
UNENCRYPTED = Encryption(unencrypted=True)
# What a command needs in its environment to create an unencrypted repository.
UNENCRYPTED_ENV = {"CARETAKER_INSECURE_NO_ENCRYPTION": "true"}


def sealed(password: str = PASSWORD) -> Encryption:
    """Settings that open (or create) an encrypted repository with `password`."""
    return Encryption(password=password, kdf=FAST_KDF)


def password_file(folder: Path, password: str = PASSWORD, name: str = "password") -> Path:
    """A file holding `password`, as a mounted Secret would (with a final newline)."""
    path = folder / name
    path.write_text(password + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def password_env(folder: Path, password: str = PASSWORD) -> dict[str, str]:
    """The environment of a command that opens a repository with `password` from a file."""
    return {"CARETAKER_PASSWORD_FILE": str(password_file(folder, password))}


def encryption_of(environ: Mapping[str, str]) -> Encryption:
    """What the command line makes of the password variables in `environ`, with the tests'
    cheap costs for slots it creates."""
    path = environ.get("CARETAKER_PASSWORD_FILE")
    insecure = boolean(environ.get("CARETAKER_INSECURE_NO_ENCRYPTION", "false"))
    found, problems = encryption_from(
        Path(path) if path else None, environ.get(PASSWORD_VARIABLE), insecure=insecure
    )
    assert not problems, problems
    return dataclasses.replace(found, kdf=FAST_KDF)


def open_options(environ: Mapping[str, str], **others: Any) -> OpenOptions:
    """OpenOptions as the command line builds them from `environ`."""
    return OpenOptions(environ=environ, encryption=encryption_of(environ), **others)
