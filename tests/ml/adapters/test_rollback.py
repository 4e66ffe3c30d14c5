"""Rolling back to the previously active adapter, with the local store and with Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from convassist.ml.adapters.factory import make_adapter_store
from convassist.ml.generation.manager import LLMManager
from tests.ml.conftest import AppFactory, ml_settings
from tests.support.adapters import zero_adapter


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
def store_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The app's settings overrides: no Redis, or the test Redis (its adapter keys cleaned)."""
    if request.param == "local":
        return {}
    return {"redis_url": request.getfixturevalue("redis_url")}


async def test_rollback_serves_the_adapter_active_before(
    make_client: AppFactory,
    manager: LLMManager,
    default_model_path: Path,
    store_settings: dict[str, Any],
    tmp_path: Path,
) -> None:
    backend = manager.adapter_backend
    assert backend is not None
    store = make_adapter_store(ml_settings(tmp_path, **store_settings))
    ids = []
    for job in ("aaaa0000-0000", "bbbb0000-0000"):
        source = zero_adapter(tmp_path / f"{job}.gguf", default_model_path)
        ids.append(
            store.save(
                source,
                job_id=job,
                base_model=backend.model_id,
                base_version=backend.base_version,
                metrics={},
                settings={},
            ).id
        )
    store.close()
    first, second = ids
    base = manager.model_version
    try:
        async with make_client(**store_settings) as client:
            assert (await client.get("/adapters")).json()["previous"] is None
            none = await client.post("/adapters/rollback")
            assert none.status_code == 409 and none.json()["error"] == "no_previous_adapter"

            await client.post(f"/adapters/{first}/activate")
            await client.post(f"/adapters/{second}/activate")
            listed = (await client.get("/adapters")).json()
            assert (listed["active"], listed["previous"]) == (second, first)

            back = await client.post("/adapters/rollback")
            assert back.status_code == 200, back.text
            assert back.json() == {"active": first, "modelVersion": f"{base}+{first}"}
            assert manager.model_version == f"{base}+{first}"
            # Rolling back again returns to where it started.
            listed = (await client.get("/adapters")).json()
            assert (listed["active"], listed["previous"]) == (first, second)

            await client.post("/adapters/deactivate")  # a rollback undoes that too
            again = (await client.post("/adapters/rollback")).json()
            assert again["active"] == first
    finally:
        await manager.set_adapter(None, None)
