"""The HTTP API in process (no Redis): generate, cache, validation, jobs, health, metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import pytest

from convassist.core.logging import configure_logging
from tests.ml.conftest import PROMPT, AppFactory


def body(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"prompt": PROMPT, "maxTokens": 32, "seed": 42}
    values.update(overrides)
    return values


async def test_generate_returns_the_seed_shape(client: httpx.AsyncClient) -> None:
    resp = await client.post("/generate", json=body(n=3, temperature=1.0))
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert set(data) == {
        "response",
        "candidates",
        "confidence",
        "model_version",
        "cached",
        "timings",
    }
    assert data["model_version"].startswith("smollm2-135m-instruct@")
    assert data["cached"] is False
    assert data["response"] == data["candidates"][0]["text"]
    assert data["confidence"] == data["candidates"][0]["confidence"]
    assert 2 <= len(data["candidates"]) <= 3
    assert all(0 <= c["confidence"] <= 1 for c in data["candidates"])
    timings = data["timings"]
    assert timings["promptTokens"] == 35
    assert timings["completionTokens"] > 0 and timings["tokensPerSecond"] > 0
    assert timings["totalMs"] >= timings["generationMs"] > 0


async def test_a_repeat_is_a_cache_hit_and_a_changed_parameter_a_miss(
    client: httpx.AsyncClient,
) -> None:
    first = (await client.post("/generate", json=body())).json()
    again = (await client.post("/generate", json=body())).json()
    assert first["cached"] is False and again["cached"] is True
    assert again["response"] == first["response"]
    assert again["candidates"] == first["candidates"]
    assert again["timings"]["totalMs"] < first["timings"]["totalMs"]
    for change in (
        {"temperature": 0.5},
        {"maxTokens": 31},
        {"topP": 0.9},
        {"stop": ["\n"]},
        {"seed": 43},
        {"n": 2},
        {"prompt": PROMPT + " "},
    ):
        changed = (await client.post("/generate", json=body(**change))).json()
        assert changed["cached"] is False, change
    metrics = (await client.get("/metrics")).text
    assert 'convassist_ml_cache_total{result="hit"} 1.0' in metrics
    assert 'convassist_ml_cache_total{result="miss"} 8.0' in metrics


async def test_only_deterministic_requests_are_cached(client: httpx.AsyncClient) -> None:
    random_body = {"prompt": PROMPT, "maxTokens": 8, "temperature": 0.9}
    for _ in range(2):
        assert (await client.post("/generate", json=random_body)).json()["cached"] is False
    greedy = {"prompt": PROMPT, "maxTokens": 8, "temperature": 0}
    assert (await client.post("/generate", json=greedy)).json()["cached"] is False
    assert (await client.post("/generate", json=greedy)).json()["cached"] is True


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        ({"prompt": ""}, 422, "body.prompt"),
        ({"prompt": "   \n "}, 422, "the prompt is empty"),
        ({"prompt": PROMPT, "maxTokens": 0}, 422, "body.maxTokens"),
        ({"prompt": PROMPT, "maxTokens": 100_000}, 422, "body.maxTokens"),
        ({"prompt": PROMPT, "n": 0}, 422, "body.n"),
        ({"prompt": PROMPT, "n": 6}, 422, "body.n"),
        ({"prompt": PROMPT, "temperature": -1}, 422, "body.temperature"),
        ({"prompt": PROMPT, "topP": 0}, 422, "body.topP"),
        ({"prompt": PROMPT, "stop": [""]}, 422, "body.stop"),
        ({"prompt": PROMPT, "seed": -5}, 422, "body.seed"),
        ({"prompt": PROMPT, "max_new_tokens": 5}, 422, "max_new_tokens"),
        ({}, 422, "body.prompt"),
    ],
)
async def test_bad_input_is_a_clear_4xx(
    client: httpx.AsyncClient, payload: dict[str, Any], status: int, needle: str
) -> None:
    resp = await client.post("/generate", json=payload)
    assert resp.status_code == status, resp.text
    data = resp.json()
    assert data["error"] == "validation_error"
    assert needle in data["detail"]


async def test_invalid_json_and_oversized_bodies(make_client: AppFactory) -> None:
    async with make_client(max_body_bytes=2048) as client:
        resp = await client.post(
            "/generate", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_json"
        resp = await client.post("/generate", json={"prompt": "x" * 4096})
        assert resp.status_code == 413 and resp.json()["error"] == "payload_too_large"


async def test_a_prompt_longer_than_the_context_is_422(client: httpx.AsyncClient) -> None:
    resp = await client.post("/generate", json=body(prompt="Them: hello there\n" * 900 + "Me:"))
    assert resp.status_code == 422
    data = resp.json()
    assert data["error"] == "prompt_too_long"
    assert "context of 4096 tokens" in data["detail"]
    assert data["contextSize"] == 4096 and data["promptTokens"] > 4096 - 32


async def test_health_answers_during_a_long_generation(client: httpx.AsyncClient) -> None:
    long = asyncio.create_task(
        client.post("/generate", json=body(maxTokens=400, stop=[], temperature=1.0, seed=9))
    )
    await asyncio.sleep(0.3)
    health = await client.get("/health")
    assert not long.done(), "health answered while the generation was still running"
    assert health.status_code == 200
    assert health.json()["in_flight"] == 1
    assert (await long).status_code == 200


async def test_health_models_and_metrics(client: httpx.AsyncClient) -> None:
    health = (await client.get("/health")).json()
    assert health == {
        "status": "ok",
        "model_loaded": True,
        "model_version": health["model_version"],
        "backend": "llama",
        "redis": "disabled",
        "cache": "memory",
        "jobs": "in-process",
        "queue_depth": 0,
        "in_flight": 0,
        "llama": health["llama"],  # its content: tests/ml/models/test_native.py
    }
    models = (await client.get("/models")).json()
    by_id = {m["id"]: m for m in models["models"]}
    assert set(by_id) == {
        "smollm2-135m-instruct",
        "ministral-3b-instruct",
        "mistral-7b",
        "llama-2-7b",
        "phi-2",
        "gemma3-270m",
    }
    assert by_id["smollm2-135m-instruct"]["cached"] and by_id["smollm2-135m-instruct"]["loaded"]
    assert not by_id["phi-2"]["cached"] and not by_id["phi-2"]["loaded"]
    assert models["loaded"] == health["model_version"]
    await client.post("/generate", json=body(maxTokens=8))
    metrics = (await client.get("/metrics")).text
    assert (
        'convassist_ml_requests_total{method="POST",route="/generate",status="200"} 1.0' in metrics
    )
    assert "convassist_ml_request_seconds_bucket" in metrics
    assert "convassist_ml_generation_seconds_count 1.0" in metrics
    assert "convassist_ml_tokens_per_second " in metrics
    assert "convassist_ml_generated_tokens_total" in metrics


async def _wait_for_job(
    client: httpx.AsyncClient, job_id: str, timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        resp = await client.get(f"/jobs/{job_id}")
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()
        seen.append(data["status"])
        if data["status"] in ("completed", "failed"):
            data["seen"] = seen
            return data
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {seen[-5:]}")


async def test_in_process_job_lifecycle(client: httpx.AsyncClient) -> None:
    submitted = await client.post("/generate/async", json=body(maxTokens=64, stop=[], seed=5))
    assert submitted.status_code == 202
    job_id = submitted.json()["jobId"]
    data = await _wait_for_job(client, job_id)
    assert data["status"] == "completed" and data["error"] is None
    assert "running" in data["seen"]
    direct = (await client.post("/generate", json=body(maxTokens=64, stop=[], seed=5))).json()
    assert data["result"]["response"] == direct["response"]
    assert direct["cached"] is True  # the job filled the same cache


async def test_a_failing_in_process_job_reports_its_error(client: httpx.AsyncClient) -> None:
    submitted = await client.post(
        "/generate/async", json=body(prompt="Them: hello there\n" * 900 + "Me:")
    )
    assert submitted.status_code == 202
    data = await _wait_for_job(client, submitted.json()["jobId"])
    assert data["status"] == "failed"
    assert data["result"] is None
    assert "exceeds the model's context of 4096 tokens" in data["error"]


async def test_an_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    resp = await client.get("/jobs/does-not-exist")
    assert resp.status_code == 404
    assert resp.json()["error"] == "not_found"


async def test_prompts_and_replies_never_reach_the_logs(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "Them: my locker code is 4242 and the pin is zebra-71\nMe:"
    root = logging.getLogger()
    previous = (root.handlers[:], root.level)
    configure_logging("DEBUG", "json", component="ml")
    try:
        own = ["meet at the quarry gate"]
        resp = await client.post(
            "/generate", json=body(prompt=secret, n=2, temperature=1.0, ownReplies=own)
        )
        reply = resp.json()["response"]
        await client.post("/generate", json=body(prompt=secret, n=2, ownReplies=["x" * 99]))  # 422
        await client.post("/generate", json=body(prompt=secret, n=2, temperature=1.0))  # hit
        await client.post("/generate", json=body(prompt=secret, maxTokens=0))  # 422
        job = (await client.post("/generate/async", json=body(prompt=secret))).json()["jobId"]
        await _wait_for_job(client, job)
        logged = capsys.readouterr().err
    finally:
        root.handlers[:], level = previous
        root.setLevel(level)
    assert '"event": "generated"' in logged, "the capture should see the service's logs"
    assert '"event": "request"' in logged
    assert len(reply.strip()) > 3
    for fragment in ("locker", "4242", "zebra-71", "quarry", "x" * 99, reply.strip()):
        assert fragment not in logged
