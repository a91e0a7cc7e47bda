"""`caretaker sidecar`: placeholder until the sidecar runtime lands (issue 5)."""

from __future__ import annotations

import argparse

from restore.commands import Command, Context


def configure(parser: argparse.ArgumentParser) -> None:
    from restore.cli import add_repository_options  # noqa: PLC0415

    add_repository_options(parser, path_help="the data folder to look after")


def run(args: argparse.Namespace, ctx: Context) -> int:  # noqa: ARG001
    raise NotImplementedError


COMMAND = Command(
    name="sidecar",
    help="run scheduled backups and maintenance jobs (sidecar container)",
    description="Run scheduled jobs against --path.",
    configure=configure,
    run=run,
)
