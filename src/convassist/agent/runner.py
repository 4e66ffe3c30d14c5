"""One complete sync as the commands run it: registration, token, lock, chat.db, engine.

Failures are `AgentError`s with a message for the user; each is also recorded as the state's
last error (shown by `agent status`) without touching the cursor or the counts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from convassist.agent.chatdb import ChatDB
from convassist.agent.client import AgentClient, NotRegistered, normalize_server_url
from convassist.agent.contacts import addressbook_paths, load_contacts
from convassist.agent.credentials import open_store
from convassist.agent.errors import AgentError, ChatDBPermissionDenied
from convassist.agent.fda import FullDiskAccessMissing
from convassist.agent.settings import AgentSettings
from convassist.agent.state import DeviceRegistration, StateDB, SyncBusy, sync_lock
from convassist.agent.sync import Progress, SyncEngine, SyncReport

__all__ = ["client_for", "load_session", "open_chat_db", "sync_once"]


def client_for(
    settings: AgentSettings,
    server_url: str,
    token: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AgentClient:
    return AgentClient(
        server_url,
        token,
        timeout=settings.http_timeout,
        retries=settings.retries,
        backoff=settings.retry_backoff,
        transport=transport,
    )


def _wanted_server(settings: AgentSettings) -> str | None:
    return normalize_server_url(settings.server_url) if settings.server_url else None


def load_session(settings: AgentSettings, state: StateDB | None) -> tuple[DeviceRegistration, str]:
    """The registration and its token, or `NotRegistered` saying what to do."""
    wanted = _wanted_server(settings)
    registration = state.registration() if state is not None else None
    if registration is None:
        raise NotRegistered("this computer is not registered with a server yet", wanted)
    if wanted and wanted != registration.server_url:
        raise NotRegistered(
            f"this computer is registered with {registration.server_url}, not {wanted}", wanted
        )
    store = open_store(registration.token_store, settings.resolved_state_dir)
    token = store.get(registration.server_url)
    if not token:
        raise NotRegistered(f"no device token was found in {store.describe()}", wanted)
    expires = registration.token_expires_at
    if expires is not None and expires <= datetime.now(UTC):
        raise NotRegistered(
            f"this device's token expired on {expires:%Y-%m-%d %H:%M} UTC", registration.server_url
        )
    return registration, token


def open_chat_db(path: Path) -> ChatDB:
    """Open chat.db; on macOS a permission error names the program that needs Full Disk Access."""
    try:
        return ChatDB.open(path)
    except ChatDBPermissionDenied:
        if sys.platform == "darwin":
            raise FullDiskAccessMissing(path) from None
        raise


async def sync_once(
    settings: AgentSettings,
    *,
    db_path: Path | None = None,
    full: bool = False,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> SyncReport:
    """Sync chat.db (default: the configured one) once; see the module docstring."""
    state_dir = settings.resolved_state_dir
    state = StateDB.open_existing(state_dir)
    if state is None:
        raise NotRegistered(
            "this computer is not registered with a server yet", _wanted_server(settings)
        )
    path = (db_path or settings.db_path).expanduser().absolute()
    with state:
        try:
            registration, token = load_session(settings, state)
            with sync_lock(state_dir), open_chat_db(path) as db:
                if full:
                    state.restart(path)
                book = load_contacts(
                    addressbook_paths(settings.addressbook_dir),
                    default_country_code=settings.default_country_code,
                )
                async with client_for(settings, registration.server_url, token, transport) as c:
                    engine = SyncEngine(
                        c,
                        state,
                        db_path=path,
                        batch_size=settings.batch_size,
                        concurrency=settings.concurrency,
                        contacts=book,
                        progress=progress,
                        should_stop=should_stop,
                    )
                    report = await engine.run(db)
        except AgentError as exc:
            if not isinstance(exc, SyncBusy):
                state.record_error(exc.message)
            raise
        if not report.interrupted:
            state.record_success(report.counts, report.contacts, report.duration_s)
        return report
