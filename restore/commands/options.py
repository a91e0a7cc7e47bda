"""Options the commands share, the `CARETAKER_*` environment twin of every flag (git-sync's
habit), and the one pass that checks them all.

`--keep-last` reads `CARETAKER_KEEP_LAST` when the flag is absent; a flag on the command
line wins. `--help` names each option's default and its twin. Every option's `type` is a
rule from `restore.values` (or a command's own); a value that breaks it, whether it came
as a flag or as the twin, does not stop argparse at the first one: it becomes an `Invalid`
mark, and `check_arguments` reports them all at once, each naming the flag or variable.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from restore.backends.registry import repository_problems
from restore.claims.holder import DEFAULT_EXPIRY_SECONDS, DEFAULT_HEARTBEAT_SECONDS, Timing
from restore.claims.record import MAX_EXPIRY_SECONDS
from restore.errors import ConfigError, Problem
from restore.snapshots.encryption import DESTINATION, REPOSITORY, Encryption, PasswordOptions
from restore.values import boolean, duration

ENV_PREFIX = "CARETAKER_"
DEFAULT_PATH = Path("/data")
_NOT_SHOWN: tuple[object, ...] = (None, False, [], (), "", argparse.SUPPRESS)
# The weaker way to give the password, without a flag: a value on a command line is
# readable by every process of the machine (/proc/*/cmdline).
PASSWORD_VARIABLE = "CARETAKER_PASSWORD"  # noqa: S105 - the variable's name


@dataclasses.dataclass(frozen=True)
class Invalid:
    """A value that broke its option's rule: kept until every option has been read."""

    key: str
    value: str
    message: str


def env_name(option: str) -> str:
    """Return the environment twin of a long option: `--keep-last` -> `CARETAKER_KEEP_LAST`."""
    return ENV_PREFIX + option.lstrip("-").replace("-", "_").upper()


def _deferred(rule: Callable[[Any], Any], key: str) -> Callable[[str], Any]:
    def convert(raw: str) -> Any:
        try:
            return rule(raw)
        except (ValueError, TypeError) as error:
            return Invalid(key, raw, str(error))

    convert.rule = rule  # type: ignore[attr-defined]
    return convert


def _rule_of(action: argparse.Action) -> Callable[[Any], Any]:
    convert = action.type if callable(action.type) else str
    return getattr(convert, "rule", convert)


def _from_environment(action: argparse.Action, name: str, raw: str) -> Any:
    """The twin's value, converted like the flag's would be (an Invalid mark if it breaks the rule)."""
    if isinstance(action, argparse._StoreFalseAction):  # noqa: SLF001
        flag = _deferred(boolean, name)(raw)
        return flag if isinstance(flag, Invalid) else not flag
    if isinstance(action, argparse._StoreTrueAction):  # noqa: SLF001
        return _deferred(boolean, name)(raw)
    convert = _deferred(_rule_of(action), name)
    if isinstance(action, argparse._AppendAction):  # noqa: SLF001
        return [convert(item.strip()) for item in raw.split(",") if item.strip()]
    return convert(raw)


def _describe(action: argparse.Action, name: str) -> str:
    default = action.default
    # argparse %-formats help texts: a default such as `10%` must not read as a placeholder.
    shown = "" if default in _NOT_SHOWN else f"default: {str(default).replace('%', '%%')}; "
    return f"{action.help or ''} [{shown}env: {name}]".strip()


def subcommand_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    """The parser of subcommand `name`, or None if there is no such subcommand."""
    for action in parser._actions:  # noqa: SLF001 - argparse has no public walk of its tree
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            found = action.choices.get(name)
            return found if isinstance(found, argparse.ArgumentParser) else None
    return None


def apply_environment(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Make every long option of `parser` default to its env twin, defer its rule's verdict
    to `check_arguments`, and name its default and twin in --help.

    Applied to the one subcommand that runs: a variable meant for another command (the
    sidecar's CARETAKER_KEEP_LAST in an environment shared with the init container) is
    none of this command's business.
    """
    for action in parser._actions:  # noqa: SLF001
        long = next((o for o in action.option_strings if o.startswith("--")), None)
        if long is None or long in {"--help", "--version"}:
            continue
        name = env_name(long)
        if action.help != argparse.SUPPRESS and name not in (action.help or ""):
            action.help = _describe(action, name)
        if callable(action.type) and not hasattr(action.type, "rule"):
            action.type = _deferred(action.type, long)
        if name in environ:
            action.default = _from_environment(action, name, environ[name])
            action.required = False


def check_arguments(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> None:
    """Raise ConfigError naming every option whose value broke its rule, and, given the
    `environ`, every problem of --repository and its backend's settings in it."""
    problems: list[Problem] = []
    for value in vars(args).values():
        items = value if isinstance(value, list) else [value]
        problems.extend(Problem(i.key, i.value, i.message) for i in items if isinstance(i, Invalid))
    repository = getattr(args, "repository", None)
    if environ is not None and isinstance(repository, str):
        key = f"--repository ({env_name('--repository')})"
        problems += [
            dataclasses.replace(p, key=key) if p.key == "repository" else p
            for p in repository_problems(repository, environ)
        ]
    if problems:
        raise ConfigError(problems)


def add_repository_options(parser: argparse.ArgumentParser, *, path_help: str) -> None:
    """The options (nearly) every command shares: where the repository is, which folder,
    and its password."""
    parser.add_argument(
        "--repository",
        metavar="URL",
        help="repository URL: file:///dir, s3://bucket/prefix, git+ssh://host/repo.git, ...",
    )
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH, help=path_help)
    parser.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help=f"the repository's password (a mounted Secret; or the weaker {PASSWORD_VARIABLE})",
    )
    parser.add_argument(
        "--insecure-no-encryption",
        action="store_true",
        help="create a new repository unencrypted: whoever can write to the storage can plant snapshots",
    )


