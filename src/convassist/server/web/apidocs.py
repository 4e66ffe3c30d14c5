"""`/api/docs`: Swagger UI from the assets the `fastapi-offline` package ships, never a CDN.

The assets are served under `/api/docs/assets-<package version>/` (versioned, so cached for
a year); the page starts Swagger UI from `static/api-docs.js` and carries the UI's strict
CSP, so it works offline and can reach nothing but this server. ReDoc is not served.
"""

from __future__ import annotations

from importlib import metadata, resources
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse

from convassist.server.web.render import ENV, SECURITY_HEADERS, CachedStaticFiles

ASSETS_PACKAGE = "fastapi_offline"
DOCS_URL = "/api/docs"


def install_api_docs(app: FastAPI, *, openapi_url: str) -> None:
    """Serve the docs page and its assets (the app is made with `docs_url=None`)."""
    assets_dir = Path(str(resources.files(ASSETS_PACKAGE) / "static"))
    assets = f"{DOCS_URL}/assets-{metadata.version(ASSETS_PACKAGE)}"
    app.mount(assets, CachedStaticFiles(directory=assets_dir), name="swagger-ui")

    @app.get(DOCS_URL, include_in_schema=False)
    async def api_docs(_: Request) -> HTMLResponse:
        body = ENV.get_template("api_docs.html").render(
            title=app.title, assets=assets, openapi_url=openapi_url
        )
        return HTMLResponse(body, headers={**SECURITY_HEADERS})
