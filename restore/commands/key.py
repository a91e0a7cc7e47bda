"""`caretaker key list|add|remove|passwd`: the password slots of an encrypted repository.

Like `restic key`: every slot opens the same master key, so adding, removing or changing a
password rewrites no data. The password given (--password-file or CARETAKER_PASSWORD) must
open one of the slots; its own slot cannot be removed (change it with `passwd` instead).
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from restore.clock import format_time
from restore.commands import Command, Context, open_from_args
from restore.commands.options import add_repository_options, flag_key, read_password
from restore.errors import ConfigError, Problem
from restore.identity import host_name
from restore.printable import printable

if TYPE_CHECKING:
    from restore.repository import Repository
    from restore.snapshots.keyring import KeyRing

ACTIONS = ("list", "add", "remove", "passwd")


def configure(parser: argparse.ArgumentParser) -> None:
    add_repository_options(parser, path_help="unused; accepted so one environment fits all commands")
    parser.add_argument("action", choices=ACTIONS, help="what to do with the key slots")
    parser.add_argument("id", nargs="?", help="remove: the slot's id (or a unique prefix), from `key list`")
    parser.add_argument(
        "--new-password-file",
        type=Path,
        metavar="FILE",
        help="add: the password of the new slot; passwd: the new password",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _new_password(args: argparse.Namespace) -> str:
    """The new password (add, passwd; "" for the others). Raise ConfigError naming what is
    missing or extra."""
    problems: list[Problem] = []
    key, given = flag_key("--new-password-file"), args.new_password_file
    needs_new = args.action in {"add", "passwd"}
    if needs_new != (given is not None):
        wanted = "needs the new password in a file" if needs_new else "takes no new password"
        problems.append(Problem(key, given and str(given), f"`key {args.action}` {wanted}"))
    if (args.action == "remove") != (args.id is not None):
        wanted = "needs the id of the slot to remove" if args.action == "remove" else "takes no id"
        problems.append(Problem("id", args.id, f"`key {args.action}` {wanted}"))
    new = read_password(given, key, problems) if needs_new and given is not None else ""
    if problems or new is None:
        raise ConfigError(problems)
    return new


def key_ring(repo: Repository, ctx: Context) -> KeyRing:
    """Raise ConfigError for a repository without key slots (git)."""
    from restore.snapshots.engine import Engine  # noqa: PLC0415 - the engine only for this command

    if not isinstance(repo, Engine):
        raise ConfigError.single(
            "repository", repo.describe(), "git repositories are not encrypted (docs/git.md): no key slots"
        )
    return repo.key_ring(host=host_name(ctx.environ))


def run(args: argparse.Namespace, ctx: Context) -> int:
    new = _new_password(args)
    log = structlog.get_logger()
    with contextlib.closing(open_from_args(args, ctx)) as repo:
        ring = key_ring(repo, ctx)
        if args.action == "list":
            return _list(ring, args, ctx)
        if args.action == "remove":
            done = {"removed": ring.remove(args.id).id}
        elif args.action == "add":
            done = {"added": ring.add(new).id}
        else:
            done = {"added": ring.change(new).id, "removed": ring.replaced}
    log.info(f"key.{args.action}", **done)
    if args.json:
        ctx.print_json(done)
    return 0


def _list(ring: KeyRing, args: argparse.Namespace, ctx: Context) -> int:
    slots = ring.slots()
    if args.json:
        ctx.print_json([info.to_json() for info in slots])
        return 0
    ctx.stdout.write(f"  {'ID':<18} {'CREATED':<22} {'HOST':<24} KDF\n")
    for info in slots:
        kdf = info.slot.kdf
        mark = "*" if info.current else " "
        created = format_time(info.slot.created)[:19] + "Z"
        ctx.stdout.write(
            f"{mark} {info.slot.id:<18} {created:<22} {printable(info.slot.host):<24} "
            f"argon2id {kdf.memory_kib // 1024} MiB, {kdf.iterations} passes, {kdf.lanes} lanes\n"
        )
    return 0


COMMAND = Command(
    name="key",
    help="list, add, remove or change the passwords of an encrypted repository",
    description=(
        "Manage the key slots of an encrypted repository (file:// or s3://). Each slot holds\n"
        "the repository's one master key, sealed with a key derived from a password (Argon2id);\n"
        "the password given (--password-file, CARETAKER_PASSWORD_FILE or CARETAKER_PASSWORD)\n"
        "must open one of them (marked * in `key list`).\n\n"
        "  key list                                   the slots\n"
        "  key add --new-password-file FILE           another password for the repository\n"
        "  key remove ID                              a slot (not the one the password opens)\n"
        "  key passwd --new-password-file FILE        change the password: add a slot, remove the old\n\n"
        "Losing every password loses the backups: nobody can decrypt them. Exit codes: 0 done;\n"
        "2 usage (an unknown id, a missing file); 9 refused (removing the password's own slot);\n"
        "13 the repository is encrypted and the password is missing or opens no slot."
    ),
    configure=configure,
    run=run,
)
