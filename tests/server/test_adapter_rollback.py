"""Rolling back to the previous adapter through the API server, with a real ML service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from convassist.server.auth.session import CSRF_COOKIE, SESSION_COOKIE
from convassist.server.ml_client import MLClient
from tests.conftest import OWNER_PASSWORD
from tests.support.adapters import ml_service_with_adapters
from tests.support.openapi import assert_declared
from tests.support.services import ML_TOKEN

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

ADAPTERS = "/api/training/adapters"
ROLLBACK = "/api/training/adapters/rollback"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_rollback_serves_the_adapter_active_before(
    app: Any, client: httpx.AsyncClient, owner_client: httpx.AsyncClient, tmp_path: Path
) -> None:
    spec = (await client.get("/api/openapi.json")).json()
    with ml_service_with_adapters(tmp_path, [{}, {}]) as (ml_url, (first, second)):
        app.state.ml_client = MLClient(ml_url, timeout=60, token=ML_TOKEN)
        listed = await owner_client.get(ADAPTERS)
        assert_declared(spec, "get", ADAPTERS, listed)
        assert (listed.json()["active"], listed.json()["previous"]) == (None, None)

        nothing = await owner_client.post(ROLLBACK)
        assert nothing.status_code == 409, nothing.text
        assert nothing.json()["error"] == "no_previous_adapter"
        assert "no previous adapter" in nothing.json()["detail"]
        assert_declared(spec, "post", ROLLBACK, nothing)

        for adapter_id in (first, second):
            resp = await owner_client.post(f"{ADAPTERS}/{adapter_id}/activate")
            assert resp.status_code == 200, resp.text
        listed = await owner_client.get(ADAPTERS)
        assert_declared(spec, "get", ADAPTERS, listed)
        assert (listed.json()["active"], listed.json()["previous"]) == (second, first)

        # A signed-in browser session must send the CSRF token, as for every write.
        login = await client.post("/api/auth/login", json={"password": OWNER_PASSWORD})
        assert login.status_code == 200
        assert SESSION_COOKIE in client.cookies
        refused = await client.post(ROLLBACK)
        assert refused.status_code == 403 and refused.json()["error"] == "csrf_failed"
        assert (await owner_client.get(ADAPTERS)).json()["active"] == second

        csrf = client.cookies[CSRF_COOKIE]
        back = await client.post(ROLLBACK, headers={"X-CSRF-Token": csrf})
        assert back.status_code == 200, back.text
        assert_declared(spec, "post", ROLLBACK, back)
        assert back.json()["active"] == first
        assert back.json()["modelVersion"].endswith(f"+{first}")
        listed = await owner_client.get(ADAPTERS)
        assert (listed.json()["active"], listed.json()["previous"]) == (first, second)
