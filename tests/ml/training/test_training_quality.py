"""A real job on the tiny model measures its held-out suggestions, and its gate decides."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from convassist.ml.adapters.store import LocalAdapterStore
from convassist.ml.generation.manager import LLMManager
from tests.ml.conftest import AppFactory
from tests.ml.training.conftest import TrainedAdapter
from tests.ml.training.test_training_api import TINY, job_body, wait_for

MEASURES = {"usableTop3", "chrf", "meanSuggestions", "meanWords", "lowercaseShare"}


@pytest.fixture
async def client(make_client: AppFactory, manager: LLMManager) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(**TINY) as c:
        yield c
    await manager.set_adapter(None, None)


async def test_a_job_measures_its_suggestions_and_is_switched_on_when_better(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    body = job_body(autoActivate=True)
    assert (await client.post("/training/jobs", json=body)).status_code == 202
    state = await wait_for(client, body["jobId"], {"completed", "failed", "cancelled"})
    assert state["status"] == "completed", state["error"]
    quality, gate = state["metrics"]["quality"], state["metrics"]["gate"]
    # Every held-out reply (6, fewer than the minimum) against the base model; nothing was
    # active, so no third model.
    assert quality["replies"] == 6 and "active" not in quality
    assert set(quality["base"]) >= MEASURES and set(quality["adapter"]) >= MEASURES
    assert quality["owner"]["meanWords"] == pytest.approx(4, abs=1)  # "omg yes, banana pancakes"
    assert quality["owner"]["lowercaseShare"] == 1.0
    # The adapter learnt some of the owner's voice ("…, banana pancakes"): closer than the base.
    assert quality["adapter"]["chrf"] > quality["base"]["chrf"]
    assert quality["closerThanBase"] > 0
    assert gate["activate"] is True and gate["comparedWith"] == "base"
    assert gate["reason"].startswith("Switched on: on 6 held-out replies")
    assert "activePerplexity" not in state["metrics"]
    # Switched on before the job read as completed.
    assert (await client.get("/adapters")).json()["active"] == state["adapterId"]
    # No text of a reply or a suggestion in the log.
    log_text = (tmp_path / "data" / "ml" / "training" / body["jobId"] / "runner.log").read_text()
    assert "quality_measured" in log_text and "banana" not in log_text


async def test_an_adapter_worse_than_the_active_one_is_not_switched_on(
    client: httpx.AsyncClient,
    manager: LLMManager,
    trained_adapter: TrainedAdapter,
    tmp_path: Path,
) -> None:
    backend = manager.adapter_backend
    assert backend is not None
    source = tmp_path / "active.gguf"
    shutil.copy(trained_adapter.path, source)
    active = LocalAdapterStore(tmp_path / "data" / "adapters").save(
        source,
        job_id="acce0000-0000",
        base_model=backend.model_id,
        base_version=backend.base_version,
        metrics={},
        settings={},
    )
    assert (await client.post(f"/adapters/{active.id}/activate")).status_code == 200
    # A learning rate that teaches it nothing: the base model, against a trained adapter.
    body = job_body(autoActivate=True, learningRate=1e-8)
    assert (await client.post("/training/jobs", json=body)).status_code == 202
    state = await wait_for(client, body["jobId"], {"completed", "failed", "cancelled"})
    assert state["status"] == "completed", state["error"]
    metrics = state["metrics"]
    assert metrics["activePerplexity"] < metrics["adapterPerplexity"]
    quality, gate = metrics["quality"], metrics["gate"]
    assert set(quality["active"]) >= MEASURES
    assert quality["active"]["chrf"] > quality["adapter"]["chrf"]
    assert 0 <= quality["closerThanActive"] < 0.5
    assert gate["activate"] is False and gate["comparedWith"] == active.id
    assert gate["reason"].startswith("Not switched on: on 6 held-out replies")
    assert "for the active adapter" in gate["reason"]
    # Stored, not served: the active adapter stays; the owner may still switch it on.
    listed = (await client.get("/adapters")).json()
    assert listed["active"] == active.id
    assert {a["id"] for a in listed["adapters"]} == {active.id, state["adapterId"]}
    switched = await client.post(f"/adapters/{state['adapterId']}/activate")
    assert switched.status_code == 200
    assert (await client.post("/adapters/rollback")).json()["active"] == active.id
