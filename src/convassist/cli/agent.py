"""`convassist agent …`: register this Mac, sync chat.db, run as a LaunchAgent, status."""

from __future__ import annotations

import asyncio
import json
import plistlib
import shutil
import sys
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgressBar
from rich.table import Table

from convassist.agent import launchd
from convassist.agent.client import Registration, normalize_server_url
from convassist.agent.credentials import open_store
from convassist.agent.daemon import ChangeWatcher, Daemon, install_stop_signals
from convassist.agent.errors import AgentError, ChatDBPermissionDenied
from convassist.agent.fda import agent_programs, full_disk_access_message
from convassist.agent.identity import IDENTIFY_TIMEOUT, ensure_ready, identify_server
from convassist.agent.registration import device_description, register_device, save_grant
from convassist.agent.runner import client_for, load_session, open_chat_db, sync_once
from convassist.agent.send.outbox import Outbox, make_sender
from convassist.agent.settings import AgentSettings
from convassist.agent.state import StateDB
from convassist.agent.status import collect_status, status_rows, sync_summary
from convassist.agent.sync import SyncReport
from convassist.cli.common import fail
from convassist.core.logging import configure_logging, get_logger

app = typer.Typer(help="The sync agent: reads chat.db and syncs it to the server.")
log = get_logger("convassist.agent.cli")

# Messages for people on stderr; long lines (paths) are left to the terminal to wrap.
out = Console(stderr=True, highlight=False, soft_wrap=True)
IS_MACOS = sys.platform == "darwin"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
T = TypeVar("T")


def _settings(*, quiet: bool = True) -> AgentSettings:
    """Settings, with logging set up (interactive commands: warnings only unless asked)."""
    try:
        settings = AgentSettings()
    except ValueError as exc:
        fail(f"Invalid agent configuration: {exc}")
    level = settings.log_level
    if quiet and "log_level" not in settings.model_fields_set:
        level = "WARNING"
    configure_logging(level, settings.log_format, component="agent")
    return settings


def _run(
    coroutine: Coroutine[Any, Any, T],
    interrupted: str = "Interrupted; nothing was lost (the next sync resumes).",
) -> T:
    """Run a coroutine; an `AgentError` becomes a one-line message and its exit code."""
    try:
        return asyncio.run(coroutine)
    except AgentError as exc:
        fail(exc.message, code=exc.exit_code)
    except KeyboardInterrupt:
        fail(interrupted, code=130)


def _server(url: str) -> str:
    try:
        normalized = normalize_server_url(url)
    except AgentError as exc:
        fail(exc.message, code=64)
    host = normalized.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]
    if normalized.startswith("http://") and host not in LOCAL_HOSTS:
        out.print(
            "[bold yellow]Warning:[/] this server is plain HTTP; the token and your messages "
            "would cross the network unencrypted. Use HTTPS in production.",
        )
    return normalized


