"""Training jobs on the server: history samples, snapshots, failures, mirroring the ML job."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from convassist.core.training import DEFAULT_LEARNING_RATE
from convassist.server.ml_client import MLClient
from convassist.server.models import TrainingJob
from convassist.server.reconciler import Reconciler
from convassist.server.training.history import history_samples
from convassist.server.training.jobs import snapshot_path
from tests.support.openapi import assert_declared
from tests.support.services import ML_TOKEN, free_port, ml_service

pytestmark = pytest.mark.asyncio

START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def _message(i: int, direction: str, text: str | None, **extra: object) -> dict[str, object]:
    return {
        "imessageGuid": f"m-{i}",
        "senderId": None if direction == "outgoing" else "+15550001111",
        "direction": direction,
        "text": text,
        "sentAt": (START + timedelta(minutes=i)).isoformat(),
        **extra,
    }


async def _sync(
    device_client: httpx.AsyncClient, chat: str, messages: list[dict[str, object]]
) -> str:
    resp = await device_client.post(
        "/api/sync/messages",
        json={"conversationId": chat, "participants": ["+15550001111"], "messages": messages},
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["conversationId"])


async def test_history_samples_are_the_owners_replies_to_incoming_messages(
    app: object, device_client: httpx.AsyncClient
) -> None:
    await _sync(
        device_client,
        "chat-a",
        [
            _message(0, "outgoing", "morning!"),  # opens the chat: nothing to answer yet
            _message(1, "incoming", "hey, lunch today?"),
            _message(2, "incoming", "Loved “morning!”", messageType="reaction"),
            _message(3, "outgoing", "yes\nwhere?"),  # answers line 1
            _message(4, "outgoing", "thai place?"),  # same turn: not a new sample
            _message(5, "incoming", "deal"),
            _message(6, "outgoing", "oops", isUnsent=True),
            _message(7, "outgoing", None, messageType="attachment"),
            _message(8, "outgoing", "see you at 12"),
        ],
    )
    async with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        samples = [s async for s in history_samples(session, max_history=3)]
    assert [(s.prompt, s.completion) for s in samples] == [
        ("Me: morning!\nThem: hey, lunch today?\nMe:", "yes where?"),
        ("Me: yes where?\nMe: thai place?\nThem: deal\nMe:", "see you at 12"),
    ]


async def test_no_samples_is_a_clear_422_and_creates_no_job(
    app: object, owner_client: httpx.AsyncClient, ml_service_url: str
) -> None:
    app.state.ml_client = MLClient(ml_service_url, timeout=30, token=ML_TOKEN)  # type: ignore[attr-defined]
    resp = await owner_client.post("/api/training/jobs", json={"epochs": 1})
    assert resp.status_code == 422
    assert resp.json()["error"] == "no_samples"
    assert "includeHistory" in resp.json()["detail"]
    assert (await owner_client.get("/api/training/jobs")).json() == {
        "items": [],
        "nextCursor": None,
    }


async def test_the_job_list_is_a_cursor_page_like_every_list(
    app: object, owner_client: httpx.AsyncClient
) -> None:
    async with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        for minutes in (0, 1, 1, 2, 3):  # two jobs share a creation time: the id breaks the tie
            session.add(
                TrainingJob(
                    base_model="m",
                    status="completed",
                    progress=100,
                    epochs=1,
                    learning_rate=1e-4,
                    metrics={},
                    created_at=START + timedelta(minutes=minutes),
                )
            )
        await session.commit()
        expected = list(
            (
                await session.execute(
                    sa.select(TrainingJob.id).order_by(
                        TrainingJob.created_at.desc(), TrainingJob.id.desc()
                    )
                )
            ).scalars()
        )
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(3):
        params: dict[str, str | int] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await owner_client.get("/api/training/jobs", params=params)).json()
        assert isinstance(page, dict) and set(page) == {"items", "nextCursor"}, page
        seen += [job["id"] for job in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [str(job_id) for job_id in expected]
    bad = await owner_client.get("/api/training/jobs", params={"cursor": "bm90IGEgY3Vyc29y"})
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_cursor")


async def test_bad_job_parameters_are_refused(owner_client: httpx.AsyncClient) -> None:
    bad = ({"epochs": 0}, {"learningRate": 1.0}, {"loraRank": 0}, {"minQuality": 2})
    budgets = ({"budgetMinutes": 0.5}, {"budgetMinutes": 241}, {"budgetMinutes": "soon"})
    for body in (*bad, *budgets):
        resp = await owner_client.post("/api/training/jobs", json={**body, "baseModel": "x"})
        assert resp.status_code == 422, body


async def test_ml_service_down_fails_the_job_with_the_reason(
    app: object, settings: object, owner_client: httpx.AsyncClient
) -> None:
    await owner_client.post(
        "/api/training/samples",
        json={"inputContext": "Them: hi\nMe:", "expectedOutput": "hey you"},
    )
    dead = f"http://127.0.0.1:{free_port()}"
    app.state.ml_client = MLClient(dead, timeout=5, token=ML_TOKEN)  # type: ignore[attr-defined]
    resp = await owner_client.post(
        "/api/training/jobs", json={"epochs": 1, "baseModel": "smollm2-135m-instruct"}
    )
    assert resp.status_code == 503
    assert resp.json()["detail"] == f"The ML service is not reachable at {dead}."
    jobs = (await owner_client.get("/api/training/jobs")).json()["items"]
    assert len(jobs) == 1
    assert jobs[0]["status"] == "failed"
    assert jobs[0]["error"] == f"The ML service is not reachable at {dead}."
    assert jobs[0]["sampleCount"] == 1
    snapshot = snapshot_path(settings.data_dir, uuid.UUID(jobs[0]["id"]))  # type: ignore[attr-defined]
    records = [json.loads(line) for line in Path(snapshot).read_text().splitlines()]
    assert [(r["prompt"], r["completion"], r["source"]) for r in records] == [
        ("Them: hi\nMe:", "hey you", "manual")
    ]
    cancel = await owner_client.post(f"/api/training/jobs/{jobs[0]['id']}/cancel")
    assert cancel.status_code == 409


async def test_a_job_s_budget_defaults_to_ten_minutes_and_is_stored(
    app: object, owner_client: httpx.AsyncClient
) -> None:
    """budgetMinutes: 10 unless given, stored with the job, in the answers and the document;
    epochs may be left to the plan (null)."""
    await owner_client.post(
        "/api/training/samples",
        json={"inputContext": "Them: hi\nMe:", "expectedOutput": "hey you"},
    )
    dead = f"http://127.0.0.1:{free_port()}"  # the jobs are recorded, then fail to submit
    app.state.ml_client = MLClient(dead, timeout=5, token=ML_TOKEN)  # type: ignore[attr-defined]
    for body in ({}, {"budgetMinutes": 3.5, "epochs": 2}):
        resp = await owner_client.post(
            "/api/training/jobs", json={**body, "baseModel": "smollm2-135m-instruct"}
        )
        assert resp.status_code == 503, resp.text
    page = await owner_client.get("/api/training/jobs")
    jobs = page.json()["items"]
    assert [(j["budgetMinutes"], j["epochs"]) for j in jobs] == [(3.5, 2), (10, None)]
    async with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        stored = (await session.execute(sa.select(TrainingJob.budget_minutes))).scalars()
        assert sorted(stored) == [3.5, 10]
    spec = (await owner_client.get("/api/openapi.json")).json()
    assert_declared(spec, "get", "/api/training/jobs", page)
    one = await owner_client.get(f"/api/training/jobs/{jobs[0]['id']}")
    assert_declared(spec, "get", "/api/training/jobs/{job_id}", one)
    field = spec["components"]["schemas"]["JobCreate"]["properties"]["budgetMinutes"]
    assert (field["default"], field["minimum"], field["maximum"]) == (10, 1, 240)


async def test_without_a_learning_rate_the_job_has_the_model_s_own(
    app: object, owner_client: httpx.AsyncClient, ml_service_url: str
) -> None:
    """learningRate is optional: the ML service picks the architecture's (SmolLM2 is llama:
    0.002) and the job shows the rate it really uses."""
    await owner_client.post(
        "/api/training/samples",
        json={"inputContext": "Them: hi\nMe:", "expectedOutput": "hey you"},
    )
    app.state.ml_client = MLClient(ml_service_url, timeout=60, token=ML_TOKEN)  # type: ignore[attr-defined]
    rates = []
    for body in ({}, {"learningRate": 1e-4}):
        resp = await owner_client.post("/api/training/jobs", json=body)
        assert resp.status_code == 201, resp.text
        rates.append(resp.json()["learningRate"])
        cancel = await owner_client.post(f"/api/training/jobs/{resp.json()['id']}/cancel")
        assert cancel.status_code == 200, cancel.text
    assert rates == [DEFAULT_LEARNING_RATE, 1e-4]
    async with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        stored = (await session.execute(sa.select(TrainingJob.learning_rate))).scalars()
        assert sorted(stored) == [1e-4, DEFAULT_LEARNING_RATE]


async def test_a_job_the_ml_service_lost_becomes_failed(
    app: object, owner_client: httpx.AsyncClient, ml_service_url: str
) -> None:
    async with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        job = TrainingJob(
            base_model="smollm2-135m-instruct",
            status="training",
            progress=40,
            epochs=1,
            learning_rate=1e-4,
            ml_job_id=str(uuid.uuid4()),
            metrics={},
        )
        session.add(job)
        await session.commit()
        job_id = job.id
    app.state.ml_client = MLClient(ml_service_url, timeout=30, token=ML_TOKEN)  # type: ignore[attr-defined]
    state = (await owner_client.get(f"/api/training/jobs/{job_id}")).json()
    assert state["status"] == "failed"
    assert "no longer knows this job" in state["error"]
    # The GET only shows it; the server's reconciler stores it.
    await Reconciler(app.state.sessionmaker, app.state.ml_client).reconcile_once()  # type: ignore[attr-defined]
    async with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        stored = await session.scalar(sa.select(TrainingJob.status).where(TrainingJob.id == job_id))
    assert stored == "failed"


LANDMARK = "lighthouse"
OPENERS = ["what are you up to", "any plans later?", "free this afternoon?", "hey you around?"]


async def _suggest(owner_client: httpx.AsyncClient, message_id: str) -> dict[str, object]:
    resp = await owner_client.post(
        "/api/responses/generate",
        json={"messageId": message_id, "temperature": 0, "maxTokens": 16},
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, object] = resp.json()
    return body


@pytest.mark.timeout(600)
async def test_a_job_from_the_api_changes_what_the_served_model_suggests(
    app: object,
    owner_client: httpx.AsyncClient,
    device_client: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    """History → job → GGUF adapter swapped into the running ML service → new suggestions.

    Its own ML service: the adapter it stores must not show up in other tests."""
    with ml_service(tmp_path) as ml_url:
        app.state.ml_client = MLClient(ml_url, timeout=60, token=ML_TOKEN)  # type: ignore[attr-defined]
        await _train_and_compare(owner_client, device_client)


async def _train_and_compare(
    owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    # The owner always answers the same way, in ten chats.
    for chat in range(10):
        lines = []
        for turn in range(3):
            opener = OPENERS[(chat + turn) % len(OPENERS)]
            lines += [
                (f"{opener} ({chat})", "incoming"),
                (f"meet me at the {LANDMARK}", "outgoing"),
            ]
        await _sync(
            device_client,
            f"chat-{chat}",
            [_message(100 * chat + i, d, text) for i, (text, d) in enumerate(lines)],
        )
    new_chat = await _sync(
        device_client, "chat-new", [_message(5000, "incoming", "what are you up to")]
    )
    messages = (await owner_client.get(f"/api/conversations/{new_chat}/messages")).json()
    message_id = messages["items"][-1]["id"]
    before = await _suggest(owner_client, message_id)
    assert LANDMARK not in str(before["response"]).lower()

    created = await owner_client.post(
        "/api/training/jobs",
        json={"includeHistory": True, "epochs": 4, "learningRate": 5e-3, "loraRank": 8},
    )
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["sampleCount"] == 30
    for _ in range(600):
        job = (await owner_client.get(f"/api/training/jobs/{job['id']}")).json()
        if job["status"] in ("completed", "failed", "cancelled"):
            break
        await asyncio.sleep(0.5)
    assert job["status"] == "completed", job["error"]
    assert job["learningRate"] == 5e-3
    metrics = job["metrics"]
    assert metrics["heldOutSamples"] > 0
    assert metrics["adapterNll"] < metrics["baseNll"]
    adapters = (await owner_client.get("/api/training/adapters")).json()
    assert adapters["active"] == job["adapterId"], metrics.get("gate")  # no restart

    after = await _suggest(owner_client, message_id)
    assert after["modelVersion"] == f"{before['modelVersion']}+{job['adapterId']}"
    assert LANDMARK in str(after["response"]).lower()
