"""Device registration (RFC 8628 device flow): register, show the code, poll until approved."""

from __future__ import annotations

import asyncio
import hashlib
import platform
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from convassist.agent.client import (
    AgentClient,
    DeviceFlowError,
    Registration,
    RegistrationFailed,
    TokenGrant,
)
from convassist.agent.credentials import TokenStore, TokenStoreError, choose_store, open_store
from convassist.agent.settings import AgentSettings
from convassist.agent.state import DeviceRegistration, StateDB
from convassist.core.logging import get_logger

__all__ = ["device_description", "hardware_id", "register_device", "save_grant", "wait_for_token"]

log = get_logger(__name__)

SLOW_DOWN_STEP = 5.0  # RFC 8628 §3.5: add 5 seconds after `slow_down`
_FAILURES = {
    "expired_token": "The code expired before it was approved.",
    "access_denied": "The registration was cancelled after too many wrong codes.",
    "invalid_grant": "The server no longer accepts this code (used or withdrawn).",
}


def _machine_uuid() -> str | None:
    """The Mac's IOPlatformUUID, or Linux's machine-id; None if neither can be read."""
    if platform.system() == "Darwin":
        try:
            output = subprocess.run(
                ["/usr/sbin/ioreg", "-rd1", "-c", "IOPlatformExpertDevice"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            output = ""
        for line in output.splitlines():
            if "IOPlatformUUID" in line:
                return line.split("=")[-1].strip().strip('"')
    for candidate in (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id")):
        try:
            value = candidate.read_text().strip()
        except OSError:
            continue
        if value:
            return value
    return None


def hardware_id() -> str:
    """A stable id for this computer, hashed so the raw hardware UUID never leaves it."""
    raw = _machine_uuid() or f"node-{uuid.getnode():012x}"
    return hashlib.sha256(f"convassist-agent:{raw}".encode()).hexdigest()[:32]


def device_description() -> tuple[str, str, str]:
    """(default name, platform, OS version) of this computer."""
    name = platform.node().removesuffix(".local") or "Mac"
    if platform.system() == "Darwin":
        return name, "macOS", platform.mac_ver()[0] or platform.release()
    return name, platform.system() or "unknown", platform.release() or "unknown"


async def wait_for_token(
    client: AgentClient,
    registration: Registration,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> TokenGrant:
    """Poll `verify` every `interval` seconds (longer after `slow_down`) until approved."""
    interval = max(1.0, registration.interval)
    while True:
        remaining = (registration.expires_at - now()).total_seconds()
        if remaining <= 0:
            raise RegistrationFailed(
                f"{_FAILURES['expired_token']} Run `convassist agent register --server "
                f"{client.server_url}` again for a new code."
            )
        await sleep(min(interval, remaining))
        try:
            return await client.verify(registration.device_id, registration.code)
        except DeviceFlowError as exc:
            if exc.code == "authorization_pending":
                continue
            if exc.code == "slow_down":
                interval = max(interval + SLOW_DOWN_STEP, exc.interval or 0.0)
                log.info("agent.register.slow_down", interval=interval)
                continue
            reason = _FAILURES.get(exc.code, exc.message)
            raise RegistrationFailed(
                f"{reason} Run `convassist agent register --server {client.server_url}` again."
            ) from None


async def register_device(
    client: AgentClient,
    name: str,
    on_code: Callable[[Registration], None],
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> TokenGrant:
    """Register this computer, hand the code to `on_code`, and wait for the owner's approval."""
    _, system, os_version = device_description()
    registration = await client.register(
        name=name, hardware_id=hardware_id(), platform=system, os_version=os_version
    )
    log.info("agent.register.pending", device_id=registration.device_id)
    on_code(registration)
    grant = await wait_for_token(client, registration, sleep=sleep)
    log.info("agent.register.approved", device_id=grant.device_id)
    return grant


def save_grant(
    settings: AgentSettings, server_url: str, name: str, grant: TokenGrant
) -> TokenStore:
    """Store the token (keychain, else a 0600 file) and record the registration."""
    state_dir = settings.resolved_state_dir
    store = choose_store(settings.token_store, state_dir)
    store.set(server_url, grant.token)
    with StateDB.open(state_dir) as state:
        previous = state.registration()
        if previous is not None and (previous.token_store, previous.server_url) != (
            store.kind,
            server_url,
        ):
            try:
                open_store(previous.token_store, state_dir).delete(previous.server_url)
            except TokenStoreError:
                log.warning("agent.register.old_token_kept", store=previous.token_store)
        state.save_registration(
            DeviceRegistration(
                server_url=server_url,
                device_id=grant.device_id,
                device_name=name,
                token_store=store.kind,
                token_expires_at=grant.expires_at,
                registered_at=datetime.now(UTC),
            )
        )
    return store
