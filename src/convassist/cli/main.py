"""`convassist`: one command line for the server, the ML service, the worker and the agent."""

from __future__ import annotations

import typer

from convassist import __version__
from convassist.cli import admin, agent, db, demo, ml, models, server
from convassist.cli.doctor import doctor
from convassist.cli.eval import evaluate
from convassist.core.private import restrict_umask

app = typer.Typer(
    name="convassist",
    help="Conversation Assistant: reply suggestions in your own voice, self-hosted.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "[macos]" and "[default: …]" stay as written
)
app.add_typer(db.app, name="db")
app.add_typer(admin.app, name="admin")
app.add_typer(models.app, name="models")
app.add_typer(agent.app, name="agent")
app.command("server")(server.serve)
app.command("up")(server.up)
app.command("ml")(ml.serve)
app.command("worker")(ml.worker)
app.command("eval")(evaluate)
app.command("doctor")(doctor)
app.command("demo")(demo.demo)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"convassist {__version__}")
        raise typer.Exit


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Conversation Assistant."""
    restrict_umask()  # whatever a command writes (data dir, agent state) is the owner's only
