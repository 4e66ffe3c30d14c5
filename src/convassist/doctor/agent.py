"""Checks of the sync agent's side, on the Mac that has Messages (skipped elsewhere)."""

from __future__ import annotations

import asyncio

from convassist.agent.errors import AgentError
from convassist.doctor.result import Context, Outcome, fail, ok, skip, warn

MACOS = "darwin"
SYSTEMS = {"linux": "Linux", "win32": "Windows"}
SERVER_FIX = (
    "Start the server (`convassist up` on the machine that runs it), or register with the "
    "right one: `convassist agent register --server URL`."
)


def _not_here(context: Context) -> Outcome | None:
    if context.platform == MACOS:
        return None
    system = SYSTEMS.get(context.platform, context.platform)
    return skip(f"not applicable on {system}: the agent runs on the Mac that has Messages")


def check_chat_db(context: Context) -> Outcome:
    """chat.db is readable (on macOS: Full Disk Access is granted)."""
    from convassist.agent.fda import FullDiskAccessMissing
    from convassist.agent.runner import open_chat_db

    if (skipped := _not_here(context)) is not None:
        return skipped
    path = context.agent.db_path.expanduser().absolute()
    try:
        with open_chat_db(path):
            pass
    except FullDiskAccessMissing as exc:
        return fail(f"no Full Disk Access to read {path}", exc.message)
    except AgentError as exc:
        return fail(f"cannot read {path}", exc.message)
    return ok(f"{path} is readable (Full Disk Access granted)")


def check_agent_token(context: Context) -> Outcome:
    """The agent is registered and its device token is in its store."""
    from convassist.agent.runner import load_session
    from convassist.agent.state import StateDB

    if (skipped := _not_here(context)) is not None:
        return skipped
    settings = context.agent
    state = StateDB.open_existing(settings.resolved_state_dir)
    try:
        registration, _ = load_session(settings, state)
    except AgentError as exc:
        return warn("this Mac has no usable device token", exc.message)
    finally:
        if state is not None:
            state.close()
    return ok(f"{registration.device_name} is registered with {registration.server_url}")


def check_agent_server(context: Context) -> Outcome:
    """The agent's server is really a Conversation Assistant server, and takes the token."""
    from convassist.agent.identity import identify_server
    from convassist.agent.status import collect_status

    if (skipped := _not_here(context)) is not None:
        return skipped
    settings = context.agent
    status = asyncio.run(collect_status(settings, online=False))
    if status.registration is None:
        return skip("not registered (see Agent: token)")
    url = status.registration.server_url
    try:
        identity = asyncio.run(identify_server(url, http_timeout=settings.http_timeout))
    except AgentError as exc:
        return fail(exc.message, SERVER_FIX)
    online = asyncio.run(collect_status(settings))
    if online.server is None:
        return fail(f"{url} refused this Mac: {online.server_error}", SERVER_FIX)
    return ok(
        f"{url} is a Conversation Assistant server ({identity.version}) and knows this Mac "
        f"({online.server.message_count:,} messages)"
    )
