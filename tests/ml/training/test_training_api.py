"""Training jobs through the API, without Redis: each job runs in a child process."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from convassist.ml.generation.manager import LLMManager
from convassist.ml.runtime.inprocess import RESTARTED, STOPPED
from convassist.ml.training.device import choose_device
from convassist.ml.training.record import TrainingRecord
from tests.ml.conftest import AppFactory
from tests.ml.training.conftest import make_samples, sample_json

TINY = {"train_max_context": 64, "train_batch_size": 4, "train_threads": 2}


def job_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "jobId": str(uuid.uuid4()),
        "epochs": 1,
        "learningRate": 5e-3,
        "loraRank": 4,
        "holdoutFraction": 0.25,
        "budgetMinutes": 30,  # room on a busy machine; the budget's own test gives 3
        "samples": sample_json(make_samples(8)),
    }
    body.update(overrides)
    return body


async def wait_for(
    client: httpx.AsyncClient, job_id: str, statuses: set[str], timeout: float = 240
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state: dict[str, Any] = (await client.get(f"/training/jobs/{job_id}")).json()
        if state["status"] in statuses:
            return state
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.25)


async def runner_pid(tmp_path: Path, job_id: str) -> int:
    pid_file = tmp_path / "data" / "ml" / "training" / job_id / "pid"
    for _ in range(200):
        if pid_file.exists():
            return int(pid_file.read_text())
        await asyncio.sleep(0.05)
    raise AssertionError("the runner was not started")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "Z"


@pytest.fixture
async def client(make_client: AppFactory, manager: LLMManager) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(**TINY) as c:
        yield c
    await manager.set_adapter(None, None)


async def test_a_job_trains_evaluates_stores_and_activates_its_adapter(
    client: httpx.AsyncClient, manager: LLMManager, tmp_path: Path
) -> None:
    body = job_body(autoActivate=True)
    job_id = body["jobId"]
    created = await client.post("/training/jobs", json=body)
    assert created.status_code == 202, created.text
    assert created.json()["jobId"] == job_id and created.json()["status"] == "queued"
    assert created.json()["learningRate"] == 5e-3

    state = await wait_for(client, job_id, {"completed", "failed", "cancelled"})
    assert state["status"] == "completed", state["error"]
    assert state["progress"] == 100 and state["error"] is None
    assert state["adapterId"] == f"lora-{job_id[:8]}"
    assert Path(state["outputPath"]).is_file()
    assert state["startedAt"] and state["completedAt"] >= state["startedAt"] >= state["createdAt"]
    metrics = state["metrics"]
    assert metrics["trainSamples"] == 18 and metrics["heldOutSamples"] == 6
    assert metrics["heldOutConversations"] == 2 and metrics["epochs"] == 1
    assert metrics["trainTokens"] > 0 and metrics["tokensPerSecond"] > 0
    assert metrics["durationSeconds"] > 0 and math.isfinite(metrics["finalLoss"])
    # It trained at the lowest priority, on the configured threads, never paused.
    assert metrics["priority"] == "idle" and metrics["threads"] == 2
    assert metrics["pauses"] == 0 and metrics["pausedSeconds"] == 0
    # It says where it trained (the CPU here) and in which number type.
    chosen = choose_device()
    assert (metrics["device"], metrics["dtype"]) == (chosen.type, chosen.dtype)
    # The held-out replies (other conversations) got likelier under the adapter.
    assert metrics["adapterNll"] < metrics["baseNll"]
    assert metrics["basePerplexity"] == pytest.approx(math.exp(metrics["baseNll"]), rel=1e-3)

    # Switched on before the job read as completed: whoever sees `completed` sees it served.
    adapters = (await client.get("/adapters")).json()
    assert adapters["active"] == state["adapterId"]
    assert adapters["modelVersion"].endswith("+" + state["adapterId"])
    [entry] = adapters["adapters"]
    assert entry["jobId"] == job_id and entry["metrics"]["adapterNll"] == metrics["adapterNll"]
    assert manager.model_version == adapters["modelVersion"]

    finished = await client.post(f"/training/jobs/{job_id}/cancel")
    assert finished.status_code == 409 and finished.json()["error"] == "job_finished"
    again = await client.post("/training/jobs", json=body)
    assert again.status_code == 409 and again.json()["error"] == "job_exists"
    # The runner's log has ids, counts and timings, never sample text.
    log_text = (tmp_path / "data" / "ml" / "training" / job_id / "runner.log").read_text()
    assert "training_completed" in log_text
    assert "banana" not in log_text and "lunch" not in log_text


async def test_a_job_plans_what_fits_its_budget_and_finishes_within_it(
    client: httpx.AsyncClient,
) -> None:
    """No epochs given: one pass, the rest planned from the speed of the first steps. On an idle
    2-core machine this job takes about a minute of its 3; a machine too busy to do even
    the plan's minimum in time must say so right after the first steps."""
    body = {k: v for k, v in job_body(budgetMinutes=3).items() if k != "epochs"}
    assert (await client.post("/training/jobs", json=body)).status_code == 202
    state = await wait_for(client, body["jobId"], {"completed", "failed", "cancelled"}, 400)
    metrics = state["metrics"]
    assert metrics["budgetMinutes"] == 3
    if state["status"] == "failed":
        assert state["error"].startswith("Training failed: This job cannot finish in 3 minutes")
        assert "plan" not in metrics and "Give it a larger budget." in state["error"]
        return
    assert state["status"] == "completed", state["error"]
    plan = metrics["plan"]
    assert plan["budgetSeconds"] == 180
    assert plan["calibrationTokensPerSecond"] > 0 and plan["estimatedSeconds"] > 0
    assert plan["maxLength"] == metrics["maxLength"] and plan["maxLength"] in (64, 48, 32)
    assert plan["epochs"] == metrics["epochs"] == 1  # one pass unless the owner asks for more
    assert plan["loraLayers"] == metrics["loraLayers"] and plan["trainSamples"] <= 18
    assert 0 < plan["historyShare"] <= 1
    assert plan["reason"].startswith("Measured ") and "of the 3 minutes" in plan["reason"]
    assert metrics["withinBudget"] is True and metrics["durationSeconds"] <= 185
    assert isinstance(metrics["stoppedEarly"], bool)


