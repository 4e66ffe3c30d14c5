"""The web UI: server-rendered Jinja2 pages with HTMX, served by the API server.

`install(app)` adds the pages, the static files (`/static`, cached for a year: their URLs
carry a content hash) and HTML error pages for every path outside `/api`.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from convassist.server.web.errors import install_error_pages
from convassist.server.web.render import STATIC_DIR
from convassist.server.web.router import router

STATIC_CACHE = "public, max-age=31536000, immutable"


class CachedStaticFiles(StaticFiles):
    """Static files with a long cache lifetime (safe because their URLs are versioned)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            response.headers["Cache-Control"] = STATIC_CACHE
        return response


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", CachedStaticFiles(directory=STATIC_DIR), name="static")
    install_error_pages(app)
