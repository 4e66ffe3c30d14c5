"""A completed job switches its adapter on before it reads as completed, and only when it
may: it asked to be, its gate let it through, and nobody cancelled it meanwhile."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from convassist.core.errors import ServiceUnavailable
from convassist.ml.runtime.runtime import JobContext
from convassist.ml.runtime.stores import LocalStore
from convassist.ml.training.record import TrainingPayload, TrainingRecord
from convassist.ml.training.schemas import TrainingRequest
from convassist.ml.training.service import switch_on
from tests.ml.training.conftest import make_samples, sample_json

ADAPTER = "lora-0123abcd"


class Hook:
    """`OnCompleted`: records its calls; fails with the service down when told to."""

    def __init__(self, down: bool = False) -> None:
        self.calls: list[str] = []
        self.down = down

    async def __call__(self, adapter_id: str) -> None:
        self.calls.append(adapter_id)
        if self.down:
            raise ServiceUnavailable("The ML service is unavailable.")


async def running_job(
    auto_activate: bool = True, store: LocalStore[TrainingRecord] | None = None
) -> JobContext[TrainingRecord, TrainingPayload]:
    store = store or LocalStore(TrainingRecord)
    record = TrainingRecord(
        job_id=str(uuid.uuid4()),
        status="training",
        created_at=datetime.now(UTC),
        base_model="smollm2-135m-instruct",
        auto_activate=auto_activate,
    )
    assert await store.create(record, ttl=60)
    request = TrainingRequest(samples=sample_json(make_samples(1)))
    payload = TrainingPayload(request=request, base_version="m@1")
    return JobContext(record, payload, store)


def completed(gate: dict[str, Any] | None) -> dict[str, Any]:
    metrics = {"gate": gate} if gate is not None else {}
    return {"status": "completed", "adapter_id": ADAPTER, "metrics": metrics}


@pytest.mark.parametrize("gate", [{"activate": True}, None])
async def test_an_adapter_its_gate_lets_through_is_switched_on(gate: dict[str, Any] | None) -> None:
    hook = Hook()
    ctx = await running_job()
    await switch_on(ctx, completed(gate), hook)
    assert hook.calls == [ADAPTER]
    assert ctx.record.status == "training"  # the runtime's final write comes after


async def test_a_held_back_or_unwanted_adapter_is_not_switched_on() -> None:
    hook = Hook()
    await switch_on(await running_job(), completed({"activate": False}), hook)
    await switch_on(await running_job(auto_activate=False), completed(None), hook)
    failed = {"status": "failed", "adapter_id": ADAPTER, "metrics": {}}
    await switch_on(await running_job(), failed, hook)
    assert hook.calls == []


async def test_a_job_cancelled_meanwhile_does_not_switch_its_adapter_on() -> None:
    hook = Hook()
    store: LocalStore[TrainingRecord] = LocalStore(TrainingRecord)
    ctx = await running_job(store=store)
    await store.update(ctx.record.job_id, {"status": "cancelled"})  # as a cancel writes it
    await switch_on(ctx, completed({"activate": True}), hook)
    assert hook.calls == []


async def test_a_service_that_cannot_switch_it_on_does_not_fail_the_job() -> None:
    hook = Hook(down=True)
    await switch_on(await running_job(), completed({"activate": True}), hook)
    assert hook.calls == [ADAPTER]
