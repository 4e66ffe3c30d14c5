"""Is a URL a Conversation Assistant server? One GET of its `/api/health`, without retries.

`identify_server` is what `agent register` asks before anything else (and what `convassist
doctor` reuses): a closed port fails at once with what to check, and anything that answers
but is not the API server (the ML service, a router's admin page, another app) is named
instead of being shown as raw HTML or a confusing refusal later. `ensure_ready` then refuses
a server that reports itself degraded (its database down).
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

import httpx

from convassist import SERVER_ID, __version__
from convassist.agent.answers import is_ml_service, looks_like, not_a_server
from convassist.agent.client import ServerError, ServerUnavailable, normalize_server_url

__all__ = ["NotAServer", "ServerIdentity", "ensure_ready", "identify_server"]

IDENTIFY_TIMEOUT = 10.0


class NotAServer(ServerError):
    """The URL answered, but not as a Conversation Assistant server."""


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    url: str  # normalized
    version: str
    status: str  # "ok", else "degraded"
    down: tuple[str, ...] = ()  # what the server reports down (its `checks`), e.g. "database"


def ensure_ready(server: ServerIdentity) -> None:
    """`ServerUnavailable` unless the server says it is ok (a down database answers 503)."""
    if server.status != "ok":
        what = f"{', '.join(server.down)} down" if server.down else server.status
        raise ServerUnavailable(
            f"{server.url} is a Conversation Assistant server, but it is not ready ({what}). "
            "Check its logs, then try again."
        )


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception, its causes and, for groups (happy eyeballs), their members."""
    found: list[BaseException] = []
    todo = [exc]
    while todo and len(found) < 50:
        current = todo.pop()
        found.append(current)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return found


def _reason(exc: httpx.TransportError) -> str:
    """A few words for a failed connection: refused, unknown host, or the error's kind."""
    causes = _causes(exc)
    if any(isinstance(c, socket.gaierror) for c in causes):
        return "unknown host name"
    if any(isinstance(c, OSError) and c.errno == errno.ECONNREFUSED for c in causes):
        return "connection refused"
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    return type(exc).__name__


def _unreachable(url: str, reason: str) -> ServerUnavailable:
    return ServerUnavailable(
        f"Nothing answered at {url} ({reason}). Check that the server is running there "
        "(`convassist up`, or `convassist server`), that the host name and port are right "
        "(the server listens on port 3100 by default) and that no firewall blocks the port."
    )


async def identify_server(
    url: str,
    *,
    http_timeout: float = IDENTIFY_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ServerIdentity:
    """The server at `url`; `ServerUnavailable` if nothing answers, `NotAServer` if another
    kind of service does (`AgentError`s with the message for the user)."""
    base = normalize_server_url(url)
    async with httpx.AsyncClient(
        headers={"User-Agent": f"convassist-agent/{__version__}"},
        timeout=http_timeout,
        transport=transport,
    ) as http:
        try:
            response = await http.get(f"{base}/api/health")
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and body.get("service") == SERVER_ID:
                checks = body.get("checks")
                down = (
                    [k for k, v in checks.items() if v != "up"] if isinstance(checks, dict) else []
                )
                return ServerIdentity(
                    base, str(body.get("version")), str(body.get("status")), tuple(down)
                )
            if response.status_code >= 400:  # the ML service names itself on its own health
                health = await http.get(f"{base}/health")
                response = health if is_ml_service(health) else response
        except httpx.TransportError as exc:
            raise _unreachable(base, _reason(exc)) from None
    raise NotAServer(not_a_server(base, looks_like(response)), status=response.status_code)
