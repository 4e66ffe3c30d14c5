"""Several ML service instances (`ML_SERVICE_URL` a list): spread, failover, and the limits
of failover; against two real ML services, a dead port and sockets that hang up."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from convassist.core.errors import AppError
from convassist.ml.generation.schemas import GenerateRequest
from convassist.ml.training.schemas import TrainingRequest, TrainingSampleIn
from convassist.server.ml_client import MLClient
from tests.support.chats import incoming_message
from tests.support.services import ML_AUTH, ML_TOKEN, free_port, ml_service
from tests.support.sockets import bad_server

pytestmark = pytest.mark.slow

REQUEST = GenerateRequest(prompt="Friend: hi there\nMe:", max_tokens=4, temperature=0, seed=7)


@pytest.fixture(scope="module")
def second_ml_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second real ML service beside the session's one."""
    with ml_service(tmp_path_factory.mktemp("ml-second")) as url:
        yield url


@pytest.fixture
def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused


def served(url: str, method: str, route: str) -> int:
    """How many requests this ML instance answered on `route` (its /metrics)."""
    text = httpx.get(f"{url}/metrics", headers=ML_AUTH, timeout=10).text
    labels = rf'method="{method}",route="{re.escape(route)}",[^}}]*'
    pattern = rf"convassist_ml_requests_total\{{{labels}\}} ([0-9.]+)"
    return int(sum(float(found) for found in re.findall(pattern, text)))


async def test_requests_are_spread_round_robin(ml_service_url: str, second_ml_url: str) -> None:
    urls = (ml_service_url, second_ml_url)
    before = [served(url, "GET", "/adapters") for url in urls]
    ml = MLClient(",".join(urls), timeout=30, token=ML_TOKEN)
    try:
        for _ in range(6):
            await ml.adapters()
    finally:
        await ml.aclose()
    after = [served(url, "GET", "/adapters") for url in urls]
    assert [a - b for a, b in zip(after, before, strict=True)] == [3, 3]


async def test_a_down_instance_is_skipped_and_passed_over(
    ml_service_url: str, dead_url: str
) -> None:
    ml = MLClient(f"{dead_url},{ml_service_url}", timeout=30, token=ML_TOKEN)
    try:
        generated = await ml.generate(REQUEST)  # the first pick is the dead one
    finally:
        await ml.aclose()
    assert generated.model_version.startswith("smollm2-135m-instruct@")


async def test_a_refused_connection_is_retried_even_when_not_idempotent(
    ml_service_url: str, dead_url: str
) -> None:
    ml = MLClient(f"{dead_url},{ml_service_url}", timeout=30, token=ML_TOKEN)
    try:
        job_id = await ml.generate_async(REQUEST)  # the request never left: safe to retry
        assert await ml.job(job_id) is not None
    finally:
        await ml.aclose()


@pytest.mark.parametrize("behaviour", ["close", "reset"])
async def test_an_instance_dying_mid_request_is_retried_when_idempotent(
    ml_service_url: str, behaviour: Any
) -> None:
    with bad_server(behaviour) as dying:
        ml = MLClient(f"{dying.url},{ml_service_url}", timeout=30, token=ML_TOKEN)
        try:
            generated = await ml.generate(REQUEST)
            assert dying.accepted == 1  # the request reached it, and it hung up
            for _ in range(4):  # it failed just now: passed over, not tried again
                await ml.adapters()
            assert dying.accepted == 1
        finally:
            await ml.aclose()
    assert generated.candidates


async def test_a_non_idempotent_request_is_not_sent_twice(ml_service_url: str) -> None:
    before = served(ml_service_url, "POST", "/generate/async")
    with bad_server("close") as dying:
        ml = MLClient(f"{dying.url},{ml_service_url}", timeout=30, token=ML_TOKEN)
        try:
            with pytest.raises(AppError) as raised:
                await ml.generate_async(REQUEST)
        finally:
            await ml.aclose()
    assert raised.value.code == "ml_service_unavailable"
    assert raised.value.status_code == 503
    assert served(ml_service_url, "POST", "/generate/async") == before


