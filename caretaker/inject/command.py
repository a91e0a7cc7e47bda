"""`caretaker inject`: add caretaker's init container and sidecar to Kubernetes manifests.

Reads YAML (a file or stdin, several documents), writes the changed documents to stdout.
stdout carries only YAML, so this command logs (and reports refusals) on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import structlog

from caretaker.inject.manifests import DEFAULT_IMAGE, InjectOptions, inject_documents
from restore.commands import Command, Context
from restore.commands.options import empty_start_arg
from restore.errors import ConfigError, Problem


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
    parser.add_argument("--config-map", metavar="NAME", help="ConfigMap with the sidecar's config.yaml")
    parser.add_argument("--schedule", metavar="SPEC", help="backup schedule (without a config)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="env for both containers"
    )
    parser.add_argument("--native", action="store_true", help="native sidecar (Kubernetes >= 1.29)")
    parser.add_argument("--metrics-port", type=int, default=9090, help="metrics/health port")
    parser.add_argument(
        "--allow-empty",
        nargs="?",
        const="always",
        default="new-repository",
        type=empty_start_arg,
        metavar="WHEN",
        help="restore: start empty when there is no snapshot: never, new-repository, always (the flag alone)",
    )
    parser.add_argument("--check-cmd", metavar="CMD", help="restore: health check command")
    parser.add_argument(
        "--user", metavar="UID[:GID]", help="run caretaker as (default: the app container's user)"
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="inject only these workloads"
    )


def _pair(text: str, key: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ConfigError.single(key, text, "expected NAME=VALUE")
    return name, value


def _user(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    uid, _, gid = text.partition(":")
    try:
        return int(uid), int(gid or uid)
    except ValueError:
        raise ConfigError.single("--user", text, "expected UID or UID:GID (numbers)") from None


def options_from(args: argparse.Namespace) -> InjectOptions:
    """Build InjectOptions from parsed flags. Raise ConfigError on malformed values."""
    return InjectOptions(
        volume=args.volume,
        container=args.container,
        repository=args.repository,
        path=args.path,
        image=args.image,
        secret=args.secret,
        secret_files=args.secret_files,
        config_map=args.config_map,
        schedule=args.schedule,
        env=tuple(_pair(item, "--env") for item in args.env),
        native=args.native,
        metrics_port=args.metrics_port,
        allow_empty=args.allow_empty,
        check_cmd=args.check_cmd,
        user=_user(args.user),
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


def run(args: argparse.Namespace, ctx: Context) -> int:
    log = structlog.get_logger().bind(command="inject")
    try:
        documents = read_documents(args.file)
        count = inject_documents(documents, options_from(args))
    except ConfigError as error:
        log.error("inject.refused", problems=[str(p) for p in error.problems])
        return error.exit_code
    import yaml  # noqa: PLC0415

    ctx.stdout.write(yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True))
    log.info("inject.done", workloads=count, source=args.file)
    return 0


COMMAND = Command(
    name="inject",
    help="add caretaker's init container and sidecar to Kubernetes manifests",
    description=(
        "Read Deployment/StatefulSet/DaemonSet/Pod manifests (several documents, List kinds),\n"
        "add the restore init container, the sidecar, their volumes, env from a Secret and the\n"
        "metrics port, and write them to stdout. Idempotent. Refuses (exit 2) when the named\n"
        "volume or container does not exist.\n\n"
        "  caretaker inject app.yaml --volume data --repository s3://bucket/app --secret s3-creds"
    ),
    configure=configure,
    run=run,
    stdout_is_data=True,
)
