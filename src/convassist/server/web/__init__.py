"""The web UI: server-rendered Jinja2 pages with HTMX, served by the API server.

`install(app)` adds the pages, the static files (`/static`, cached for a year: their URLs
carry a content hash), the API docs page (`/api/docs`, see apidocs.py) and HTML error pages
for every path outside `/api`.
"""

from __future__ import annotations

from fastapi import FastAPI

from convassist.server.web.apidocs import install_api_docs
from convassist.server.web.errors import install_error_pages
from convassist.server.web.render import STATIC_DIR, CachedStaticFiles
from convassist.server.web.router import router


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", CachedStaticFiles(directory=STATIC_DIR), name="static")
    if app.openapi_url:
        install_api_docs(app, openapi_url=app.openapi_url)
    install_error_pages(app)
