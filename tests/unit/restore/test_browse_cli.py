"""The browsing commands' output and refusals, through the command line in this process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from caretaker.cli import main
from restore.backends.local import LocalStore
from tests.support.forge import forge_blob, forge_snapshot, line


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    store = LocalStore(tmp_path / "repo")
    chunk = forge_blob(store, b"bytes")
    names = ["evil\x1b[2J\nname", "latin-\udce9", "plain.txt"]
    forge_snapshot(store, [line(name, size=5, chunks=[chunk]) for name in names])
    return {"CARETAKER_REPOSITORY": f"file://{tmp_path / 'repo'}"}


def test_text_output_escapes_what_a_terminal_would_act_on(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ls", "latest", "--log-format", "json"], env) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "evil\\x1b[2J\\nname" in out
    assert "latin-\\xe9" in out
    assert len(out.splitlines()) == 3


def test_json_output_keeps_the_names_exactly(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["find", "--json", "*", "--log-format", "json"], env) == 0
    paths = [json.loads(text)["path"] for text in capsys.readouterr().out.splitlines()]
    assert paths == ["evil\x1b[2J\nname", "latin-\udce9", "plain.txt"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["find", "../*"], "PATTERN='../*'"),
        (["ls", "latest", "a/../b"], "path='a/../b'"),
        (["copy"], "to=None"),
        (["dump", "latest", ".caretaker/x"], "path='.caretaker/x'"),
    ],
)
def test_bad_requests_exit_2_naming_the_value(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], args: list[str], named: str
) -> None:
    assert main([*args, "--log-format", "json"], env) == 2
    captured = capsys.readouterr()
    assert named in captured.err + captured.out
