"""GET handlers only read: active rows show the ML service's live state without a write, and
the reconciler (or the POST that acts on a row) stores it. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from convassist.server.ml_client import MLClient
from convassist.server.models import GeneratedResponse, TrainingJob, TrainingStatus
from convassist.server.reconciler import Reconciler
from tests.support.chats import incoming_message
from tests.support.services import ML_TOKEN
from tests.support.statements import sent_statements

pytestmark = pytest.mark.slow

WRITES = ("INSERT", "UPDATE", "DELETE")
LOST = "The ML service no longer knows this job (was it restarted?)."


@pytest.fixture
async def ml_app(app: Any, ml_service_url: str) -> Any:
    await app.state.ml_client.aclose()
    app.state.ml_client = MLClient(ml_service_url, timeout=60, token=ML_TOKEN)
    return app


def reconciler(app: Any) -> Reconciler:
    return Reconciler(app.state.sessionmaker, app.state.ml_client)


def writes(app: Any) -> AbstractContextManager[list[str]]:
    """The INSERT / UPDATE / DELETE statements the app's engine sends meanwhile."""
    return sent_statements(app, kinds=WRITES)


async def stored(app: Any, model: type[Any], row_id: uuid.UUID) -> Any:
    async with app.state.sessionmaker() as session:
        return await session.get(model, row_id)


async def async_suggestion(owner: httpx.AsyncClient, device: httpx.AsyncClient) -> str:
    message_id = await incoming_message(
        device, owner, sender="+15551230001", guid="reconcile-1", text="see you at seven?"
    )
    resp = await owner.post(
        "/api/responses/generate",
        json={
            "messageId": message_id,
            "async": True,
            "maxTokens": 4,
            "temperature": 0,
        },
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "generating"
    return str(resp.json()["responseId"])


async def poll_until_done(owner: httpx.AsyncClient, response_id: str) -> dict[str, Any]:
    for _ in range(240):
        body: dict[str, Any] = (await owner.get(f"/api/responses/{response_id}")).json()
        if body["status"] != "generating":
            return body
        await asyncio.sleep(0.5)
    raise AssertionError("still generating")


async def test_reading_a_generating_suggestion_writes_nothing_and_the_reconciler_stores_it(
    ml_app: Any, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    response_id = await async_suggestion(owner_client, device_client)
    with writes(ml_app) as statements:
        body = await poll_until_done(owner_client, response_id)
    assert statements == []
    assert body["status"] == "completed", body
    assert body["modelVersion"].startswith("smollm2-135m-instruct@")
    row = await stored(ml_app, GeneratedResponse, uuid.UUID(response_id))
    assert row.status.value == "generating"  # shown live, not stored by the GET

    with writes(ml_app) as statements:  # (the listener does see writes)
        assert await reconciler(ml_app).reconcile_once() == 1
    assert [s.split(None, 1)[0] for s in statements] == ["UPDATE"]
    row = await stored(ml_app, GeneratedResponse, uuid.UUID(response_id))
    assert row.status.value == "completed"
    assert row.model_version == body["modelVersion"]
    assert [c["text"] for c in row.candidates] == [c["text"] for c in body["candidates"]]
    assert await reconciler(ml_app).reconcile_once() == 0  # nothing active any more


async def test_acting_on_a_suggestion_stores_its_final_state_first(
    ml_app: Any, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    response_id = await async_suggestion(owner_client, device_client)
    await poll_until_done(owner_client, response_id)
    acted = await owner_client.post(
        f"/api/responses/{response_id}/action", json={"action": "accept", "candidateIndex": 0}
    )
    assert acted.status_code == 200, acted.text
    assert acted.json()["status"] == "accepted"
    assert acted.json()["sampleId"]
    row = await stored(ml_app, GeneratedResponse, uuid.UUID(response_id))
    assert row.status.value == "accepted"
    assert row.model_version and row.generated_at is not None


async def _lost_job(app: Any) -> uuid.UUID:
    """A training row the ML service has never heard of (as after losing its state)."""
    async with app.state.sessionmaker.begin() as session:
        job = TrainingJob(
            base_model="smollm2-135m-instruct",
            status=TrainingStatus.TRAINING,
            progress=40,
            epochs=1,
            learning_rate=1e-4,
            lora_rank=8,
            sample_count=3,
            metrics={},
            ml_job_id=f"lost-{uuid.uuid4().hex[:8]}",
        )
        session.add(job)
    return job.id


async def test_reading_training_jobs_writes_nothing_and_the_reconciler_fails_a_lost_one(
    ml_app: Any, owner_client: httpx.AsyncClient
) -> None:
    job_id = await _lost_job(ml_app)
    with writes(ml_app) as statements:
        one = (await owner_client.get(f"/api/training/jobs/{job_id}")).json()
        listed = (await owner_client.get("/api/training/jobs")).json()["items"]
    assert statements == []
    assert one["status"] == "failed" and one["error"] == LOST
    assert [(j["id"], j["status"], j["error"]) for j in listed] == [(str(job_id), "failed", LOST)]
    row = await stored(ml_app, TrainingJob, job_id)
    assert row.status is TrainingStatus.TRAINING  # shown live, not stored by the GETs

    assert await reconciler(ml_app).reconcile_once() == 1
    row = await stored(ml_app, TrainingJob, job_id)
    assert row.status is TrainingStatus.FAILED
    assert row.error == LOST
    assert row.completed_at is not None


async def test_cancelling_stores_the_jobs_state_first(
    ml_app: Any, owner_client: httpx.AsyncClient
) -> None:
    job_id = await _lost_job(ml_app)
    resp = await owner_client.post(f"/api/training/jobs/{job_id}/cancel")
    assert resp.status_code == 409, resp.text
    assert resp.json()["error"] == "job_finished"
    row = await stored(ml_app, TrainingJob, job_id)
    assert row.status is TrainingStatus.FAILED and row.error == LOST


async def test_the_app_runs_the_reconciler_while_it_serves(ml_app: Any) -> None:
    job_id = await _lost_job(ml_app)
    ml_app.state.reconciler.ml = ml_app.state.ml_client
    ml_app.state.reconciler.interval = 0.1
    async with ml_app.router.lifespan_context(ml_app):
        for _ in range(100):
            row = await stored(ml_app, TrainingJob, job_id)
            if row.status is TrainingStatus.FAILED:
                break
            await asyncio.sleep(0.1)
    assert row.status is TrainingStatus.FAILED
    async with ml_app.state.sessionmaker() as session:
        active = await session.scalar(
            sa.select(sa.func.count()).where(TrainingJob.status == TrainingStatus.TRAINING)
        )
    assert active == 0
