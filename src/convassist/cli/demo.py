"""`convassist demo`: try it without a Mac, on one real person's texting from a public corpus."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from convassist.cli.common import console, fail
from convassist.core.db import create_engine, create_sessionmaker, session_scope
from convassist.core.logging import configure_logging
from convassist.core.settings import ServerSettings
from convassist.server import migrate
from convassist.server.demo import service
from convassist.server.demo.corpus import (
    Conversation,
    CorpusMissing,
    load_corpus,
    most_conversations,
    pick_conversations,
)

DEFAULT_REPLIES = 400
"""About 20 conversations: a training job on them takes a few minutes on a laptop CPU."""


def demo(
    remove: bool = typer.Option(
        False, "--remove", help="Delete the demo data (and nothing else), then exit."
    ),
    replies: int = typer.Option(
        DEFAULT_REPLIES, "--replies", min=1, help="About how many of the person's replies to load."
    ),
    corpus: Path | None = typer.Option(
        None,
        "--corpus",
        help="A Chit-Chat dataset.json (or .json.gz) instead of the installed package.",
    ),
) -> None:
    """Load demo conversations (BYU Chit-Chat corpus, MIT) as if a Mac had synced them.

    One person of the corpus plays you: their messages are yours, so suggestions and
    training learn their style. Needs the `demo` extra: pip install
    'conversation-assistant[demo]'.
    """
    settings = ServerSettings()
    configure_logging("WARNING", settings.log_format, component="demo")  # the progress says it
    url = settings.resolved_database_url
    try:
        migrate.upgrade(url)
    except Exception as exc:
        fail(f"Cannot prepare the database at {migrate.describe(url)}: {exc}")
    if remove:
        asyncio.run(_remove(url))
        return
    try:
        with console.status("Reading the Chit-Chat corpus…"):
            data = load_corpus(corpus)
    except CorpusMissing as exc:
        fail(str(exc))
    me = most_conversations(data)
    chosen = pick_conversations(data, me, replies)
    asyncio.run(_load(settings, url, chosen, me))
    base = f"http://{settings.host}:{settings.port}"
    console.print(
        "\n[bold]Next:[/] run [bold]convassist up[/] and open "
        f"[link={base}]{base}[/link] (the first time, the link it prints to create your "
        "password).\n"
        "  • Conversations: open one and press [italic]Suggest replies[/].\n"
        "  • Training: tick [italic]Also learn from my past replies[/] and start a job "
        "(a few minutes).\n"
        "Remove the demo any time with [bold]convassist demo --remove[/].",
        highlight=False,
    )


async def _load(
    settings: ServerSettings,
    url: str,
    chosen: list[tuple[str, Conversation]],
    me: str,
) -> None:
    engine = create_engine(url)
    columns = (
        TextColumn("[bold]Syncing demo conversations"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[messages]} messages"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("sync", total=len(chosen), messages=0)
            totals = await service.load(
                create_sessionmaker(engine),
                chosen,
                me,
                max_batch=settings.sync_max_batch,
                progress=lambda t: progress.update(
                    task, completed=t.conversations, messages=t.inserted + t.unchanged + t.updated
                ),
            )
    finally:
        await engine.dispose()
    console.print(
        f"Demo loaded from the device [bold]{service.DEMO_DEVICE_NAME}[/]: "
        f"{totals.conversations} conversations, {totals.inserted} new messages"
        + (f" ({totals.unchanged} already there)" if totals.unchanged else "")
        + ".",
        highlight=False,
    )


async def _remove(url: str) -> None:
    engine = create_engine(url)
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            removed = await service.remove(session)
    finally:
        await engine.dispose()
    if not removed.devices and not removed.conversations:
        console.print("No demo data to remove.")
        return
    console.print(
        f"Removed the demo: {removed.conversations} conversations, {removed.messages} "
        f"messages, {removed.samples} training samples, {removed.contacts} contacts and the "
        "demo device. Nothing else was touched.",
        highlight=False,
    )
