"""SIGKILL of a real `convassist agent run` (dry-run sender) around a send, against a real
`convassist server`: the restarted agent decides by chat.db and never sends twice.

The kill comes from the dry-run sender's crash switch (`CONVASSIST_AGENT_DRY_RUN_KILL`):
`after` = the agent dies between sending and reporting; `before` = it dies after journaling
the attempt but before Messages got the message.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from convassist.agent.state import StateDB
from tests.agent import test_sync_e2e as e2e
from tests.agent.chatdb_factory import FIXTURE_DB, build_chatdb, write_row
from tests.agent.test_sync_e2e import LiveServer, agent, agent_env, owner, register_with_cli
from tests.support.cli import CONVASSIST
from tests.support.services import dry_run_sender, sent_lines, wait_for

live_server = e2e.live_server  # `convassist server` on PostgreSQL, for this module
server = e2e.server
TEXT = "Running late, start without me"


def outbox_entry(session: httpx.Client, entry_id: str) -> dict[str, Any]:
    return next(i for i in session.get("/api/outbox").json()["items"] if i["id"] == entry_id)


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["after", "before"])
def test_agent_killed_around_a_send_never_sends_twice(
    server: LiveServer, tmp_path: Path, moment: str
) -> None:
    if not FIXTURE_DB.is_file():
        pytest.skip("chat.db fixtures not found (CONVASSIST_SHARED_DIR)")
    db = build_chatdb(tmp_path / "chat.db", messages=30, chats=2, handles=4)
    chat_guid = sorted(db.chats)[0]
    sent_log = tmp_path / "sent.jsonl"
    env = agent_env(tmp_path, **dry_run_sender(db.path, sent_log, outbox_wait=1))
    register_with_cli(env, server.url, server.url)
    assert agent(env, "sync", "--once").returncode == 0
    with owner(server.url) as session:
        device = session.get("/api/devices").json()[0]
        assert session.patch(f"/api/devices/{device['id']}", json={"maySend": True}).is_success
        conversations = session.get("/api/conversations", params={"limit": 100}).json()["items"]
        conversation = next(c for c in conversations if c["imessageId"] == chat_guid)
        queued = session.post(
            "/api/outbox", json={"conversationId": conversation["id"], "text": TEXT}
        )
        assert queued.status_code == 201, queued.text
        entry_id = queued.json()["id"]

        log_path = tmp_path / "agent.log"
        with log_path.open("w") as log:
            dying = subprocess.Popen(
                [*CONVASSIST, "agent", "run"],
                env={**env, "CONVASSIST_AGENT_DRY_RUN_KILL": moment},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            assert dying.wait(90) == -9, log_path.read_text()[-2000:]
        assert len(sent_lines(sent_log)) == (1 if moment == "after" else 0)
        assert outbox_entry(session, entry_id)["status"] == "sending"
        with StateDB.open(tmp_path / "agent-state") as state:
            attempted = state.journal(entry_id)
        assert attempted is not None and attempted.state == "attempted"

        guid = write_row(db.path, chat_guid, TEXT, from_me=True) if moment == "after" else None
        with log_path.open("a") as log:
            restarted = subprocess.Popen(
                [*CONVASSIST, "agent", "run"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
            try:

                def reported() -> Any:
                    with StateDB.open(tmp_path / "agent-state") as state:
                        entry = state.journal(entry_id)
                    return entry if entry is not None and entry.reported_at else None

                done = wait_for("the restarted agent's report", reported)
                final = wait_for(
                    "the entry's outcome",
                    lambda: (
                        (e := outbox_entry(session, entry_id))["status"] in ("sent", "confirmed")
                        and e
                    ),
                )
                time.sleep(1.5)  # a later round must not send it again
            finally:
                restarted.terminate()
                assert restarted.wait(30) == 0
    lines = sent_lines(sent_log)
    assert [(line["id"], line["text"]) for line in lines] == [(entry_id, TEXT)]
    assert done.state == "sent"
    if guid is not None:  # found in chat.db: reported with its GUID, not sent again
        assert done.message_guid == guid
        assert final["messageGuid"] == guid
    assert TEXT not in log_path.read_text()
