"""Rendering pages and HTMX fragments: one Jinja2 environment, versioned static URLs.

Every HTML response carries a strict Content-Security-Policy (scripts, styles and images
only from this server; no inline script, no eval), so a page can make no request anywhere
else. Static files are served with a one-year `immutable` cache: their URLs carry a hash of
their content (`/static/app.css?v=…`), so a new release is fetched at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from convassist.server.auth.cookies import set_csrf_cookie
from convassist.server.auth.session import CSRF_COOKIE, SESSION_COOKIE
from convassist.server.web import formatting
from convassist.server.web.deps import Viewer, csrf_for
from convassist.server.web.thread import initials, people

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
STATIC_CACHE = "public, max-age=31536000, immutable"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class CachedStaticFiles(StaticFiles):
    """Static files with a long cache lifetime (safe because their URLs are versioned)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            response.headers["Cache-Control"] = STATIC_CACHE
        return response


@cache
def static_url(name: str) -> str:
    """`/static/<name>?v=<content hash>` (computed once per file and process)."""
    digest = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]
    return f"/static/{name}?v={digest}"


@pass_context
def _partial(context: Context, name: str) -> Markup:
    """Like `{% include %}`, but rendered in one piece: a long partial (a page of messages)
    then reaches the page as one string instead of thousands of chunks, which is faster."""
    return Markup(context.environment.get_template(name).render(context.get_all()))  # noqa: S704


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html", "svg"], default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.globals.update(
        static=static_url,
        iso=formatting.iso,
        count=formatting.count,
        percent=formatting.percent,
        duration=formatting.duration,
        partial=_partial,
        people=people,
        initials=initials,
    )
    env.filters["tojson_attr"] = lambda value: json.dumps(value).replace("'", "\\u0027")
    return env


ENV = _environment()


def render_signed_out(
    request: Request, template: str, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A page for a visitor who is not signed in (sign-in, first-run setup), with a CSRF token
    for its form."""
    token, fresh = csrf_for(request)
    viewer = Viewer(None, token, fresh, formatting.Clock.for_request(request))
    return render(request, viewer, template, status_code=status_code, **context)


def render(
    request: Request,
    viewer: Viewer | None,
    template: str,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """A page or fragment for `viewer`; None for error pages, which show the navigation
    when the browser holds a session (at worst a stale one: its links lead to sign-in)."""
    if viewer is None:
        csrf = request.cookies.get(CSRF_COOKIE, "")
        signed_in = SESSION_COOKIE in request.cookies
    else:
        csrf, signed_in = viewer.csrf_token, viewer.owner is not None
    body = ENV.get_template(template).render(
        signed_in=signed_in,
        csrf_token=csrf,
        clock=viewer.clock if viewer else formatting.Clock.for_request(request),
        **context,
    )
    response = HTMLResponse(body, status_code=status_code, headers={**SECURITY_HEADERS})
    if headers:
        response.headers.update(headers)
    if viewer is not None and viewer.fresh_csrf:
        set_csrf_cookie(response, viewer.csrf_token, request.app.state.settings)
    return response


def triggers(*events: str, toast: str | None = None, kind: str = "success") -> dict[str, str]:
    """`HX-Trigger` for page events, plus a toast (`success`, `info` or `error`) if given.

    static/app.js shows the toast; elements listening with `hx-trigger="<event> from:body"`
    refresh themselves.
    """
    payload: dict[str, Any] = dict.fromkeys(events, True)
    if toast:
        payload["toast"] = {"message": toast, "kind": kind}
    return {"HX-Trigger": json.dumps(payload)}
