"""Message text, prompts and generated replies never reach a log line, server or ML service."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from convassist.core.logging import configure_logging
from convassist.server.ml_client import MLClient
from tests.support.services import ML_TOKEN

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

SECRETS = ["the vault code is 918273", "meet me at Zanzibar Lane", "Priya Kowalczyk"]


async def test_a_whole_session_logs_no_content(
    app: object,
    owner_client: httpx.AsyncClient,
    device_client: httpx.AsyncClient,
    ml_service_url: str,
    ml_service_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app.state.ml_client = MLClient(ml_service_url, timeout=60, token=ML_TOKEN)  # type: ignore[attr-defined]
    root = logging.getLogger()
    previous = (root.handlers[:], root.level)
    configure_logging("DEBUG", "json", component="server")
    start = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
    try:
        await device_client.post(
            "/api/sync/contacts",
            json={"contacts": [{"appleId": "+15557654321", "displayName": SECRETS[2]}]},
        )
        synced = await device_client.post(
            "/api/sync/messages",
            json={
                "conversationId": "chat-secret",
                "participants": ["+15557654321"],
                "messages": [
                    {
                        "imessageGuid": f"s-{i}",
                        "senderId": "+15557654321",
                        "direction": "incoming",
                        "text": text,
                        "sentAt": (start + timedelta(minutes=i)).isoformat(),
                    }
                    for i, text in enumerate(SECRETS[:2])
                ],
            },
        )
        conversation_id = synced.json()["conversationId"]
        bad = await device_client.post(
            "/api/sync/messages",
            json={"conversationId": "x", "messages": [{"text": SECRETS[0], "direction": "up"}]},
        )
        assert bad.status_code == 422
        await owner_client.get(f"/api/conversations?q={SECRETS[2][:5]}")
        messages = (await owner_client.get(f"/api/conversations/{conversation_id}/messages")).json()
        last_id = messages["items"][-1]["id"] if messages["items"] else None
        assert last_id
        await owner_client.get(f"/api/conversations/{conversation_id}/context?messageId={last_id}")
        generated = await owner_client.post(
            "/api/responses/generate", json={"messageId": last_id, "candidates": 2, "seed": 1}
        )
        reply = generated.json()["response"]
        await owner_client.post(
            f"/api/responses/{generated.json()['responseId']}/action",
            json={"action": "edit", "editedResponse": "ok see you at Zanzibar Lane"},
        )
        await owner_client.get("/api/training/samples/export")
        server_log = capsys.readouterr().err
    finally:
        root.handlers[:], level = previous
        root.setLevel(level)
    ml_log = (ml_service_dir / "ml.log").read_text()
    assert '"event": "request"' in server_log, "the capture must see the server's log lines"
    assert '"event": "response_action"' in server_log
    assert "generated" in ml_log
    # A very short reply ("ok") could match ordinary log words; longer ones must not appear.
    long_reply = [reply.strip()] if len(reply.strip()) >= 8 else []
    for text in [*SECRETS, "Zanzibar", "918273", *long_reply]:
        assert text not in server_log, text
        assert text not in ml_log, text
