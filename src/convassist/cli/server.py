"""`convassist server` (the API server) and `convassist up` (the whole system)."""

from __future__ import annotations

import typer

from convassist.cli.common import console, ensure_port_free, fail, setup_logging
from convassist.core.settings import ServerSettings
from convassist.server import migrate


def serve(
    host: str | None = typer.Option(None, "--host", help="Bind address [default: 127.0.0.1]."),
    port: int | None = typer.Option(None, "--port", help="Port [default: 3100]."),
    run_migrations: bool = typer.Option(
        True, "--migrate/--no-migrate", help="Bring the schema up to date before serving."
    ),
) -> None:
    """Run the API server and web UI."""
    import uvicorn

    from convassist.server.app import create_app

    settings = ServerSettings()
    if host is not None:
        settings.host = host
    if port is not None:
        settings.port = port
    setup_logging(settings, "server")
    settings.ensure_data_dir()
    ensure_port_free(
        "The server",
        settings.host,
        settings.port,
        f"Choose another port with `convassist server --port {settings.port + 1}` "
        "(or CONVASSIST_PORT).",
    )
    url = settings.resolved_database_url
    if run_migrations:
        try:
            migrate.upgrade(url)
        except Exception as exc:
            fail(f"Cannot prepare the database at {migrate.describe(url)}: {exc}")
    elif migrate.current(url) != migrate.head():
        fail(
            f"The database at {migrate.describe(url)} is not migrated: run `convassist db upgrade`."
        )
    _announce_setup(settings, url)
    console.print(
        f"Conversation Assistant server on http://{settings.host}:{settings.port} "
        f"(database: {migrate.describe(url)})",
        highlight=False,
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        server_header=False,
    )


def up(
    port: int | None = typer.Option(None, "--port", help="Server port [default: 3100]."),
    ml_port: int | None = typer.Option(None, "--ml-port", help="ML service port [default: 8100]."),
) -> None:
    """Run the whole system: API server, ML service, and a worker when Redis is configured.

    A component that dies is restarted (with backoff) while the others keep running.
    """
    from convassist.cli.up import run_system

    raise typer.Exit(run_system(port, ml_port))


def _announce_setup(settings: ServerSettings, url: str) -> None:
    """While there is no owner, print a link with a new one-time setup code (for the person
    at this terminal: never logged); once there is one, forget any old code."""
    from convassist.server.auth.setup import discard_code, issue_code, setup_url

    if owner_configured(url):
        discard_code(settings)
        return
    link = setup_url(settings, issue_code(settings))
    console.print(
        "[bold yellow]No owner password yet.[/] Open this link to create it (it works once):",
        highlight=False,
    )
    console.print(f"    {link}", markup=False, highlight=False, soft_wrap=True)
    console.print("Or run [bold]convassist admin set-password[/] on this machine.", highlight=False)


def owner_configured(url: str) -> bool:
    """Whether the owner password is set in the (migrated) database at `url`."""
    import asyncio

    from convassist.core.db import create_engine, create_sessionmaker
    from convassist.server.auth.service import get_owner

    async def check() -> bool:
        engine = create_engine(url)
        try:
            async with create_sessionmaker(engine)() as session:
                return await get_owner(session) is not None
        finally:
            await engine.dispose()

    return asyncio.run(check())