async def test_cancel_stops_the_training_process(client: httpx.AsyncClient, tmp_path: Path) -> None:
    body = job_body(epochs=20)
    await client.post("/training/jobs", json=body)
    pid = await runner_pid(tmp_path, body["jobId"])
    cancelled = await client.post(f"/training/jobs/{body['jobId']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert not alive(pid)  # stopped before the answer
    state = (await client.get(f"/training/jobs/{body['jobId']}")).json()
    assert state["status"] == "cancelled" and state["error"] == "The job was cancelled."
    assert state["completedAt"] is not None


async def test_a_killed_training_process_fails_the_job(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    body = job_body(epochs=20)
    await client.post("/training/jobs", json=body)
    os.kill(await runner_pid(tmp_path, body["jobId"]), signal.SIGKILL)
    state = await wait_for(client, body["jobId"], {"failed", "completed", "cancelled"}, 30)
    assert state["status"] == "failed"
    assert state["error"] == "The training process died (killed by SIGKILL)."


async def test_stopping_or_restarting_the_service_fails_its_jobs(
    make_client: AppFactory, tmp_path: Path
) -> None:
    body = job_body(epochs=20)
    async with make_client(**TINY) as client:
        await client.post("/training/jobs", json=body)
        pid = await runner_pid(tmp_path, body["jobId"])
    assert not alive(pid)
    # A job a crashed instance left behind (its record says training; no heartbeat since).
    orphan = str(uuid.uuid4())
    orphan_dir = tmp_path / "data" / "ml" / "training" / orphan
    orphan_dir.mkdir(parents=True)
    silent = datetime(2026, 1, 1, tzinfo=UTC)
    record = TrainingRecord(
        job_id=orphan,
        status="training",
        progress=40,
        created_at=silent,
        started_at=silent,
        heartbeat_at=silent,
        stale_after=10,
        base_model="smollm2-135m-instruct",
        auto_activate=False,
    )
    (orphan_dir / "job.json").write_text(record.model_dump_json())
    async with make_client(**TINY) as client:
        stopped = (await client.get(f"/training/jobs/{body['jobId']}")).json()
        assert stopped["status"] == "failed" and stopped["error"] == STOPPED
        restarted = (await client.get(f"/training/jobs/{orphan}")).json()
        assert restarted["status"] == "failed" and restarted["error"] == RESTARTED
        assert restarted["progress"] == 40


async def test_jobs_that_cannot_run_are_refused(client: httpx.AsyncClient) -> None:
    unusable = [
        {"prompt": "Them: hi", "completion": "no Me: at the end", "quality": 1.0},
        {"prompt": "Them: hi\nMe:", "completion": "  ", "quality": 1.0},
        {"prompt": "Them: hi\nMe:", "completion": "hello", "quality": 0.0},
    ]
    cases = [
        (job_body(samples=unusable), 422, "no_samples"),
        (job_body(samples=[]), 422, "validation_error"),
        (job_body(baseModel="no-such-model"), 422, "unknown_base_model"),
        (job_body(baseModel="phi-2"), 422, "base_model_mismatch"),
        (job_body(loraRank=65), 422, "validation_error"),
        (job_body(learningRate=0.5), 422, "validation_error"),
        (job_body(holdoutFraction=0.6), 422, "validation_error"),
        (job_body(budgetMinutes=0.5), 422, "validation_error"),
        (job_body(budgetMinutes=241), 422, "validation_error"),
        (job_body(jobId="../escape"), 422, "validation_error"),
    ]
    for body, status, code in cases:
        resp = await client.post("/training/jobs", json=body)
        assert (resp.status_code, resp.json()["error"]) == (status, code), body.keys()
        assert resp.json()["detail"]
    assert (await client.post("/training/jobs", json=job_body(baseModel="phi-2"))).json()[
        "detail"
    ] == (
        "This ML service serves 'smollm2-135m-instruct'; it can only train adapters for that "
        "model, not for 'phi-2'."
    )
    assert (await client.get("/training/jobs/nope")).status_code == 404
    assert (await client.post("/training/jobs/nope/cancel")).status_code == 404


async def test_a_large_sample_set_fits_the_training_body_limit(
    make_client: AppFactory,
) -> None:
    samples = sample_json(make_samples(200, per_conversation=10))  # about 2 MB of JSON
    async with make_client(max_body_bytes=100_000, **TINY) as client:
        generate = await client.post("/generate", json={"prompt": "x" * 200_000})
        assert generate.status_code == 413
        assert generate.headers["x-request-id"]  # refused inside the request context
        body = job_body(samples=samples, baseModel="no-such-model")
        resp = await client.post("/training/jobs", json=body)
        assert resp.status_code == 422 and resp.json()["error"] == "unknown_base_model"
