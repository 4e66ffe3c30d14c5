"""Helpers shared by the CLI commands: settings, logging, friendly failures."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from convassist.core.logging import configure_logging
from convassist.core.settings import CommonSettings

console = Console(stderr=True)


def fail(message: str, *, code: int = 1) -> NoReturn:
    """Print a one-line error for a person (no traceback) and exit non-zero."""
    console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def setup_logging(settings: CommonSettings, component: str) -> None:
    configure_logging(settings.log_level, settings.log_format, component=component)
