"""`convassist db …`: schema migrations."""

from __future__ import annotations

import typer

from convassist.cli.common import console, fail
from convassist.core.settings import ServerSettings
from convassist.server import migrate

app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


def _url() -> str:
    return ServerSettings().resolved_database_url


@app.command()
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Create or migrate the schema to the latest version."""
    url = _url()
    try:
        migrate.upgrade(url, revision)
    except Exception as exc:
        fail(f"Migration failed on {migrate.describe(url)}: {exc}")
    console.print(f"Database at {migrate.describe(url)} is at revision {migrate.current(url)}.")


@app.command()
def current() -> None:
    """Show the schema revision of the configured database."""
    url = _url()
    revision = migrate.current(url)
    head = migrate.head()
    state = "up to date" if revision == head else f"behind (latest is {head})"
    console.print(f"{migrate.describe(url)}: revision {revision or 'none'}, {state}.")


@app.command()
def check() -> None:
    """Fail if the models and the migrations differ (for development)."""
    migrate.check(_url())
