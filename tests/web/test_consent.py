"""The conversation page's consent switches, "rebuild without them" and deleting it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from convassist.server.ml_client import MLClient
from convassist.server.models import TrainingJob, TrainingStatus
from tests.support.services import ML_TOKEN, free_port
from tests.web.conftest import Browser, message, sync, text_of

pytestmark = pytest.mark.asyncio

FRIEND = "+15550001111"


async def _conversation(device_client: httpx.AsyncClient) -> str:
    return await sync(
        device_client,
        f"iMessage;-;{FRIEND}",
        [message("in-1", 0, "lunch?", sender=FRIEND), message("out-1", 1, "sure")],
        participants=[FRIEND],
    )


async def test_the_switches_turn_learning_and_suggestions_off_and_on(
    web: Browser, device_client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    conversation = await _conversation(device_client)
    page = await web.get(f"/conversations/{conversation}")
    assert page.status_code == 200
    assert page.text.count('role="switch" aria-checked="true"') == 2
    assert "Learn from this conversation" in text_of(page.text)
    assert "Suggest replies here" in text_of(page.text)
    assert "Rebuild without them" not in page.text
    url = f"/conversations/{conversation}/consent"

    forged = await web.client.post(url, data={"use": "training", "on": "false"})
    assert forged.status_code == 403
    assert (await owner_client.get(f"/api/conversations/{conversation}")).json()["training"]

    off = await web.htmx(url, {"use": "training", "on": "false"})
    assert off.status_code == 200, off.text
    assert (
        'aria-checked="false"' in off.text and "Left out of training" in off.headers["hx-trigger"]
    )
    shown = (await owner_client.get(f"/api/conversations/{conversation}")).json()
    assert (shown["training"], shown["suggestions"]) == (False, True)

    plain = await web.form(url, {"use": "suggestions", "on": "false"})  # no JavaScript
    assert (plain.status_code, plain.headers["location"]) == (303, f"/conversations/{conversation}")
    shown = (await owner_client.get(f"/api/conversations/{conversation}")).json()
    assert (shown["training"], shown["suggestions"]) == (False, False)
    assert (await web.htmx(url, {"use": "everything", "on": "false"})).status_code == 422


async def test_leaving_someone_out_after_an_adapter_offers_a_rebuild(
    app: Any, web: Browser, device_client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    conversation = await _conversation(device_client)
    async with app.state.sessionmaker() as session:
        session.add(
            TrainingJob(
                base_model="smollm2-135m-instruct",
                status=TrainingStatus.COMPLETED,
                progress=100,
                epochs=1,
                learning_rate=1e-4,
                metrics={},
                adapter_id="adapter-1",
            )
        )
        await session.commit()
    assert "Rebuild without them" not in (await web.get(f"/conversations/{conversation}")).text
    off = await web.htmx(
        f"/conversations/{conversation}/consent", {"use": "training", "on": "false"}
    )
    assert "Rebuild without them" in off.text
    # The ML service is down: the panel says so, and no job starts.
    app.state.ml_client = MLClient(f"http://127.0.0.1:{free_port()}", timeout=5, token=ML_TOKEN)
    rebuilt = await web.htmx(f"/conversations/{conversation}/rebuild")
    assert rebuilt.status_code == 200
    assert "The ML service is not reachable" in text_of(rebuilt.text)
    assert "Rebuild without them" in rebuilt.text
    jobs = (await owner_client.get("/api/training/jobs")).json()["items"]
    assert [job["adapterId"] for job in jobs] == ["adapter-1"]
    assert (await web.client.post(f"/conversations/{conversation}/rebuild")).status_code == 403


async def test_deleting_the_conversation_asks_first_and_removes_it(
    web: Browser, device_client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    conversation = await _conversation(device_client)
    page = await web.get(f"/conversations/{conversation}")
    assert 'hx-confirm="Delete this conversation?' in page.text
    url = f"/conversations/{conversation}/delete"
    assert (await web.client.post(url)).status_code == 403
    assert (await owner_client.get(f"/api/conversations/{conversation}")).status_code == 200
    deleted = await web.htmx(url)
    assert (deleted.status_code, deleted.headers["hx-redirect"]) == (204, "/conversations")
    assert (await owner_client.get(f"/api/conversations/{conversation}")).status_code == 404
    assert (await web.get(f"/conversations/{conversation}")).status_code == 404
    other = await _conversation(device_client)
    plain = await web.form(f"/conversations/{other}/delete")
    assert (plain.status_code, plain.headers["location"]) == (303, "/conversations")
