"""`caretaker inject`: placeholder until issue 8 lands."""

from __future__ import annotations

import argparse

from restore.commands import Command, Context


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", default="-", help="manifest file, or - for stdin")


def run(args: argparse.Namespace, ctx: Context) -> int:  # noqa: ARG001
    raise NotImplementedError


COMMAND = Command(
    name="inject",
    help="add caretaker's init container and sidecar to Kubernetes manifests",
    description="Read manifests, add caretaker, write them to stdout.",
    configure=configure,
    run=run,
)
