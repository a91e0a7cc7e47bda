"""What the command line prints: --help names every option's default and environment
twin; output into a pipe whose reader went away ends quietly."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

import pytest

from caretaker.cli import all_commands
from restore.cli import build_parser
from restore.commands.options import apply_environment, env_name, subcommand_parser
from tests.support.cli import CARETAKER
from tests.support.keys import UNENCRYPTED_ENV
from tests.support.trees import write_file


def helps() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser(all_commands())
    found = {}
    for command in all_commands():
        sub = subcommand_parser(parser, command.name)
        assert sub is not None
        apply_environment(sub, {})
        found[command.name] = sub
    return found


@pytest.mark.parametrize("name", [c.name for c in all_commands()])
def test_help_names_each_options_twin_and_default(name: str) -> None:
    parser = helps()[name]
    parser.format_help()  # the texts below are what it prints, wrapped
    for action in parser._actions:
        long = next((o for o in action.option_strings if o.startswith("--")), None)
        if long is None or long == "--help":
            continue
        assert f"env: {env_name(long)}]" in (action.help or "")
        if action.default not in (None, False, [], "", argparse.SUPPRESS):
            assert f"default: {action.default};" in (action.help or ""), (long, action.default)


def test_help_of_the_init_container_shows_its_defaults() -> None:
    text = " ".join(helps()["restore"].format_help().split())
    for shown in ("[default: 5m; env: CARETAKER_TIMEOUT]", "[default: 3; env: CARETAKER_MAX_FALLBACKS]"):
        assert shown in text
    assert "[default: /data; env: CARETAKER_PATH]" in text


@pytest.mark.parametrize("args", [["snapshots"], ["snapshots", "--json"]])
def test_a_listing_into_a_closed_pipe_ends_quietly(args: list[str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_file(data / "a.txt", b"hello")
    env = {
        "PATH": os.environ["PATH"],
        "CARETAKER_REPOSITORY": (tmp_path / "repo").as_uri(),
        **UNENCRYPTED_ENV,
    }
    for _ in range(3):
        subprocess.run([CARETAKER, "backup", "--path", str(data)], env=env, check=True, capture_output=True)
    reader, writer = os.pipe()
    os.close(reader)  # like `| head -0`: whatever is written finds no reader
    try:
        done = subprocess.run([CARETAKER, *args], env=env, stdout=writer, stderr=subprocess.PIPE, check=False)
    finally:
        os.close(writer)
    assert done.returncode == 0
    assert done.stderr == b""
