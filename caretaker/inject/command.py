"""`caretaker inject`: add caretaker's init container and sidecar to Kubernetes manifests.

Reads YAML (a file or stdin, several documents), writes the changed documents to stdout.
stdout carries only YAML, so this command logs (and reports refusals) on stderr. What the
containers would refuse at start-up is refused here (`caretaker.inject.checks`), together
with every problem of the manifests.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from caretaker.inject.checks import (
    DEFAULT_SCHEDULE,
    as_inject_flags,
    literal_env,
    restore_problems,
    sidecar_problems,
)
from caretaker.inject.manifests import (
    DEFAULT_IMAGE,
    DEFAULT_UID,
    InjectOptions,
    inject_documents,
    restore_container,
    sidecar_container,
)
from restore.commands import Command, Context
from restore.commands.options import Invalid
from restore.errors import ConfigError, Problem
from restore.initcontainer.decision import parse_empty_start
from restore.values import bounded

DEFAULT_MOUNT = "/data"  # stands for the app's mount path, which only the manifests know
# What stands in for a flag value that broke its rule while the other flags are judged.
_FALLBACKS: dict[str, object] = {
    "metrics_port": 9090,
    "image": DEFAULT_IMAGE,
    "allow_empty": "new-repository",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", default="-", help="manifest file, or - for stdin")
    parser.add_argument("--volume", required=True, metavar="NAME", help="the pod's data volume")
    parser.add_argument(
        "--container", metavar="NAME", help="the app container mounting it (needed if several)"
    )
    parser.add_argument("--repository", metavar="URL", help="repository URL (no credentials)")
    parser.add_argument("--path", metavar="DIR", help="caretaker's mount path (default: the app container's)")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="caretaker image")
    parser.add_argument("--secret", metavar="NAME", help="Secret whose keys become env variables")
    parser.add_argument("--secret-files", metavar="NAME", help="Secret mounted at /etc/caretaker/secrets")
    parser.add_argument(
        "--password-secret",
        metavar="NAME",
        help="Secret holding the repository's password (required unless git or --insecure-no-encryption)",
    )
    parser.add_argument(
        "--password-key", default="password", metavar="KEY", help="the password's key in that Secret"
    )
    parser.add_argument(
        "--insecure-no-encryption",
        action="store_true",
        help="let the first backup create the repository unencrypted",
    )
    parser.add_argument("--config-map", metavar="NAME", help="ConfigMap with the sidecar's config.yaml")
    parser.add_argument(
        "--schedule",
        metavar="SPEC",
        help=f"backup schedule without --config-map (if neither is given: {DEFAULT_SCHEDULE})",
    )
    parser.add_argument(
        "--env", action="append", type=_pair, default=[], metavar="NAME=VALUE", help="env for both containers"
    )
    parser.add_argument("--native", action="store_true", help="native sidecar (Kubernetes >= 1.29)")
    parser.add_argument(
        "--metrics-port", type=bounded(1, 65535), default=9090, metavar="N", help="metrics/health port"
    )
    parser.add_argument(
        "--allow-empty",
        nargs="?",
        const="always",
        default="new-repository",
        type=parse_empty_start,
        metavar="WHEN",
        help="restore: start empty when there is no snapshot: never, new-repository, always (the flag alone)",
    )
    parser.add_argument("--check-cmd", metavar="CMD", help="restore: health check command")
    parser.add_argument(
        "--user", type=_user, metavar="UID[:GID]", help="run caretaker as (default: the app container's user)"
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="inject only these workloads"
    )


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError("expected NAME=VALUE")
    return name, value


def _user(text: str) -> tuple[int, int]:
    uid, _, gid = text.partition(":")
    try:
        return int(uid), int(gid or uid)
    except ValueError:
        raise ValueError("expected UID or UID:GID (numbers)") from None


def options_from(args: argparse.Namespace, log: Any) -> InjectOptions:
    """Build InjectOptions from parsed flags, with the default schedule when the sidecar
    would otherwise have none (and a warning that says so)."""
    schedule = args.schedule
    if schedule is None and args.config_map is None and "CARETAKER_SCHEDULE" not in dict(args.env):
        schedule = DEFAULT_SCHEDULE
        log.warning(
            "inject.schedule_defaulted",
            schedule=schedule,
            hint="give --schedule (it also overrides a CARETAKER_SCHEDULE in --secret) or --config-map",
        )
    return InjectOptions(
        volume=args.volume,
        container=args.container,
        repository=args.repository,
        path=args.path,
        image=args.image,
        secret=args.secret,
        secret_files=args.secret_files,
        password_secret=args.password_secret,
        password_key=args.password_key,
        insecure_no_encryption=args.insecure_no_encryption,
        config_map=args.config_map,
        schedule=schedule,
        env=tuple(args.env),
        native=args.native,
        metrics_port=args.metrics_port,
        allow_empty=args.allow_empty,
        check_cmd=args.check_cmd,
        user=args.user,
        only=frozenset(args.only),
    )


def read_documents(source: str) -> list[Any]:
    """Parse every YAML document of a file (or stdin for "-"). Raise ConfigError if unreadable."""
    import yaml  # noqa: PLC0415 - every `caretaker` start (the init container's too) builds this parser

    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except OSError as error:
        raise ConfigError.single("file", source, error.strerror or str(error)) from None
    except yaml.YAMLError as error:
        raise ConfigError([Problem("file", source, f"not valid YAML: {error}")]) from None


def option_problems(options: InjectOptions) -> list[Problem]:
    """What the restore init container and the sidecar would refuse in the environment
    inject gives them (their own checks, run here), keyed by inject's flags."""
    path = options.path or DEFAULT_MOUNT
    user = (DEFAULT_UID, DEFAULT_UID)
    found = restore_problems(literal_env(restore_container(options, path, None, user)))
    sidecar_env = literal_env(sidecar_container(options, path, None, user))
    found += sidecar_problems(sidecar_env, config_file=options.config_map is not None)
    return as_inject_flags(found, repository_in_secret=options.repository is None)