async def test_a_read_timeout_is_not_retried(ml_service_url: str) -> None:
    before = served(ml_service_url, "POST", "/generate")
    with bad_server("silent") as slow:
        ml = MLClient(f"{slow.url},{ml_service_url}", timeout=1, token=ML_TOKEN)
        try:
            with pytest.raises(AppError) as raised:
                await ml.generate(REQUEST)
        finally:
            await ml.aclose()
    assert raised.value.code == "ml_service_timeout"
    assert served(ml_service_url, "POST", "/generate") == before


async def test_an_answer_is_not_retried(ml_service_url: str, second_ml_url: str) -> None:
    """A 4xx from one instance is the answer: the other one is not asked."""
    urls = (ml_service_url, second_ml_url)
    route = "/adapters/{adapter_id}/activate"
    before = [served(url, "POST", route) for url in urls]
    ml = MLClient(",".join(urls), timeout=30, token=ML_TOKEN)
    try:
        with pytest.raises(AppError) as raised:
            await ml.activate_adapter("lora-nosuchadapter")
    finally:
        await ml.aclose()
    assert raised.value.code == "unknown_adapter"
    after = [served(url, "POST", route) for url in urls]
    assert sum(after) - sum(before) == 1


async def test_a_job_is_looked_for_on_every_instance(
    ml_service_url: str, second_ml_url: str
) -> None:
    """Without Redis each instance knows only its own jobs: a job is unknown only when no
    instance knows it."""
    urls = (ml_service_url, second_ml_url)
    only_second = MLClient(second_ml_url, timeout=30, token=ML_TOKEN)
    both = MLClient(",".join(urls), timeout=30, token=ML_TOKEN)
    try:
        job_id = await only_second.generate_async(REQUEST)
        before = [served(url, "GET", "/jobs/{job_id}") for url in urls]
        assert await both.job(job_id) is not None  # its first pick does not know it
        assert await both.job("no-such-job") is None
        after = [served(url, "GET", "/jobs/{job_id}") for url in urls]
    finally:
        await only_second.aclose()
        await both.aclose()
    # Each instance asked once per lookup: the first found nothing both times.
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 2]


async def test_every_instance_down_is_the_usual_503(dead_url: str) -> None:
    other = f"http://127.0.0.1:{free_port()}"
    ml = MLClient(f"{dead_url},{other}", timeout=5, token=ML_TOKEN)
    try:
        with pytest.raises(AppError) as raised:
            await ml.generate(REQUEST)
    finally:
        await ml.aclose()
    assert raised.value.code == "ml_service_unavailable"
    assert dead_url in raised.value.detail and other in raised.value.detail


async def test_the_owner_sees_no_error_when_an_instance_dies(
    app: Any, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient, ml_service_url: str
) -> None:
    with bad_server("close") as dying:
        app.state.ml_client = MLClient(f"{dying.url},{ml_service_url}", timeout=30, token=ML_TOKEN)
        message_id = await incoming_message(
            device_client,
            owner_client,
            sender="+15551239999",
            guid="failover-1",
            text="are you coming?",
        )
        resp = await owner_client.post(
            "/api/responses/generate",
            json={"messageId": message_id, "maxTokens": 4, "temperature": 0},
        )
        await app.state.ml_client.aclose()
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "completed"
    assert dying.accepted == 1


async def test_a_training_job_submitted_twice_is_read_not_refused(ml_service_url: str) -> None:
    """A retried submission finds its job there already (409 job_exists): it is read."""
    job_id = f"twice{uuid.uuid4().hex[:8]}"
    request = TrainingRequest(
        job_id=job_id,
        epochs=1,
        samples=[TrainingSampleIn(prompt="Friend: hi\nMe:", completion="hey you")],
    )
    ml = MLClient(ml_service_url, timeout=30, token=ML_TOKEN)
    try:
        first = await ml.submit_training(request)
        second = await ml.submit_training(request)
        assert first.job_id == second.job_id == job_id
        assert second.created_at == first.created_at
    finally:
        with contextlib.suppress(AppError):
            await ml.cancel_training(job_id)
        await ml.aclose()