class RichProgress:
    """The progress bar of a long sync (on stderr)."""

    def __init__(self) -> None:
        self._bar = RichProgressBar(
            TextColumn("Syncing chat.db"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("messages"),
            TimeRemainingColumn(),
            console=out,
        )
        self._task: TaskID | None = None

    def start(self, total: int) -> None:
        self._bar.start()
        self._task = self._bar.add_task("sync", total=total)

    def advance(self, messages: int) -> None:
        if self._task is not None:
            self._bar.advance(self._task, messages)

    def stop(self) -> None:
        self._bar.stop()


# -- register ---------------------------------------------------------------------------


def _show_code(server_url: str, registration: Registration) -> None:
    code = f"{registration.code[:3]} {registration.code[3:]}"
    expires = registration.expires_at.astimezone().strftime("%H:%M")
    out.print(
        Panel.fit(
            f"[bold]{code}[/]\n\nOpen [link={server_url}/devices]{server_url}/devices[/link], "
            f"sign in, and enter this code.\nIt expires at {expires}.",
            title="Approve this device",
            border_style="cyan",
            padding=(1, 4),
        ),
    )
    out.print("Waiting for approval… (Ctrl-C to cancel)")


@app.command()
def register(
    server: str = typer.Option(..., "--server", help="The server's URL, e.g. https://host:3100."),
    name: str | None = typer.Option(None, "--name", help="Device name [default: host name]."),
) -> None:
    """Register this computer with the server (the owner approves the 6-digit code)."""
    settings = _settings()
    url = _server(server)
    device_name = name or device_description()[0]

    async def flow() -> str:
        timeout = min(settings.http_timeout, IDENTIFY_TIMEOUT)
        ensure_ready(await identify_server(url, http_timeout=timeout))
        async with client_for(settings, url) as client:
            grant = await register_device(client, device_name, lambda r: _show_code(url, r))
        return save_grant(settings, url, device_name, grant).describe()

    where = _run(flow(), "Registration cancelled; run the command again for a new code.")
    out.print(f"[bold green]Registered[/] as {device_name!r} with {url}.")
    out.print(f"Token stored in {where}.")
    background = (
        f"[bold]convassist agent install --server {url}[/] to sync in the background"
        if IS_MACOS
        else "run [bold]convassist agent run[/] under systemd (or another service manager) to "
        "sync in the background, or [bold]convassist agent sync --once[/] from cron"
    )
    out.print(f"Next: [bold]convassist agent sync --once[/] for a first sync, then {background}.")


# -- sync and run -----------------------------------------------------------------------


def _daemon(
    settings: AgentSettings, db: Path | None, *, full: bool, announce: bool, send: bool = False
) -> None:
    """Sync now and then whenever chat.db changes or the poll interval passes, until stopped.

    With `announce` (the foreground `sync`), each sync that sent something prints a summary;
    with `send` (`run`), the outbox loop runs beside it as its own task.
    """
    path = (db or settings.db_path).expanduser().absolute()
    first = [full]

    async def loop() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)

        async def one_sync() -> SyncReport:
            restart, first[0] = first[0], False
            report = await sync_once(settings, db_path=path, full=restart, should_stop=stop.is_set)
            if announce and (report.counts.sent or report.contacts):
                out.print(sync_summary(report))
            return report

        def on_error(exc: AgentError) -> None:
            log.error("agent.sync.failed", error=type(exc).__name__, exit_code=exc.exit_code)
            out.print(f"[bold red]Sync failed:[/] {exc.message}")

        daemon = Daemon(
            one_sync,
            ChangeWatcher(path),
            poll_interval=settings.poll_interval,
            debounce=settings.debounce,
            stop=stop,
            on_error=on_error,
        )
        log.info("agent.daemon.started", poll_interval=settings.poll_interval)
        outbox = Outbox(settings, path, make_sender(settings), stop=stop, on_sent=daemon.poke)
        await asyncio.gather(daemon.run(), *([outbox.run()] if send else []))

    _run(loop())


@app.command()
def sync(
    db: Path | None = typer.Option(None, "--db", help="chat.db to read [default: Messages']."),
    once: bool = typer.Option(False, "--once", help="Sync once and exit."),
    full: bool = typer.Option(False, "--full", help="Send everything again (server dedupes)."),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bar [default: when on a terminal]."
    ),
) -> None:
    """Sync chat.db to the server; without --once, keep following new messages."""
    settings = _settings(quiet=once)
    if not once:
        _daemon(settings, db, full=full, announce=True)
        return
    show = progress if progress is not None else sys.stderr.isatty()
    report = _run(
        sync_once(settings, db_path=db, full=full, progress=RichProgress() if show else None)
    )
    out.print(sync_summary(report))


@app.command()
def run(
    db: Path | None = typer.Option(None, "--db", help="chat.db to read [default: Messages']."),
) -> None:
    """The background agent (what the LaunchAgent runs): sync on changes and every interval,
    and send the replies the owner chose (when the server allows this device to send)."""
    _daemon(_settings(quiet=False), db, full=False, announce=False, send=True)


# -- status -----------------------------------------------------------------------------


@app.command()
def status(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    offline: bool = typer.Option(False, "--offline", help="Do not ask the server."),
    db: Path | None = typer.Option(None, "--db", help="The chat.db whose cursor to show."),
) -> None:
    """Show the server, this device, the last sync, counts and the last error."""
    settings = _settings()
    if db is not None:
        settings.db_path = db
    report = _run(collect_status(settings, online=not offline))
    if as_json:
        typer.echo(json.dumps(report.to_json(), default=str, indent=2))
    else:
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for label, value in status_rows(report):
            table.add_row(label, value)
        out.print(table)
    if report.registration is None:
        raise typer.Exit(78)


