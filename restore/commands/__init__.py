"""One module per subcommand; each exports `COMMAND`, registered in `restore.cli`."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import IO, TYPE_CHECKING, Any

from restore.backends.registry import OpenOptions, open_repository
from restore.claims.holder import DEFAULT_TIMING, Claimant, Timing
from restore.clock import Clock, utc_now
from restore.commands.options import PASSWORD_VARIABLE, encryption_from
from restore.deadline import Deadline, Stop
from restore.errors import ConfigError

if TYPE_CHECKING:
    from restore.repository import Repository


@dataclasses.dataclass(frozen=True, kw_only=True)
class Context:
    """What a command may touch besides its arguments: no global state."""

    environ: Mapping[str, str]
    clock: Clock = utc_now
    stdout: IO[str] = dataclasses.field(default_factory=lambda: sys.stdout)
    # Triggered by SIGTERM/SIGINT: every storage wait of the command ends at once.
    stop: Stop = dataclasses.field(default_factory=Stop)
    # A block that a signal must not interrupt (it waits until the block ends).
    shielded: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext
    # Where `dump` writes file contents and tar streams.
    binary: IO[bytes] = dataclasses.field(default_factory=lambda: sys.stdout.buffer)

    def print_json(self, document: Any) -> None:
        self.stdout.write(json.dumps(document, indent=2, sort_keys=False) + "\n")
        self.stdout.flush()

    def claimant(self, timing: Timing = DEFAULT_TIMING) -> Claimant:
        """Who we are to other writers (restore.identity): our pod, and our process."""
        return Claimant.of_process(self.environ, clock=self.clock, timing=timing)


@dataclasses.dataclass(frozen=True)
class Command:
    name: str
    help: str
    description: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Context], int]
    # Whether stdout carries the command's result (e.g. manifests) even without --json.
    stdout_is_data: bool = False
    # Whether --repository (and its backend's settings in the environment) is checked with
    # the other options, before the command runs.
    checks_repository: bool = False
    # Reports options that broke their rules itself (the init container writes an outcome);
    # None: the CLI logs them and exits 2.
    config_failed: Callable[[argparse.Namespace, Context, ConfigError], int] | None = None


def open_from_args(
    args: argparse.Namespace,
    ctx: Context,
    deadline: Deadline | None = None,
    timing: Timing = DEFAULT_TIMING,
    *,
    restoring: bool = False,
) -> Repository:
    """Open the repository named by --repository, with its password, its storage calls
    bounded by `deadline` (default: none, but stopped by a signal); it writes with claims of
    this `timing`, and waits for another writer's claim no longer than the deadline allows;
    `restoring`: to restore from (see OpenOptions). Raise ConfigError if none was given, or
    the password cannot be read or is given with the opt-out."""
    if not args.repository:
        raise ConfigError.single(
            "repository", None, "no repository given: set --repository or CARETAKER_REPOSITORY"
        )
    encryption, problems = encryption_from(
        args.password_file, ctx.environ.get(PASSWORD_VARIABLE), insecure=args.insecure_no_encryption
    )
    if problems:
        raise ConfigError(problems)
    deadline = deadline or Deadline(stop=ctx.stop)
    claimant = dataclasses.replace(ctx.claimant(timing), sleep=deadline.sleep)
    options = OpenOptions(
        environ=ctx.environ,
        clock=ctx.clock,
        claimant=claimant,
        deadline=deadline,
        encryption=encryption,
        restoring=restoring,
    )
    return open_repository(args.repository, options)
