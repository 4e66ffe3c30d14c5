"""Optional menu bar app (macOS, `pip install 'conversation-assistant[macos]'`, uses `rumps`).

Menu: the last sync and last error, Sync now (a sync in a background thread; the state lock
keeps it from overlapping the LaunchAgent's), Settings… (where everything is, and a button for
the server's Devices page), Quit. The menu is refreshed from the state database every few
seconds on the main thread.
"""

from __future__ import annotations

import asyncio
import platform
import threading
import webbrowser
from pathlib import Path
from typing import Any

from convassist.agent.errors import AgentError
from convassist.agent.launchd import AgentPaths
from convassist.agent.runner import sync_once
from convassist.agent.settings import AgentSettings
from convassist.agent.status import collect_status, status_rows
from convassist.core.logging import get_logger

__all__ = ["run_menubar"]

log = get_logger(__name__)

REFRESH_SECONDS = 5
TITLE = "💬"


def _load_rumps() -> Any:
    if platform.system() != "Darwin":
        raise AgentError("The menu bar app runs on macOS only; use `convassist agent status`.")
    try:
        import rumps
    except ImportError:
        raise AgentError(
            "The menu bar app needs the macOS extra: pip install 'conversation-assistant[macos]'"
        ) from None
    return rumps


def run_menubar(settings: AgentSettings) -> None:
    """Show the menu bar item until Quit."""
    rumps = _load_rumps()
    lock = threading.Lock()
    outcome: list[str] = []  # set by the sync thread, shown by the timer (main thread)

    status_item = rumps.MenuItem("Not synced yet")
    error_item = rumps.MenuItem("")

    def refresh(_: Any = None) -> None:
        status = asyncio.run(collect_status(settings, online=False))
        rows = dict(status_rows(status))
        if status.registration is None:
            status_item.title = "Not registered: run `convassist agent register`"
        else:
            status_item.title = f"Last sync: {rows.get('last sync', 'never')}"
        error_item.title = f"Last error: {rows['last error']}" if status.last_error else ""
        if outcome:
            rumps.notification("Conversation Assistant", "Sync", outcome.pop())

    def sync_in_background() -> None:
        try:
            report = asyncio.run(sync_once(settings))
            outcome.append(f"{report.counts.sent:,} messages sent")
        except AgentError as exc:
            outcome.append(exc.message)
        finally:
            lock.release()

    def sync_now(_: Any) -> None:
        if not lock.acquire(blocking=False):
            rumps.notification("Conversation Assistant", "Sync", "A sync is already running.")
            return
        threading.Thread(target=sync_in_background, name="convassist-sync", daemon=True).start()

    def open_settings(_: Any) -> None:
        status = asyncio.run(collect_status(settings, online=False))
        server = status.registration.server_url if status.registration else None
        paths = AgentPaths(Path.home())
        lines = [
            f"Server: {server or 'not registered'}",
            f"chat.db: {status.db_path}",
            f"Poll interval: {settings.poll_interval:g} s (CONVASSIST_AGENT_POLL_INTERVAL)",
            f"State: {status.state_dir}",
            f"Log: {paths.log_file}",
        ]
        window = rumps.Window(
            message="\n".join(lines),
            title="Conversation Assistant",
            ok="Open Devices page" if server else "OK",
            cancel="Close" if server else None,
            dimensions=(0, 0),
        )
        if window.run().clicked == 1 and server:
            webbrowser.open(f"{server}/devices")

    app = rumps.App("Conversation Assistant", title=TITLE, quit_button="Quit")
    app.menu = [
        status_item,
        error_item,
        None,
        rumps.MenuItem("Sync now", callback=sync_now),
        rumps.MenuItem("Settings…", callback=open_settings),
        None,
    ]
    rumps.Timer(refresh, REFRESH_SECONDS).start()
    refresh()
    log.info("agent.menubar.started")
    app.run()