def flag_key(option: str) -> str:
    """How problems name a flag: `--password-file (CARETAKER_PASSWORD_FILE)`."""
    return f"{option} ({env_name(option)})"


def encryption_from(
    password_file: Path | None,
    variable: str | None,
    *,
    insecure: bool,
    options: PasswordOptions = REPOSITORY,
) -> tuple[Encryption, list[Problem]]:
    """The password (from the file, else the value of CARETAKER_PASSWORD) or the opt-out,
    and what is wrong with them, named as `options` names them. Leading and trailing
    whitespace (a final newline) is not part of a password."""
    direct = (variable or "").strip() or None
    file_key, opt_out_key = options.file, options.opt_out
    problems: list[Problem] = []
    if password_file is not None and direct is not None:
        problems.append(Problem(options.variable, "***", f"set it or {file_key}, not both"))
    password, source = direct, options.variable
    if password_file is not None:
        password, source = read_password(password_file, file_key, problems), file_key
    if insecure and password is not None:
        problems.append(Problem(opt_out_key, True, f"a password was given too ({source}): choose one"))
    encryption = Encryption(password=password, password_source=source, unencrypted=insecure, options=options)
    return encryption, problems


def destination_encryption(environ: Mapping[str, str]) -> tuple[Encryption, list[Problem]]:
    """The password or the opt-out of copy's destination, from its variables
    (CARETAKER_TO_PASSWORD_FILE, CARETAKER_TO_PASSWORD, CARETAKER_TO_INSECURE_NO_ENCRYPTION),
    and what is wrong with them."""
    file_text = environ.get(env_name("--to-password-file"))
    insecure_text = environ.get(env_name("--to-insecure-no-encryption"))
    problems: list[Problem] = []
    try:
        insecure = boolean(insecure_text) if insecure_text else False
    except ValueError as error:
        problems.append(Problem(DESTINATION.opt_out, insecure_text, str(error)))
        insecure = False
    encryption, refused = encryption_from(
        Path(file_text) if file_text else None,
        environ.get(DESTINATION.variable),
        insecure=insecure,
        options=DESTINATION,
    )
    return encryption, problems + refused


def read_password(path: Path, key: str, problems: list[Problem]) -> str | None:
    """The password in a file, or None with a problem naming `key` if there is none."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        problems.append(Problem(key, str(path), f"cannot read: {reason or error}"))
        return None
    if not text:
        problems.append(Problem(key, str(path), "file is empty"))
        return None
    return text


def add_claim_options(parser: argparse.ArgumentParser) -> None:
    """How a writer keeps its claim on the repository (docs/claims.md)."""
    parser.add_argument(
        "--claim-heartbeat",
        type=duration,
        default=f"{DEFAULT_HEARTBEAT_SECONDS:.0f}s",
        metavar="DURATION",
        help="renew the writer claim this often",
    )
    parser.add_argument(
        "--claim-expiry",
        type=duration,
        default=f"{DEFAULT_EXPIRY_SECONDS:.0f}s",
        metavar="DURATION",
        help="others may take the claim over after this long without a renewal (2+ heartbeats, at most 1h)",
    )


def claim_timing(heartbeat: timedelta, expiry: timedelta, *, key: str = "--claim-expiry") -> Timing:
    """Raise ConfigError unless the expiry spans at least two heartbeats, and at most an hour."""
    if expiry.total_seconds() > MAX_EXPIRY_SECONDS:
        raise ConfigError.single(
            key,
            f"{expiry.total_seconds():g}s",
            f"must be at most {MAX_EXPIRY_SECONDS:g}s: other writers read a longer one as a forged claim",
        )
    if expiry < 2 * heartbeat:
        raise ConfigError.single(
            key,
            f"{expiry.total_seconds():g}s",
            f"must be at least two heartbeats ({2 * heartbeat.total_seconds():g}s): one late "
            "renewal must not let another writer take the claim over",
        )
    return Timing(heartbeat_seconds=heartbeat.total_seconds(), expiry_seconds=expiry.total_seconds())


def timing_from_args(args: argparse.Namespace) -> Timing:
    return claim_timing(args.claim_heartbeat, args.claim_expiry, key=flag_key("--claim-expiry"))
