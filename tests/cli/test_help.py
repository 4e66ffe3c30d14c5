"""Every command's `--help` shows its texts whole: nothing in brackets is taken for markup."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from convassist.cli.main import app

BRACKETED = re.compile(r"\[[^\[\]]+\]")


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command and group under `command` (typer's click objects), with its path."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def _texts(command: Any) -> list[str]:
    """The help texts the command was written with: its own and its options'."""
    texts = [command.help or ""]
    texts += [getattr(param, "help", None) or "" for param in command.params]
    return texts


COMMANDS = list(_commands(typer.main.get_command(app)))


def test_every_group_and_command_is_checked() -> None:
    paths = {" ".join(path) for path, _ in COMMANDS}
    assert {"agent menubar", "agent register", "server", "up", "db", "admin"} <= paths


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(p) or "convassist" for p, _ in COMMANDS]
)
def test_help_keeps_bracketed_words(path: tuple[str, ...], command: Any) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    shown = re.sub(r"\s+", " ", result.output.replace("│", " "))
    for text in _texts(command):
        for words in BRACKETED.findall(re.sub(r"\s+", " ", text)):
            assert words in shown, f"{' '.join(path)}: {words!r} vanished from --help"
