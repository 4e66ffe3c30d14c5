"""Serving adapters: list, hot-swap activation, deactivation, restore, cache keys."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from convassist.ml.adapters.store import AdapterInfo, LocalAdapterStore
from convassist.ml.generation.manager import GenerationParams, LLMManager
from tests.ml.conftest import AppFactory
from tests.ml.training.conftest import TrainedAdapter

PROMPT = "Them: are we still on for lunch tomorrow\nMe:"
REQUEST = {"prompt": PROMPT, "maxTokens": 16, "temperature": 0, "seed": 7}


@pytest.fixture
async def stored(
    tmp_path: Path, manager: LLMManager, trained_adapter: TrainedAdapter
) -> AsyncIterator[AdapterInfo]:
    """The trained adapter in the store of the test app's data dir; base served afterwards."""
    backend = manager.adapter_backend
    assert backend is not None
    source = tmp_path / "exported.gguf"
    shutil.copy(trained_adapter.path, source)
    info = LocalAdapterStore(tmp_path / "data" / "adapters").save(
        source,
        job_id="0123abcd-0000-4000-8000-000000000000",
        base_model=backend.model_id,
        base_version=backend.base_version,
        metrics={"adapterNll": 1.5},
        settings={"loraRank": 8},
    )
    yield info
    await manager.set_adapter(None, None)


async def test_activation_hot_swaps_the_adapter_and_deactivation_restores_the_base(
    make_client: AppFactory, manager: LLMManager, stored: AdapterInfo
) -> None:
    base_version = manager.model_version
    async with make_client() as client:
        base = (await client.post("/generate", json=REQUEST)).json()
        listed = (await client.get("/adapters")).json()
        assert listed["active"] is None and listed["modelVersion"] == base_version
        [entry] = listed["adapters"]
        assert entry["id"] == stored.id == "lora-0123abcd"
        assert entry["jobId"] == stored.job_id and entry["active"] is False
        assert entry["baseModel"] == "smollm2-135m-instruct"
        assert entry["sizeBytes"] == Path(entry["path"]).stat().st_size > 0
        assert entry["metrics"] == {"adapterNll": 1.5}
        assert entry["sha256"] == stored.sha256 and len(entry["sha256"]) == 64

        activated = await client.post(f"/adapters/{stored.id}/activate")
        assert activated.status_code == 200, activated.text
        version = f"{base_version}+{stored.id}"
        assert activated.json() == {"active": stored.id, "modelVersion": version}
        assert (await client.get("/health")).json()["model_version"] == version

        tuned = (await client.post("/generate", json=REQUEST)).json()
        # A new model_version is a new cache key: generated afresh, by the adapter.
        assert tuned["cached"] is False and tuned["model_version"] == version
        assert "banana pancakes" in tuned["response"]
        assert "banana" not in base["response"]
        assert (await client.get("/adapters")).json()["adapters"][0]["active"] is True

        deactivated = (await client.post("/adapters/deactivate")).json()
        assert deactivated == {"active": None, "modelVersion": base_version}
        again = (await client.post("/generate", json=REQUEST)).json()
        assert again["cached"] is True and again["response"] == base["response"]
    # Generated afresh (no cache), the base model gives exactly what it gave before.
    params = GenerationParams(max_tokens=16, temperature=0, top_p=0.95, stop=(), seed=7)
    direct = await manager.generate(PROMPT, params)
    assert direct.candidates[0].text.startswith(base["response"])


async def test_without_the_token_a_stored_adapter_is_not_activated(
    make_client: AppFactory, manager: LLMManager, stored: AdapterInfo
) -> None:
    base_version = manager.model_version
    async with make_client() as client:
        wrong = {"Authorization": "Bearer " + "w" * 32}
        assert (
            await client.post(f"/adapters/{stored.id}/activate", headers=wrong)
        ).status_code == 401
        token = client.headers.pop("Authorization")
        assert (await client.post(f"/adapters/{stored.id}/activate")).status_code == 401
        assert manager.model_version == base_version
        client.headers["Authorization"] = token
        assert (await client.get("/adapters")).json()["active"] is None
    async with make_client() as client:  # and a restart restores nothing
        assert (await client.get("/adapters")).json()["active"] is None
    assert manager.model_version == base_version


