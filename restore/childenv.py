"""The environment of a child process caretaker starts for the user (the restore's
`--check-cmd`, the sidecar's commands and hooks): caretaker's own, without its credentials.

caretaker holds the repository's keys (`AWS_*`, often from an `envFrom` Secret) and its own
settings (`CARETAKER_*`, some of them secrets or paths to secret files). A health check or a
maintenance command has no need for them, so every `AWS_*` and `CARETAKER_*` variable is
left out unless the caller lets it through by name (a command's `inherit_env`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# Variables that belong to caretaker: credentials and its own settings.
OWN_PREFIXES = ("AWS_", "CARETAKER_")


def child_environment(
    environ: Mapping[str, str], *, inherit: Sequence[str] = (), extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """`environ` without caretaker's own variables (except those in `inherit`), plus `extra`."""
    kept = {k: v for k, v in environ.items() if not k.startswith(OWN_PREFIXES) or k in inherit}
    return {**kept, **(extra or {})}
