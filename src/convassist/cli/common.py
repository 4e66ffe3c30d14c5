"""Helpers shared by the CLI commands: settings, logging, friendly failures."""

from __future__ import annotations

import errno
import socket
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


def port_problem(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on now (None if it can), as uvicorn would bind it."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"cannot resolve {host!r} ({exc.strerror})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "it is already in use by another program"
            return exc.strerror or str(exc)
    return None


def ensure_port_free(what: str, host: str, port: int, how_to_change: str) -> None:
    """Fail before starting anything if `what` could not listen on `host:port`."""
    problem = port_problem(host, port)
    if problem:
        fail(f"{what} cannot listen on port {port} of {host}: {problem}. {how_to_change}")