def run(args: argparse.Namespace, ctx: Context, known: Sequence[Problem] = ()) -> int:
    """Inject, or report every problem at once (`known`: flags that broke their rules)."""
    log = structlog.get_logger().bind(command="inject")
    problems = list(known)
    try:
        options = options_from(args, log)
        problems += option_problems(options)
        documents = read_documents(args.file)
        count = inject_documents(documents, options)
    except ConfigError as error:
        problems += error.problems
    if problems:
        log.error("inject.refused", problems=[str(p) for p in problems])
        return ConfigError.exit_code
    import yaml  # noqa: PLC0415

    ctx.stdout.write(yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True))
    log.info("inject.done", workloads=count, source=args.file)
    return 0


def config_failed(args: argparse.Namespace, ctx: Context, error: ConfigError) -> int:
    """Flags that broke their rules: judge the rest too, and report it all in one round."""
    valid = {
        name: [v for v in value if not isinstance(v, Invalid)] if isinstance(value, list) else value
        for name, value in vars(args).items()
    }
    valid |= {name: _FALLBACKS.get(name) for name, value in valid.items() if isinstance(value, Invalid)}
    return run(argparse.Namespace(**valid), ctx, error.problems)


COMMAND = Command(
    name="inject",
    help="add caretaker's init container and sidecar to Kubernetes manifests",
    description=(
        "Read Deployment/StatefulSet/DaemonSet/Pod manifests (several documents, List kinds),\n"
        "add the restore init container, the sidecar, their volumes, env from a Secret and the\n"
        "metrics port, and write them to stdout. Idempotent. Refuses (exit 2) when the named\n"
        "volume or container does not exist.\n\n"
        "  caretaker inject app.yaml --volume data --repository s3://bucket/app --secret s3-creds \\\n"
        "    --password-secret app-backup-password"
    ),
    configure=configure,
    run=run,
    stdout_is_data=True,
    config_failed=config_failed,
)
