"""`convassist admin …`: the owner account."""

from __future__ import annotations

import asyncio
import sys

import typer

from convassist.cli.common import console, fail
from convassist.core.db import create_engine, create_sessionmaker, session_scope
from convassist.core.errors import AppError
from convassist.core.settings import ServerSettings
from convassist.server import migrate
from convassist.server.auth.service import MIN_PASSWORD_LENGTH, set_owner_password
from convassist.server.auth.setup import discard_code

app = typer.Typer(help="Owner account administration.", no_args_is_help=True)


@app.command("set-password")
def set_password(
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input (for scripts)."
    ),
) -> None:
    """Set the owner password for the web UI and the API (signs out existing sessions)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        console.print(f"The password needs at least {MIN_PASSWORD_LENGTH} characters.")
        password = typer.prompt("New owner password", hide_input=True, confirmation_prompt=True)
    settings = ServerSettings()
    url = settings.resolved_database_url
    migrate.upgrade(url)

    async def run() -> None:
        engine = create_engine(url)
        try:
            async with session_scope(create_sessionmaker(engine)) as session:
                await set_owner_password(session, password)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except AppError as exc:
        fail(exc.detail)
    discard_code(settings)
    console.print("Owner password set. Sign in at the server's web UI or POST /api/auth/login.")
