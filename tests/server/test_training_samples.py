"""Training samples API: filters, manual samples, edit, delete, JSONL export."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

pytestmark = pytest.mark.asyncio

PROMPT = "Them: are we still on for dinner?\nMe:"


async def _create(client: httpx.AsyncClient, **fields: object) -> dict[str, object]:
    body = {"inputContext": PROMPT, "expectedOutput": "yes! 7pm?", **fields}
    resp = await client.post("/api/training/samples", json=body)
    assert resp.status_code == 201, resp.text
    created: dict[str, object] = resp.json()
    return created


async def test_manual_sample_round_trip(owner_client: httpx.AsyncClient) -> None:
    created = await _create(owner_client, quality=0.8)
    assert created["source"] == "manual"
    assert created["quality"] == 0.8
    fetched = await owner_client.get(f"/api/training/samples/{created['id']}")
    assert fetched.json()["expectedOutput"] == "yes! 7pm?"


async def test_samples_require_the_owner(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/training/samples")).status_code == 401
    assert (await client.get("/api/training/samples/export")).status_code == 401
    resp = await client.post(
        "/api/training/samples", json={"inputContext": PROMPT, "expectedOutput": "x"}
    )
    assert resp.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"inputContext": PROMPT, "expectedOutput": "   "},
        {"inputContext": "", "expectedOutput": "ok"},
        {"inputContext": PROMPT, "expectedOutput": "ok", "quality": 1.5},
        {"inputContext": PROMPT, "expectedOutput": "ok", "source": "accepted"},
        {"inputContext": PROMPT},
    ],
)
async def test_bad_samples_are_refused(owner_client: httpx.AsyncClient, body: object) -> None:
    resp = await owner_client.post("/api/training/samples", json=body)
    assert resp.status_code == 422
    assert resp.json()["error"] == "validation_error"
    assert (await owner_client.get("/api/training/samples")).json()["total"] == 0


async def test_filters_and_pagination(owner_client: httpx.AsyncClient) -> None:
    for quality in (0.2, 0.5, 0.9, 1.0):
        await _create(owner_client, quality=quality)
    high = (await owner_client.get("/api/training/samples?minQuality=0.5")).json()
    assert sorted(s["quality"] for s in high["items"]) == [0.5, 0.9, 1.0]
    assert high["total"] == 3
    assert (await owner_client.get("/api/training/samples?source=edited")).json()["total"] == 0

    seen: list[str] = []
    cursor = None
    while True:
        url = "/api/training/samples?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = (await owner_client.get(url)).json()
        seen += [s["id"] for s in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 4

    later = (await owner_client.get("/api/training/samples?since=2100-01-01T00:00:00Z")).json()
    assert later["total"] == 0
    bad = await owner_client.get("/api/training/samples?cursor=garbage!")
    assert bad.status_code == 400


async def test_edit_and_delete(owner_client: httpx.AsyncClient) -> None:
    created = await _create(owner_client)
    patched = await owner_client.patch(
        f"/api/training/samples/{created['id']}",
        json={"expectedOutput": "yes, 8pm", "quality": 0.7},
    )
    assert patched.status_code == 200
    assert patched.json()["expectedOutput"] == "yes, 8pm"
    assert patched.json()["inputContext"] == PROMPT
    blank = await owner_client.patch(
        f"/api/training/samples/{created['id']}", json={"expectedOutput": " "}
    )
    assert blank.status_code == 422
    assert (await owner_client.delete(f"/api/training/samples/{created['id']}")).status_code == 204
    missing = await owner_client.get(f"/api/training/samples/{created['id']}")
    assert missing.status_code == 404
    again = await owner_client.delete(f"/api/training/samples/{uuid.uuid4()}")
    assert again.status_code == 404


async def test_jsonl_export(owner_client: httpx.AsyncClient) -> None:
    first = await _create(owner_client, expectedOutput="first", quality=0.4)
    second = await _create(owner_client, expectedOutput="second ✓", quality=1.0)
    resp = await owner_client.get("/api/training/samples/export")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in resp.text.splitlines()]
    assert [r["id"] for r in records] == [first["id"], second["id"]]
    assert records[1] == {
        "id": second["id"],
        "prompt": PROMPT,
        "completion": "second ✓",
        "source": "manual",
        "quality": 1.0,
        "conversationId": None,
        "createdAt": second["createdAt"].replace("Z", "+00:00"),
    }
    filtered = await owner_client.get("/api/training/samples/export?minQuality=0.5")
    assert [json.loads(line)["id"] for line in filtered.text.splitlines()] == [second["id"]]


async def test_a_prompt_without_the_reply_marker_gets_it(owner_client: httpx.AsyncClient) -> None:
    """The trainer skips prompts that do not end with `Me:`: the API adds it, never drops it."""
    created = await _create(owner_client, inputContext="  Them: dinner at 7?  ")
    assert created["inputContext"] == "Them: dinner at 7?\nMe:"
    patched = await owner_client.patch(
        f"/api/training/samples/{created['id']}", json={"inputContext": "Them: or 8?"}
    )
    assert patched.status_code == 200
    assert patched.json()["inputContext"] == "Them: or 8?\nMe:"
