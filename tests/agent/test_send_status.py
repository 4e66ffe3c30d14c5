"""`agent status` shows the sender and the last sends (ids and outcomes, never text); a send
makes the `run` loop sync soon (`Daemon.poke`)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import pytest

from convassist.agent.daemon import ChangeWatcher, Daemon
from convassist.agent.send.base import text_hash
from convassist.agent.state import StateDB
from convassist.agent.sync import SyncReport
from tests.agent.test_agent_cli import env, invoke, registered, report  # noqa: F401 (fixture)

SECRET = "meet me behind the library"


def test_status_shows_the_sender_and_the_last_sends(
    env: dict[str, str],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registered(tmp_path)
    with StateDB.open(tmp_path / "state") as state:
        state.record_attempt("entry-1", "iMessage;-;+15550001111", text_hash(SECRET))
        state.record_outcome("entry-1", "iMessage;-;+15550001111", text_hash(SECRET), "sent")
        state.record_reported("entry-1")
        state.record_attempt("entry-2", "iMessage;+;chat42", text_hash(SECRET))
        state.record_outcome(
            "entry-2", "iMessage;+;chat42", text_hash(SECRET), "failed", error="Messages is off"
        )
    monkeypatch.setenv("CONVASSIST_AGENT_SENDER", "dry-run")
    code, output = invoke("status", "--offline")
    assert code == 0, output
    flat = " ".join(output.split())  # the table folds long values
    assert "sender dry-run: nothing is sent, each message goes to" in flat
    assert "sent.jsonl" in flat.replace(" ", "")
    assert re.search(r"entry-2: failed \(Messages is off\), not reported yet .*entry-1: sent", flat)
    assert SECRET not in output
    monkeypatch.setenv("CONVASSIST_AGENT_SENDER", "messages")
    code, output = invoke("status", "--offline", "--json")
    data = json.loads(output)
    assert data["sender"] == "messages" and data["sent_log"] is None
    assert [e["entry_id"] for e in data["recent_sends"]] == ["entry-2", "entry-1"]
    assert SECRET not in output


async def test_a_send_makes_the_run_loop_sync_soon(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    db.write_bytes(b"")
    syncs: list[float] = []
    stop = asyncio.Event()

    async def sync() -> SyncReport:
        syncs.append(time.monotonic())
        return report()

    daemon = Daemon(sync, ChangeWatcher(db), poll_interval=3600, debounce=0.2, stop=stop, tick=0.05)
    task = asyncio.create_task(daemon.run())
    await asyncio.sleep(0.3)
    assert len(syncs) == 1
    daemon.poke()
    await asyncio.sleep(0.6)
    assert len(syncs) == 2  # without a change of chat.db, long before the poll interval
    await asyncio.sleep(0.4)
    assert len(syncs) == 2
    stop.set()
    await asyncio.wait_for(task, 2)
