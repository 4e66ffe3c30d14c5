"""`convassist doctor`: check this installation; a table for people, `--json` for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from convassist.cli.common import fail
from convassist.core.logging import configure_logging
from convassist.core.settings import ServerSettings
from convassist.doctor import CHECKS
from convassist.doctor.result import Context, Result, Status, failed, run_checks
from convassist.ml.settings import MLSettings

STYLES = {
    Status.OK: ("✓ ok", "green"),
    Status.WARN: ("! warn", "yellow"),
    Status.FAIL: ("✗ fail", "bold red"),
    Status.SKIP: ("- skip", "dim"),
}


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Check this installation: each problem with its fix; exits 1 if any check fails."""
    try:
        context = Context(server=ServerSettings(), ml=MLSettings())
    except ValidationError as exc:
        fail(f"Invalid configuration: {exc}")
    configure_logging("CRITICAL", "console", component="doctor")  # the table says it all
    if as_json:
        results = run_checks(CHECKS, context)
        json.dump({"ok": not failed(results), "checks": [r.to_json() for r in results]}, sys.stdout)
        sys.stdout.write("\n")
    else:
        out = Console(highlight=False)
        with out.status("Checking (a few-token generation takes a moment)…"):
            results = run_checks(CHECKS, context)
        out.print(table(results))
        out.print(verdict(results))
    raise typer.Exit(1 if failed(results) else 0)


def table(results: Sequence[Result]) -> Table:
    grid = Table(title="Conversation Assistant doctor", title_justify="left", show_lines=True)
    grid.add_column("Check", no_wrap=True)
    grid.add_column("", no_wrap=True)
    grid.add_column("Result", overflow="fold")
    for result in results:
        label, style = STYLES[result.outcome.status]
        detail = Text(result.outcome.summary)
        if result.outcome.fix:
            detail.append("\nFix: ", style="bold").append(result.outcome.fix)
        grid.add_row(result.check.name, Text(label, style=style), detail)
    return grid


def verdict(results: Sequence[Result]) -> Text:
    count = {status: 0 for status in Status}
    for result in results:
        count[result.outcome.status] += 1
    line = (
        f"{count[Status.OK]} ok, {count[Status.WARN]} warnings, {count[Status.FAIL]} failed, "
        f"{count[Status.SKIP]} skipped."
    )
    if count[Status.FAIL]:
        return Text(f"{line} Fix the failures above (each says how).", style="bold red")
    return Text(line, style="green")
