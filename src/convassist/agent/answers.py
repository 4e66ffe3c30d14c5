"""Reading the server's HTTP answers: the API's error shape, `Retry-After`, and, for an answer
that is not the API's, a short description of what answered (never its raw body)."""

from __future__ import annotations

import email.utils
import html
import re
from datetime import UTC, datetime
from typing import Any

import httpx

from convassist import ML_SERVICE_ID

__all__ = ["error_body", "is_ml_service", "looks_like", "not_a_server", "retry_after"]

_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_MAX_TITLE = 80


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def error_body(response: httpx.Response) -> tuple[str, str, dict[str, Any]]:
    """(`error`, `detail`, body) of the API's error shape; ("", "", {}) for any other answer."""
    body = _json(response)
    if not isinstance(body, dict):
        return "", "", {}
    return str(body.get("error") or ""), str(body.get("detail") or ""), body


def _printable(text: str) -> str:
    """One line of printable characters (a foreign page's title cannot move the cursor)."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def is_ml_service(response: httpx.Response) -> bool:
    """Is this the ML service's health answer (it names itself)?"""
    body = _json(response)
    return isinstance(body, dict) and body.get("service") == ML_SERVICE_ID


def looks_like(response: httpx.Response) -> str:
    """What answered, in a few words: the ML service, a web page and its title, or the kind."""
    body = _json(response)
    if is_ml_service(response):
        return "the Conversation Assistant ML service, which only the server talks to"
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("text/html", "application/xhtml+xml"):
        match = _TITLE.search(response.text)
        title = _printable(html.unescape(match.group(1))) if match else ""
        if title:
            short = title if len(title) <= _MAX_TITLE else title[: _MAX_TITLE - 1] + "…"
            return f"a web page titled “{short}”"
        return "a web page"
    what = "JSON" if body is not None else (kind or "no content type")
    server = response.headers.get("server")
    by = f" ({_printable(server)[:40]})" if server else ""
    path = response.request.url.path
    return f"another web service{by} that answered {path} with HTTP {response.status_code} ({what})"


def not_a_server(url: str, what: str) -> str:
    """The message for a URL whose answers are not the Conversation Assistant API's."""
    return (
        f"{url} answered, but it is not a Conversation Assistant server (it looks like {what}). "
        "Use the URL of the Conversation Assistant server itself: the address `convassist up` "
        "or `convassist server` listens on (port 3100 by default), without a path."
    )
