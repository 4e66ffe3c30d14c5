"""`/api/docs` is served from the installed package: only this server's URLs, all answering."""

from __future__ import annotations

import re

import httpx

from convassist.server.web.render import SECURITY_HEADERS

ATTRIBUTE_URL = re.compile(r'\b(?:src|href|data-openapi-url)="([^"]*)"')


async def test_the_docs_page_uses_only_local_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/api/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == SECURITY_HEADERS["Content-Security-Policy"]
    assert "<script>" not in page.text  # the CSP allows no inline script
    urls = ATTRIBUTE_URL.findall(page.text)
    assert len(urls) >= 4, urls  # favicon, stylesheet, Swagger UI, its start-up script, spec
    assert "/api/openapi.json" in urls
    assert not re.search(r"https?://|//[a-z]", page.text), "a URL that leaves this server"
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
    script = next(u for u in urls if u.endswith("swagger-ui-bundle.js"))
    assert "max-age=31536000" in (await client.get(script)).headers["cache-control"]


async def test_redoc_is_not_served(client: httpx.AsyncClient) -> None:
    assert (await client.get("/redoc")).status_code == 404
    assert (await client.get("/api/redoc")).status_code == 404