async def test_a_swap_never_lands_inside_a_request(
    manager: LLMManager, stored: AdapterInfo
) -> None:
    params = GenerationParams(max_tokens=12, temperature=0.9, top_p=0.95, stop=(), seed=3, n=3)
    base = await manager.generate(PROMPT, params)
    await manager.set_adapter(stored.id, stored.path)
    tuned = await manager.generate(PROMPT, params)
    await manager.set_adapter(None, None)
    assert [c.text for c in base.candidates] != [c.text for c in tuned.candidates]
    generation, _ = await asyncio.gather(
        manager.generate(PROMPT, params), manager.set_adapter(stored.id, stored.path)
    )
    # All candidates come from the model the response names.
    expected = tuned if generation.model_version.endswith(stored.id) else base
    assert [c.text for c in generation.candidates] == [c.text for c in expected.candidates]


async def test_the_active_adapter_survives_a_restart(
    make_client: AppFactory, manager: LLMManager, stored: AdapterInfo
) -> None:
    async with make_client() as client:
        assert (await client.post(f"/adapters/{stored.id}/activate")).status_code == 200
    await manager.set_adapter(None, None)  # as if the process had ended
    async with make_client() as client:
        assert (await client.get("/adapters")).json()["active"] == stored.id
        await client.post("/adapters/deactivate")
    async with make_client() as client:
        assert (await client.get("/adapters")).json()["active"] is None


async def test_unknown_and_foreign_adapters_are_refused(
    make_client: AppFactory, stored: AdapterInfo, tmp_path: Path
) -> None:
    foreign = tmp_path / "foreign.gguf"
    shutil.copy(stored.path, foreign)
    other = LocalAdapterStore(stored.path.parent.parent).save(
        foreign,
        job_id="feedbeef-0000",
        base_model="smollm2-135m-instruct",
        base_version="smollm2-135m-instruct@000000000000",
        metrics={},
        settings={},
    )
    async with make_client() as client:
        missing = await client.post("/adapters/lora-00000000/activate")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        bad_id = await client.post("/adapters/..%2Fetc/activate")
        assert bad_id.status_code == 404
        wrong = await client.post(f"/adapters/{other.id}/activate")
        assert wrong.status_code == 409
        assert wrong.json()["error"] == "adapter_base_mismatch"
        assert "000000000000" in wrong.json()["detail"]
        assert (await client.get("/adapters")).json()["active"] is None


async def test_malformed_adapter_ids_are_a_422(make_client: AppFactory) -> None:
    async with make_client() as client:
        for bad in ("%01", "lora-%01", "lora-ABC", "lora-" + "a" * 65, "lora-", "x"):
            resp = await client.post(f"/adapters/{bad}/activate")
            assert resp.status_code == 422, (bad, resp.text)
            assert resp.json()["error"] == "validation_error"
        missing = await client.post("/adapters/lora-00000000/activate")
        assert missing.status_code == 404


async def test_an_adapter_whose_file_changed_is_refused(
    make_client: AppFactory, manager: LLMManager, stored: AdapterInfo
) -> None:
    data = bytearray(stored.path.read_bytes())
    data[-1] ^= 1
    stored.path.write_bytes(bytes(data))
    base_version = manager.model_version
    async with make_client() as client:
        refused = await client.post(f"/adapters/{stored.id}/activate")
        assert refused.status_code == 409
        assert refused.json()["error"] == "adapter_checksum_mismatch"
        assert "SHA-256" in refused.json()["detail"]
        assert (await client.get("/health")).json()["model_version"] == base_version
        assert (await client.get("/adapters")).json()["active"] is None