# -- LaunchAgent ------------------------------------------------------------------------


def _launchctl() -> launchd.Launchctl:
    return launchd.SystemLaunchctl()


def _paths() -> launchd.AgentPaths:
    return launchd.AgentPaths(Path.home())


@app.command()
def install(
    server: str | None = typer.Option(None, "--server", help="Server URL [default: registered]."),
    db: Path | None = typer.Option(None, "--db", help="chat.db to read [default: Messages']."),
    wait: float = typer.Option(15.0, "--wait", help="Seconds to wait for the first sync."),
    print_only: bool = typer.Option(False, "--print", help="Print the plist; install nothing."),
) -> None:
    """Install and start the LaunchAgent (starts at login, restarts if it crashes)."""
    settings = _settings()
    paths = _paths()
    if server is not None:
        settings.server_url = _server(server)
    if print_only:
        url = settings.server_url or "https://server.example"
        environment = launchd.plist_environment(settings.resolved_state_dir, db)
        content = launchd.build_plist(url, paths, environment=environment)
        typer.echo(plistlib.dumps(content).decode())
        return
    if not IS_MACOS:
        fail(
            "LaunchAgents exist only on macOS. Elsewhere, run `convassist agent run` under "
            "systemd or another service manager, or `convassist agent sync --once` from cron "
            "(see docs/agent.md).",
            code=69,
        )
    chat_db = (db or settings.db_path).expanduser().absolute()
    try:
        registration, _ = load_session(settings, StateDB.open_existing(settings.resolved_state_dir))
    except AgentError as exc:
        fail(exc.message, code=exc.exit_code)
    try:
        open_chat_db(chat_db).close()
    except ChatDBPermissionDenied:
        # Checked from this shell; the LaunchAgent is checked again by its first sync below.
        out.print(
            "[bold yellow]Full Disk Access is missing.[/] "
            + full_disk_access_message(chat_db, environ={}),
        )
    except AgentError as exc:
        out.print(f"[bold yellow]Warning:[/] {exc.message}")
    since = datetime.now(UTC)
    try:
        plist = launchd.install_agent(
            registration.server_url,
            _launchctl(),
            paths,
            environment=launchd.plist_environment(settings.resolved_state_dir, db),
        )
    except AgentError as exc:
        fail(exc.message, code=exc.exit_code)
    out.print(f"Installed and started the LaunchAgent {plist}")
    out.print(f"Logs: {paths.log_file}")
    programs = " and ".join(str(p) for p in agent_programs())
    out.print(
        f"It runs as {programs}: that program needs Full Disk Access (your terminal's access "
        "does not count for the LaunchAgent).",
    )
    if wait > 0:
        failed, message = launchd.wait_for_first_sync(settings.resolved_state_dir, since, wait)
        shown = f"[bold red]The agent's first sync failed:[/] {escape(message)}"
        out.print(shown if failed else message)


@app.command()
def uninstall(
    purge: bool = typer.Option(
        False, "--purge", help="Also delete the agent's state and its stored token."
    ),
) -> None:
    """Stop and remove the LaunchAgent (and with --purge, the agent's state and token)."""
    settings = _settings()
    if IS_MACOS:
        try:
            removed = launchd.uninstall_agent(_launchctl(), _paths())
        except AgentError as exc:
            fail(exc.message, code=exc.exit_code)
        out.print(
            "LaunchAgent stopped and removed." if removed else "No LaunchAgent was installed.",
        )
    if purge:
        state_dir = settings.resolved_state_dir
        state = StateDB.open_existing(state_dir)
        if state is not None:
            with state:
                registration = state.registration()
            if registration is not None:
                try:
                    open_store(registration.token_store, state_dir).delete(registration.server_url)
                except AgentError as exc:
                    out.print(f"[bold yellow]Warning:[/] {exc.message}")
        shutil.rmtree(state_dir, ignore_errors=True)
        out.print(f"Removed the agent's state ({state_dir}) and token.")


@app.command()
def menubar() -> None:
    """The menu bar app (macOS, needs the [macos] extra): status, Sync now, Settings, Quit."""
    from convassist.agent.menubar import run_menubar

    settings = _settings()
    try:
        run_menubar(settings)
    except AgentError as exc:
        fail(exc.message, code=exc.exit_code)
