"""Benchmark: the Training page's online measures (`server/measures/service.py`) on a year of
history, against a raw scan of the same period's messages.

Builds a migrated database (a SQLite file, or its own database on the local PostgreSQL
server) with `--messages` messages over 365 days in 500 conversations: 80% incoming (2% of
them reactions), 40% of the incoming ones with a suggestion from one of three models, a
third of those sent through the outbox (half of them edited), some accepted in the console,
some answered from the phone. Then times, best of `--repeat`:

* measures: `online_measures(session, days)` for 30 and 365 days;
* raw: `SELECT count(*) FROM messages WHERE sent_at in the period`.

    .venv/bin/python bench/online_measures.py [--messages 100000] [--backend sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from bench.common import POSTGRES  # noqa: E402

from convassist.core.db import create_sessionmaker  # noqa: E402
from convassist.core.settings import normalize_database_url  # noqa: E402
from convassist.server import migrate  # noqa: E402
from convassist.server.measures.service import online_measures  # noqa: E402
from convassist.server.models import (  # noqa: E402
    Conversation,
    GeneratedResponse,
    Message,
    OutboxMessage,
    TrainingSample,
)

VERSIONS = ["m@b179c9523d0e", "m@b179c9523d0e+lora-one", "m@b179c9523d0e+lora-two"]
REPLIES = ["See you at 7", "Sounds good, thanks!", "On my way, be there in ten minutes"]


def rows(count: int, now: datetime, seed: int = 7) -> dict[str, list[dict[str, Any]]]:
    draw = random.Random(seed)
    conversations = [
        {"id": uuid.uuid4(), "imessage_id": f"chat{i}", "is_group": False, "message_count": 0}
        for i in range(500)
    ]
    out: dict[str, list[dict[str, Any]]] = {
        "conversations": conversations, "messages": [], "responses": [], "outbox": [],
        "samples": [],
    }  # fmt: skip
    for i in range(count):
        conversation = draw.choice(conversations)["id"]
        sent_at = now - timedelta(seconds=draw.uniform(0, 365 * 86400))
        incoming = draw.random() < 0.8
        reaction = incoming and draw.random() < 0.02
        message = {
            "id": uuid.uuid4(), "conversation_id": conversation, "imessage_guid": f"g{i}",
            "direction": "incoming" if incoming else "outgoing",
            "message_type": "reaction" if reaction else "text", "text": "hello there",
            "sent_at": sent_at, "is_unsent": False,
        }  # fmt: skip
        out["messages"].append(message)
        if not incoming or reaction or draw.random() >= 0.4:
            continue
        created = sent_at + timedelta(seconds=3)
        fate = draw.random()
        slot = draw.choice([0, 0, 0, 1, 2])
        status = "completed"
        if fate < 0.33:
            status = "accepted"
            text = REPLIES[slot] if draw.random() < 0.5 else REPLIES[slot] + " :) see you"
            out["outbox"].append({
                "id": uuid.uuid4(), "conversation_id": conversation, "text": text,
                "response_id": None, "candidate_index": slot,
                "status": draw.choice(["sent", "confirmed", "confirmed", "failed", "expired"]),
                "expires_at": created + timedelta(minutes=10), "attempts": 1,
            })  # fmt: skip
        elif fate < 0.45:
            status = draw.choice(["accepted", "edited", "rejected"])
        response = {
            "id": uuid.uuid4(), "message_id": message["id"], "prompt": "Them: hi\nMe:",
            "candidates": [{"text": t, "confidence": 0.5} for t in REPLIES],
            "chosen_index": slot if status in ("accepted", "edited") else None,
            "edited_response": REPLIES[slot] + " tomorrow" if status == "edited" else None,
            "model_version": VERSIONS[min(2, int((now - sent_at).days / 122))],
            "status": status, "auto": True, "created_at": created,
        }  # fmt: skip
        out["responses"].append(response)
        if status == "accepted" and fate < 0.33:
            out["outbox"][-1]["response_id"] = response["id"]
        elif status == "completed" and draw.random() < 0.3:
            out["samples"].append({
                "id": uuid.uuid4(), "input_context": "Them: hi\nMe:", "expected_output": "ok",
                "source": "replied", "quality": 1.0, "response_id": response["id"],
            })  # fmt: skip
    return out


async def fill(url: str, data: dict[str, list[dict[str, Any]]]) -> None:
    engine = create_async_engine(url)
    tables = [
        (Conversation, "conversations"), (Message, "messages"), (GeneratedResponse, "responses"),
        (OutboxMessage, "outbox"), (TrainingSample, "samples"),
    ]  # fmt: skip
    async with engine.begin() as conn:
        for model, key in tables:
            for start in range(0, len(data[key]), 5000):
                await conn.execute(sa.insert(model), data[key][start : start + 5000])
    await engine.dispose()


async def measure(url: str, now: datetime, repeat: int) -> None:
    engine = create_async_engine(url)
    sessions = create_sessionmaker(engine)
    for days in (30, 365):
        since = now - timedelta(days=days)
        best_measures = best_raw = float("inf")
        for _ in range(repeat):
            async with sessions() as session:
                started = time.perf_counter()
                result = await online_measures(session, days, now=now)
                best_measures = min(best_measures, time.perf_counter() - started)
                started = time.perf_counter()
                await session.scalar(sa.select(sa.func.count()).where(Message.sent_at >= since))
                best_raw = min(best_raw, time.perf_counter() - started)
        t = result.totals
        print(
            f"days={days:<3} measures {best_measures * 1000:7.1f} ms  raw scan "
            f"{best_raw * 1000:6.1f} ms  ratio {best_measures / best_raw:5.1f}x  "
            f"(incoming {t.incoming_messages}, suggestions {t.suggestions}, "
            f"edits {t.edits.count}, adapters {len(result.adapters)})"
        )
    await engine.dispose()


async def analyze(url: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(sa.text("ANALYZE"))
    await engine.dispose()


async def admin(statement: str) -> None:
    engine = create_async_engine(normalize_database_url(POSTGRES), isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(sa.text(statement))
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    now = datetime.now(UTC)
    data = rows(args.messages, now)
    with tempfile.TemporaryDirectory() as tmp:
        name = f"convassist_bench_{uuid.uuid4().hex[:8]}"
        if args.backend == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp}/bench.sqlite3"
        else:
            asyncio.run(admin(f'CREATE DATABASE "{name}"'))
            url = normalize_database_url(POSTGRES).rsplit("/", 1)[0]
            url = f"{url}/{name}"
        try:
            migrate.upgrade(url)
            asyncio.run(fill(url, data))
            if args.backend == "postgresql":
                asyncio.run(analyze(url))
            print(f"{args.backend}: {args.messages:,} messages over 365 days")
            asyncio.run(measure(url, now, args.repeat))
        finally:
            if args.backend == "postgresql":
                asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
