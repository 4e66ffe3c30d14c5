"""What `agent status` (and the menu bar) shows: registration, last sync, counts, last error,
the sender and the last sends."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from convassist.agent.chatdb import ChatCursor
from convassist.agent.client import ServerStatus
from convassist.agent.credentials import open_store
from convassist.agent.errors import AgentError
from convassist.agent.runner import client_for, load_session
from convassist.agent.settings import AgentSettings
from convassist.agent.state import Counts, DeviceRegistration, JournalEntry, StateDB
from convassist.agent.sync import SyncReport

__all__ = ["AgentStatus", "collect_status", "status_rows", "sync_summary"]


@dataclass(slots=True)
class AgentStatus:
    state_dir: Path
    db_path: Path
    registration: DeviceRegistration | None = None
    token_location: str | None = None
    cursor: ChatCursor | None = None
    last_sync_at: datetime | None = None
    last_run: dict[str, Any] | None = None
    totals: Counts = field(default_factory=Counts)
    last_error: tuple[datetime, str] | None = None
    server: ServerStatus | None = None
    server_error: str | None = None
    sender: str = ""
    sent_log: Path | None = None
    recent_sends: list[JournalEntry] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["cursor"] = asdict(self.cursor) if self.cursor else None
        data["last_error"] = (
            {"at": self.last_error[0], "message": self.last_error[1]} if self.last_error else None
        )
        return data


async def collect_status(
    settings: AgentSettings,
    *,
    online: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AgentStatus:
    """Read the local state; with `online`, also ask the server (one quick try)."""
    state_dir = settings.resolved_state_dir
    db_path = settings.db_path.expanduser().absolute()
    status = AgentStatus(state_dir=state_dir, db_path=db_path, sender=settings.sender)
    if settings.sender == "dry-run":
        status.sent_log = settings.resolved_sent_log
    state = StateDB.open_existing(state_dir)
    if state is None:
        return status
    with state:
        status.registration = registration = state.registration()
        status.cursor = state.cursor(db_path)
        status.last_sync_at = state.last_sync_at()
        status.last_run = state.last_run()
        status.totals = state.totals()
        status.last_error = state.last_error()
        status.recent_sends = state.recent_sends()
        if registration is None:
            return status
        status.token_location = open_store(registration.token_store, state_dir).describe()
        if not online:
            return status
        try:
            _, token = load_session(settings, state)
            quick = settings.model_copy(update={"retries": 0, "http_timeout": 5.0})
            async with client_for(quick, registration.server_url, token, transport) as client:
                status.server = await client.status()
        except AgentError as exc:
            status.server_error = exc.message
    return status


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if value else "never"


def status_rows(status: AgentStatus) -> list[tuple[str, str]]:
    """(label, value) lines for people; no message content, only ids, times and counts."""
    reg = status.registration
    if reg is None:
        return [
            ("registered", "no: run `convassist agent register --server URL`"),
            ("state", str(status.state_dir)),
        ]
    totals = status.totals
    rows = [
        ("server", reg.server_url),
        ("device", f"{reg.device_name} ({reg.device_id})"),
        ("token", f"in {status.token_location}; expires {_when(reg.token_expires_at)}"),
        ("chat.db", str(status.db_path)),
        ("last sync", _when(status.last_sync_at)),
    ]
    if status.last_run:
        run = status.last_run
        rows.append(
            (
                "last run",
                f"{run.get('sent', 0):,} sent, {run.get('inserted', 0):,} new, "
                f"{run.get('updated', 0):,} updated in {run.get('duration_s', 0):.1f}s",
            )
        )
    rows.append(
        (
            "all runs",
            f"{totals.sent:,} sent, {totals.inserted:,} new, {totals.updated:,} updated, "
            f"{totals.unchanged:,} unchanged, {totals.not_sent:,} not sent (no chat)",
        )
    )
    cursor = status.cursor
    rows.append(
        ("cursor", f"ROWID {cursor.rowid}, edit stamp {cursor.edit_stamp}" if cursor else "none")
    )
    if status.server is not None:
        server = status.server
        rows.append(
            (
                "on the server",
                f"{server.conversation_count:,} conversations, {server.message_count:,} "
                f"messages, {server.contact_count:,} contacts",
            )
        )
    elif status.server_error:
        rows.append(("on the server", f"unknown: {status.server_error}"))
    rows.append(
        (
            "sender",
            f"dry-run: nothing is sent, each message goes to {status.sent_log}"
            if status.sent_log
            else "Messages (AppleScript), when the server allows this device to send",
        )
    )
    sends = [
        f"{_when(e.attempted_at)} {e.entry_id}: {e.state}"
        + (f" ({e.error})" if e.error else "")
        + ("" if e.reported_at else ", not reported yet")
        for e in status.recent_sends
    ]
    rows.append(("last sends", "\n".join(sends) if sends else "none"))
    if status.last_error:
        at, message = status.last_error
        rows.append(("last error", f"{_when(at)}: {message}"))
    else:
        rows.append(("last error", "none"))
    rows.append(("state", str(status.state_dir)))
    return rows


def sync_summary(report: SyncReport) -> str:
    """One sentence on what a sync did (the `sync` command prints it)."""
    counts = report.counts
    if counts.sent == 0 and report.contacts == 0:
        text = "Up to date: nothing new to send."
    else:
        text = (
            f"Synced {counts.sent:,} messages ({counts.inserted:,} new, {counts.updated:,} "
            f"updated, {counts.unchanged:,} unchanged) in {report.duration_s:.1f}s"
        )
        if report.contacts:
            text += f"; {report.contacts:,} contacts"
        text += "."
    if counts.not_sent:
        text += f" {counts.not_sent:,} messages in no chat were skipped."
    if counts.skipped:
        text += f" {counts.skipped:,} messages already stored under another conversation."
    if report.interrupted:
        text += " Stopped early; the next sync resumes."
    return text
