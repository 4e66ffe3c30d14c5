"""Reply suggestions in the thread, against the real ML service: ask, watch, act."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest

from convassist.server.ml_client import MLClient
from tests.support.services import ML_TOKEN, free_port
from tests.web.conftest import Browser, message, sync, text_of

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

SAM = "+15551230000"
LINES = [
    message("s0", 0, "hey are you coming to the game tonight?", sender=SAM),
    message("s1", 1, "yes! what time does it start"),
    message("s2", 2, "7pm, want to grab food before?", sender=SAM),
]


@pytest.fixture(params=["postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def ml_app(app: Any, ml_service_url: str) -> Any:
    await app.state.ml_client.aclose()
    app.state.ml_client = MLClient(ml_service_url, timeout=60, token=ML_TOKEN)
    return app


async def _message_id(web: Browser, conversation: str, text: str) -> str:
    """The id of the message whose bubble says exactly `text`."""
    page = (await web.get(f"/conversations/{conversation}")).text
    for block in page.split(' id="m-')[1:]:
        bubble = re.search(r'class="bubble-text">([^<]*)', block)
        if bubble and bubble.group(1) == text:
            return block[:36]
    raise AssertionError(text)


async def _suggest_and_wait(web: Browser, message_id: str) -> tuple[str, str]:
    """Ask for suggestions; poll the card like the page does; returns (id, final card)."""
    card = await web.htmx(f"/messages/{message_id}/suggest")
    assert card.status_code == 200, card.text
    assert 'aria-busy="true"' in card.text, text_of(card.text)
    assert "Thinking of replies…" in card.text
    response_id = re.search(r'id="s-([0-9a-f-]{36})"', card.text)
    assert response_id
    poll = re.search(r'hx-get="(/suggestions/[0-9a-f-]{36})" hx-trigger="load delay:1s"', card.text)
    assert poll
    html = card.text
    for _ in range(120):
        html = (await web.get(poll.group(1), htmx=True)).text
        if "aria-busy" not in html:
            break
        await asyncio.sleep(0.5)
    return response_id.group(1), html


async def test_suggest_edit_and_see_the_sample(
    ml_app: Any, web: Browser, device_client: httpx.AsyncClient
) -> None:
    conversation = await sync(
        device_client, "iMessage;-;sam", LINES, participants=[SAM], name="Sam"
    )
    message_id = await _message_id(web, conversation, "7pm, want to grab food before?")
    response_id, card = await _suggest_and_wait(web, message_id)
    assert "Suggested replies" in card
    candidates = re.findall(r'class="candidate-text" id="[^"]+">([^<]*)</p>', card)
    assert 1 <= len(candidates) <= 3
    confidences = [int(p) for p in re.findall(r"(\d+)% confidence", card)]
    assert len(confidences) == len(candidates)
    assert all(0 <= c <= 100 for c in confidences)
    assert "Model smollm2-135m-instruct" in card

    # The thread now shows the suggestion under its message, and the history panel lists it.
    page = await web.get(f"/conversations/{conversation}")
    assert f'id="s-{response_id}"' in page.text
    assert "Awaiting you" in text_of(page.text)

    edited = await web.htmx(
        f"/suggestions/{response_id}/edit", {"candidate": "0", "text": "  yes! tacos at 6?  "}
    )
    assert edited.status_code == 200
    assert "You edited a suggestion" in edited.text
    assert "yes! tacos at 6?" in edited.text
    assert "samples-changed" in edited.headers["hx-trigger"]
    again = await web.htmx(f"/suggestions/{response_id}/accept", {"candidate": "0"})
    assert again.status_code == 409
    assert "already edited" in again.text

    training = text_of((await web.get("/training")).text)
    assert "1 sample" in training
    assert "Edited suggestion" in training
    assert "yes! tacos at 6?" in training
    history = text_of((await web.get(f"/conversations/{conversation}/suggestions", htmx=True)).text)
    assert re.search(r"Edited .* yes! tacos at 6\?", history)


async def test_accept_and_reject_with_a_reason(
    ml_app: Any, web: Browser, device_client: httpx.AsyncClient
) -> None:
    conversation = await sync(
        device_client, "iMessage;-;sam", LINES, participants=[SAM], name="Sam"
    )
    first = await _message_id(web, conversation, "hey are you coming to the game tonight?")
    response_id, _ = await _suggest_and_wait(web, first)
    accepted = await web.htmx(f"/suggestions/{response_id}/accept", {"candidate": "0"})
    assert "You used a suggestion" in accepted.text
    assert "data-copy=" in accepted.text

    last = await _message_id(web, conversation, "7pm, want to grab food before?")
    response_id, _ = await _suggest_and_wait(web, last)
    rejected = await web.htmx(f"/suggestions/{response_id}/reject", {"reason": "Too formal"})
    assert "You turned these down" in rejected.text
    assert "Reason: Too formal" in rejected.text
    empty_edit = await web.htmx(f"/suggestions/{response_id}/edit", {"text": " "})
    assert empty_edit.status_code == 422
    history = text_of((await web.get(f"/conversations/{conversation}")).text)
    assert "Turned down" in history
    assert "Used" in history
    samples = text_of((await web.get("/training?source=accepted")).text)
    assert "1 sample match these filters" in samples


async def test_outgoing_messages_offer_no_suggestions(
    ml_app: Any, web: Browser, device_client: httpx.AsyncClient
) -> None:
    conversation = await sync(
        device_client, "iMessage;-;sam", LINES, participants=[SAM], name="Sam"
    )
    outgoing = await _message_id(web, conversation, "yes! what time does it start")
    resp = await web.htmx(f"/messages/{outgoing}/suggest")
    assert resp.status_code == 200
    assert "Couldn't get suggestions" in resp.text
    assert "sent by you" in resp.text


async def test_ml_service_down_is_explained_on_the_card(
    app: Any, web: Browser, device_client: httpx.AsyncClient
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    app.state.ml_client = MLClient(dead, timeout=5, token=ML_TOKEN)
    conversation = await sync(
        device_client, "iMessage;-;sam", LINES, participants=[SAM], name="Sam"
    )
    message_id = await _message_id(web, conversation, "7pm, want to grab food before?")
    resp = await web.htmx(f"/messages/{message_id}/suggest")
    assert resp.status_code == 200
    assert f"The ML service is not reachable at {dead}." in resp.text
    assert "Traceback" not in resp.text
    page = text_of((await web.get(f"/conversations/{conversation}")).text)
    assert "No suggestions this time" in page
    assert page.count(f"The ML service is not reachable at {dead}.") == 2  # card and history
