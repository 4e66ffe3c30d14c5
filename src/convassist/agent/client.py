"""HTTP client for the server's device and sync API, with retries.

Connection errors, timeouts, 5xx and 429 are retried with exponential backoff and full jitter
(`Retry-After` is honoured when the server sends it); other 4xx answers are not retried. Every
sync request is an idempotent upsert, so a retry after a lost response never duplicates data.
A 401 whose `error` says the token expired or was revoked becomes `NotRegistered`, which tells
the user to register again.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from convassist import __version__
from convassist.agent.answers import error_body, looks_like, not_a_server, retry_after
from convassist.agent.errors import AgentError
from convassist.agent.send.base import OutboxBatch, OutboxItem
from convassist.core.logging import get_logger

__all__ = [
    "AgentClient",
    "ContactsResult",
    "DeviceFlowError",
    "MessagesResult",
    "NotRegistered",
    "Registration",
    "RegistrationFailed",
    "ServerError",
    "ServerStatus",
    "ServerUnavailable",
    "TokenGrant",
    "normalize_server_url",
]

log = get_logger(__name__)

MAX_BACKOFF = 60.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TOKEN_ERRORS = frozenset(
    {"token_expired", "token_revoked", "device_revoked", "invalid_token", "not_authenticated"}
)
# RFC 8628 §3.5 answers of the token endpoint (`verify`).
DEVICE_FLOW_ERRORS = frozenset(
    {"authorization_pending", "slow_down", "expired_token", "invalid_grant", "access_denied"}
)
_REASONS = {
    "token_expired": "this device's token has expired",
    "token_revoked": "this device's token was revoked (the device registered again elsewhere)",
    "device_revoked": "this device was deactivated on the server",
    "invalid_token": "the server does not accept this device's token",
    "not_authenticated": "no device token was sent",
}


class NotRegistered(AgentError):
    """No usable device token: the user has to run `convassist agent register` (again)."""

    exit_code = 78  # EX_CONFIG

    def __init__(self, reason: str, server_url: str | None = None) -> None:
        target = f" --server {server_url}" if server_url else " --server URL"
        super().__init__(
            f"{reason[:1].upper()}{reason[1:]}. Run `convassist agent register{target}` again "
            "and approve the new code on the server's Devices page."
        )


class ServerUnavailable(AgentError):
    """The server could not be reached or kept failing; nothing was lost."""

    exit_code = 69  # EX_UNAVAILABLE


class ServerError(AgentError):
    """The server refused a request in a way a retry cannot fix."""

    exit_code = 76  # EX_PROTOCOL

    def __init__(self, message: str, *, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RegistrationFailed(AgentError):
    """The device flow ended without a token (code expired, denied, or withdrawn)."""

    exit_code = 1


class DeviceFlowError(ServerError):
    """An RFC 8628 answer of `verify` (`authorization_pending`, `slow_down`, …)."""

    def __init__(self, message: str, *, code: str, interval: float | None = None) -> None:
        super().__init__(message, status=400, code=code)
        self.interval = interval


@dataclass(frozen=True, slots=True)
class Registration:
    device_id: str
    code: str
    expires_at: datetime
    interval: float


@dataclass(frozen=True, slots=True)
class TokenGrant:
    device_id: str
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class MessagesResult:
    inserted: int
    updated: int
    unchanged: int
    skipped: int


@dataclass(frozen=True, slots=True)
class ContactsResult:
    inserted: int
    updated: int
    unchanged: int


@dataclass(frozen=True, slots=True)
class ServerStatus:
    device_id: str
    last_sync_at: datetime | None
    messages_synced_by_device: int
    conversation_count: int
    message_count: int
    contact_count: int
    max_batch: int
    max_contacts: int
    max_body_bytes: int


class _Body(dict[str, Any]):
    """A JSON answer; a missing field is a `ServerError`, not a `KeyError`."""

    def __init__(self, server_url: str, data: dict[str, Any]) -> None:
        super().__init__(data)
        self.server_url = server_url

    def __missing__(self, key: str) -> Any:
        raise ServerError(
            f"Unexpected answer from {self.server_url} (no {key!r}): is it a Conversation "
            "Assistant server of a compatible version?"
        )


def normalize_server_url(url: str) -> str:
    """`https://host[:port][/prefix]` without a trailing slash; refuses anything else."""
    value = url.strip().rstrip("/")
    parsed = httpx.URL(value) if "://" in value else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise AgentError(f"Not a server URL: {url!r}. Use e.g. https://assistant.example.com")
    if value.endswith("/api"):
        value = value[: -len("/api")]
    return value


def _parse_time(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _optional_time(value: Any) -> datetime | None:
    return _parse_time(value) if value else None


class AgentClient:
    """Typed calls to `/api/devices/*` and `/api/sync/*` (use as an async context manager)."""

    def __init__(
        self,
        server_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.server_url = normalize_server_url(server_url)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        headers = {"User-Agent": f"convassist-agent/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(
            base_url=f"{self.server_url}/api",
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
        )

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- device flow ---------------------------------------------------------------------

    async def register(
        self, *, name: str, hardware_id: str, platform: str, os_version: str
    ) -> Registration:
        body = await self._request(
            "POST",
            "/devices/register",
            json={
                "name": name,
                "hardwareId": hardware_id,
                "platform": platform,
                "osVersion": os_version,
            },
        )
        return Registration(
            device_id=str(body["deviceId"]),
            code=str(body["code"]),
            expires_at=_parse_time(body["expiresAt"]),
            interval=float(body.get("interval") or 5),
        )

    async def verify(self, device_id: str, code: str) -> TokenGrant:
        """The token once approved; `DeviceFlowError` (pending, slow_down, …) until then."""
        body = await self._request(
            "POST", "/devices/verify", json={"deviceId": device_id, "code": code}
        )
        return TokenGrant(
            device_id=str(body["deviceId"]),
            token=str(body["token"]),
            expires_at=_parse_time(body["expiresAt"]),
        )

    # -- sync ----------------------------------------------------------------------------

    async def status(self) -> ServerStatus:
        body = await self._request("GET", "/sync/status")
        return ServerStatus(
            device_id=str(body["deviceId"]),
            last_sync_at=_optional_time(body.get("lastSyncAt")),
            messages_synced_by_device=int(body.get("messagesSyncedByDevice") or 0),
            conversation_count=int(body.get("conversationCount") or 0),
            message_count=int(body.get("messageCount") or 0),
            contact_count=int(body.get("contactCount") or 0),
            max_batch=int(body.get("maxBatch") or 1000),
            max_contacts=int(body.get("maxContacts") or 5000),
            max_body_bytes=int(body.get("maxBodyBytes") or 8 * 1024 * 1024),
        )

    async def sync_messages(self, payload: Mapping[str, Any]) -> MessagesResult:
        """Upsert one conversation batch (`SyncMessagesRequest`, camelCase JSON)."""
        body = await self._request("POST", "/sync/messages", json=payload)
        return MessagesResult(
            inserted=int(body["inserted"]),
            updated=int(body["updated"]),
            unchanged=int(body["unchanged"]),
            skipped=int(body["skipped"]),
        )

    async def sync_contacts(self, contacts: Sequence[Mapping[str, Any]]) -> ContactsResult:
        body = await self._request("POST", "/sync/contacts", json={"contacts": list(contacts)})
        return ContactsResult(
            inserted=int(body["inserted"]),
            updated=int(body["updated"]),
            unchanged=int(body["unchanged"]),
        )

    # -- outbox ----------------------------------------------------------------------------

    async def fetch_outbox(self, wait: float = 0.0) -> OutboxBatch:
        """Claim this device's messages to send, waiting up to `wait` s for one (long poll);
        a device without send permission gets `ServerError` 403 `send_not_allowed`."""
        timeout = httpx.Timeout(self.timeout + wait, connect=min(self.timeout, 10.0))
        body = await self._request("GET", "/sync/outbox", params={"wait": wait}, timeout=timeout)
        return OutboxBatch(
            items=[OutboxItem.from_json(_Body(self.server_url, raw)) for raw in body["items"]],
            poll_after_seconds=float(body.get("pollAfterSeconds") or 5),
        )

    async def report_outbox_result(
        self, entry_id: str, status: str, error: str | None, message_guid: str | None
    ) -> str:
        """Report `sent` or `failed` for a claimed entry; returns the entry's status."""
        payload = {"status": status, "error": error, "messageGuid": message_guid}
        body = await self._request(
            "POST",
            f"/sync/outbox/{entry_id}/result",
            json={k: v for k, v in payload.items() if v is not None},
        )
        return str(body["status"])

    # -- plumbing ------------------------------------------------------------------------

    def _body(self, response: httpx.Response) -> _Body:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ServerError(
                not_a_server(self.server_url, looks_like(response)), status=response.status_code
            )
        return _Body(self.server_url, data)

    async def _request(self, method: str, path: str, **kwargs: Any) -> _Body:
        """Send with retries; the JSON body of a 2xx answer, else a typed `AgentError`."""
        request_id = uuid.uuid4().hex
        attempt = 0
        while True:
            started = time.monotonic()
            wait_hint: float | None = None
            try:
                response = await self._http.request(
                    method, path, headers={"X-Request-ID": request_id}, **kwargs
                )
            except httpx.TransportError as exc:
                problem = f"cannot reach {self.server_url} ({type(exc).__name__})"
            else:
                if response.is_success:
                    log.debug(
                        "agent.http",
                        method=method,
                        path=path,
                        status=response.status_code,
                        ms=round((time.monotonic() - started) * 1000, 1),
                        attempt=attempt,
                    )
                    return self._body(response)
                if response.status_code not in RETRY_STATUSES:
                    raise self._refusal(response)
                problem = f"{self.server_url} answered {response.status_code}"
                wait_hint = retry_after(response)
            if attempt >= self.retries:
                resumes = " Nothing was lost; the next sync resumes where this one stopped."
                raise ServerUnavailable(
                    f"Gave up after {attempt + 1} attempts: {problem}."
                    + (resumes if path.startswith("/sync/") else "")
                )
            delay = self._delay(attempt, wait_hint)
            # Info: expected on a flaky network (the background agent's log shows them); an
            # interactive command shows only the final answer.
            log.info("agent.retry", method=method, path=path, attempt=attempt + 1, wait_s=delay)
            attempt += 1
            await self._sleep(delay)

    def _delay(self, attempt: int, hint: float | None) -> float:
        """Full-jitter exponential backoff; a server's `Retry-After` is a lower bound."""
        ceiling = min(MAX_BACKOFF, self.backoff * 2**attempt)
        delay = random.uniform(ceiling / 2, ceiling)
        return max(delay, min(hint, MAX_BACKOFF * 5)) if hint is not None else delay

    def _refusal(self, response: httpx.Response) -> AgentError:
        code, detail, body = error_body(response)
        status = response.status_code
        if not body:  # not the API's error shape: say what answered, never its HTML
            return ServerError(not_a_server(self.server_url, looks_like(response)), status=status)
        if status == 401 and (code in TOKEN_ERRORS or not code):
            reason = _REASONS.get(code, "the server refused this device's token")
            return NotRegistered(reason, self.server_url)
        if status == 400 and code in DEVICE_FLOW_ERRORS:
            interval = body.get("interval")
            return DeviceFlowError(
                detail, code=code, interval=float(interval) if interval else None
            )
        message = detail or response.reason_phrase or "request refused"
        return ServerError(
            f"The server refused the request ({status} {code or 'error'}): {message}",
            status=status,
            code=code,
        )
