"""Device lifecycle with the device-authorization pattern of RFC 8628.

register → the agent shows a 6-digit code → the signed-in owner approves that code →
the agent's verify poll gets a 7-day JWT. Codes are stored as keyed hashes, expire after
10 minutes, and wrong guesses are limited both per device (verify) and globally (approve).
Registration needs no credential, so it is limited per client address.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.errors import AppError, BadRequest, Conflict, Gone, NotFound
from convassist.core.logging import get_logger
from convassist.core.security import hash_code, issue_token, new_verification_code
from convassist.server import throttle
from convassist.server.devices.schemas import RegisterRequest
from convassist.server.models import Device, utcnow
from convassist.server.outbox.service import REVOKED, SEND_OFF, abandon_device

log = get_logger(__name__)

CODE_LIFETIME = timedelta(minutes=10)
MAX_VERIFY_ATTEMPTS = 5
APPROVE_LIMIT = 10
APPROVE_WINDOW = timedelta(minutes=10)
APPROVE_THROTTLE_KEY = "device-approve"
REGISTER_LIMIT = 10
REGISTER_WINDOW = timedelta(hours=1)
REGISTER_THROTTLE_KIND = "device-register"


class DeviceFlowError(BadRequest):
    """RFC 8628 §3.5 token-endpoint errors: 400 with `error` naming the condition."""


async def register(
    session: AsyncSession, body: RegisterRequest, *, secret: str, client: str
) -> tuple[Device, str]:
    """Create the device (or refresh a known hardware id) with a fresh pending code.

    Re-registering changes nothing the owner sees until the owner approves the new code:
    the new name, platform and OS version wait in `pending_*`, the device keeps its state
    and its token. A stranger who knows a hardware id can start a registration but not
    finish it; the old token dies when the new code is approved and verified.
    """
    await throttle.count_attempt(
        session,
        f"{REGISTER_THROTTLE_KIND}:{client}",
        limit=REGISTER_LIMIT,
        window=REGISTER_WINDOW,
        what="device registrations",
    )
    device = (
        await session.execute(select(Device).where(Device.hardware_id == body.hardware_id))
    ).scalar_one_or_none()
    if device is None:
        device = Device(
            hardware_id=body.hardware_id,
            name=body.name,
            platform=body.platform,
            os_version=body.os_version,
            verified=False,
            is_active=True,
        )
        session.add(device)
    else:
        device.pending_name = body.name
        device.pending_platform = body.platform
        device.pending_os_version = body.os_version
    code = await _unique_code(session, secret, device)
    device.code_hash = hash_code(secret, code)
    device.code_expires_at = utcnow() + CODE_LIFETIME
    device.code_attempts = 0
    device.approved_at = None
    device.last_poll_at = None
    await session.flush()
    log.info("device_registered", device_id=str(device.id))
    return device, code


async def _unique_code(session: AsyncSession, secret: str, device: Device) -> str:
    """A code no other pending device holds; stale expired holders release theirs."""
    now = utcnow()
    for _ in range(20):
        code = new_verification_code()
        holder = (
            await session.execute(select(Device).where(Device.code_hash == hash_code(secret, code)))
        ).scalar_one_or_none()
        if holder is None or holder is device:
            return code
        if holder.code_expires_at is None or holder.code_expires_at <= now:
            holder.code_hash = None
            await session.flush()
            return code
    raise AppError("Could not allocate a verification code; try again.", status_code=503)


async def approve(session: AsyncSession, code: str, *, secret: str) -> Device:
    """The owner approves the device showing `code`. Wrong codes count toward a limit."""
    await throttle.ensure_allowed(
        session,
        APPROVE_THROTTLE_KEY,
        limit=APPROVE_LIMIT,
        window=APPROVE_WINDOW,
        what="failed codes",
    )
    device = (
        await session.execute(select(Device).where(Device.code_hash == hash_code(secret, code)))
    ).scalar_one_or_none()
    if device is None:
        await throttle.record_failure(session, APPROVE_THROTTLE_KEY, window=APPROVE_WINDOW)
        raise BadRequest(
            "No device is waiting with this code. Check the code shown by the agent.",
            code="invalid_code",
            keep_changes=True,
        )
    if device.code_expires_at is None or device.code_expires_at <= utcnow():
        raise Gone(
            "This code has expired. Run `convassist agent register` again for a new one.",
            code="code_expired",
        )
    if device.approved_at is not None:
        raise Conflict("This device is already approved.", code="already_approved")
    device.approved_at = utcnow()
    if device.pending_name is not None:
        device.name = device.pending_name
        device.platform = device.pending_platform or device.platform
        device.os_version = device.pending_os_version or device.os_version
    device.pending_name = device.pending_platform = device.pending_os_version = None
    log.info("device_approved", device_id=str(device.id))
    return device


async def verify(
    session: AsyncSession,
    device_id: uuid.UUID,
    code: str,
    *,
    secret: str,
    token_lifetime: timedelta,
    poll_interval: float,
) -> tuple[Device, str, datetime]:
    """The agent's poll: a token once the owner approved, RFC 8628 errors until then.

    The device's row is locked for the check, so concurrent wrong codes are counted one at a
    time and at most `MAX_VERIFY_ATTEMPTS` are compared."""
    device = await session.get(Device, device_id, with_for_update=True, populate_existing=True)
    if device is None:
        raise NotFound("Unknown device; register it first.", code="unknown_device")
    now = utcnow()
    if device.code_hash is None:
        raise DeviceFlowError(
            "This code has already been used or withdrawn; register again.", code="invalid_grant"
        )
    if device.code_hash != hash_code(secret, code):
        device.code_attempts += 1
        if device.code_attempts >= MAX_VERIFY_ATTEMPTS:
            device.code_hash = None
            raise DeviceFlowError(
                "Too many wrong codes; the registration was cancelled. Register again.",
                code="access_denied",
                keep_changes=True,
            )
        raise DeviceFlowError(
            "Wrong code for this device.", code="invalid_grant", keep_changes=True
        )
    if device.code_expires_at is None or device.code_expires_at <= now:
        raise DeviceFlowError(
            "The code expired before it was approved; register again.", code="expired_token"
        )
    if device.approved_at is None:
        too_fast = (
            device.last_poll_at is not None
            and (now - device.last_poll_at).total_seconds() < poll_interval
        )
        device.last_poll_at = now
        if too_fast:
            raise DeviceFlowError(
                f"Polling too fast; wait {poll_interval:g} seconds between polls.",
                code="slow_down",
                keep_changes=True,
                interval=poll_interval,
            )
        raise DeviceFlowError(
            "Waiting for the owner to enter the code on the server's Devices page.",
            code="authorization_pending",
            keep_changes=True,
        )
    device.token_generation += 1
    device.verified = True
    device.is_active = True
    device.deactivated_at = None
    device.code_hash = None
    device.code_expires_at = None
    device.approved_at = None
    token, expires = issue_token(
        secret,
        subject=str(device.id),
        kind="device",
        generation=device.token_generation,
        lifetime=token_lifetime,
    )
    log.info("device_verified", device_id=str(device.id))
    return device, token, expires


async def list_devices(session: AsyncSession) -> list[Device]:
    result = await session.execute(select(Device).order_by(Device.created_at.desc()))
    return list(result.scalars())


async def deactivate(session: AsyncSession, device_id: uuid.UUID) -> Device:
    """Revoke the device: its token stops working on the next request."""
    device = await session.get(Device, device_id)
    if device is None:
        raise NotFound("No such device.")
    if device.is_active:
        device.is_active = False
        device.token_generation += 1
        device.deactivated_at = utcnow()
    device.code_hash = None
    device.code_expires_at = None
    device.approved_at = None
    device.pending_name = device.pending_platform = device.pending_os_version = None
    await session.flush()
    await abandon_device(session, device.id, reason=REVOKED)
    log.info("device_deactivated", device_id=str(device.id))
    return device


async def set_may_send(session: AsyncSession, device_id: uuid.UUID, may_send: bool) -> Device:
    """Allow or stop the device's sending; what it was sending goes to no one else."""
    device = await session.get(Device, device_id, with_for_update=True)
    if device is None:
        raise NotFound("No such device.")
    if may_send and not (device.verified and device.is_active):
        raise Conflict("Only an active device can send replies.", code="device_inactive")
    device.may_send = may_send
    await session.flush()
    if not may_send:
        await abandon_device(session, device.id, reason=SEND_OFF)
    log.info("device_may_send", device_id=str(device.id), may_send=may_send)
    return device
