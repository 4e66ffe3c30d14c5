"""Benchmark: messages per second through `POST /api/sync/messages` into PostgreSQL.

Creates its own database on the local PostgreSQL server, migrates it, starts the real API
server (uvicorn, in a subprocess) on 127.0.0.1, registers a device through the API, then in
the same run times

* api: `--messages` messages in batches of `--batch`, posted over HTTP by `--concurrency`
  connections (request bodies are encoded before the clock starts);
* raw: asyncpg `executemany` of the same rows with the same
  `INSERT … ON CONFLICT (imessage_guid) DO UPDATE … WHERE <changed>`, one transaction per
  batch, `--concurrency` connections, into the emptied messages table.

Every run starts from an emptied and freshly analysed messages table (the worst case for
plans PostgreSQL caches while a table is small). The goal is api ≥ 0.5x raw. Both run
`--repeat` times, alternating; the best of each is compared (other load on the machine
makes single runs noisy).

    .venv/bin/python bench/sync_ingest.py [--messages 100000] [--batch 500] [--concurrency 4]
                                          [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from bench.common import approved_device, free_port, owner_headers, set_owner  # noqa: E402

from convassist.core.settings import normalize_database_url  # noqa: E402
from convassist.server import migrate  # noqa: E402

GOAL = 0.5
CONVERSATIONS = 20

SERVER = """
import sys
import uvicorn
from convassist.core.logging import configure_logging
from convassist.core.settings import ServerSettings
from convassist.server.app import create_app

settings = ServerSettings()
configure_logging(settings.log_level, "json", component="server")
uvicorn.run(create_app(settings), host="127.0.0.1", port=int(sys.argv[1]), log_config=None,
            access_log=False, server_header=False)
"""

RAW_UPSERT = """
INSERT INTO messages (id, conversation_id, imessage_guid, sender_id, direction, message_type,
                      text, sent_at, edited_at, is_unsent, reply_to_guid, service, device_id,
                      created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (imessage_guid) DO UPDATE SET
    sender_id = excluded.sender_id, direction = excluded.direction,
    message_type = excluded.message_type, text = excluded.text, sent_at = excluded.sent_at,
    edited_at = excluded.edited_at, is_unsent = excluded.is_unsent,
    reply_to_guid = excluded.reply_to_guid, service = excluded.service,
    updated_at = excluded.updated_at
WHERE messages.conversation_id = excluded.conversation_id AND (
    messages.sender_id IS DISTINCT FROM excluded.sender_id
    OR messages.direction IS DISTINCT FROM excluded.direction
    OR messages.message_type IS DISTINCT FROM excluded.message_type
    OR messages.text IS DISTINCT FROM excluded.text
    OR messages.sent_at IS DISTINCT FROM excluded.sent_at
    OR messages.edited_at IS DISTINCT FROM excluded.edited_at
    OR messages.is_unsent IS DISTINCT FROM excluded.is_unsent
    OR messages.reply_to_guid IS DISTINCT FROM excluded.reply_to_guid
    OR messages.service IS DISTINCT FROM excluded.service)
"""

WORDS = (
    "sure",
    "sounds",
    "good",
    "see",
    "you",
    "at",
    "eight",
    "did",
    "you",
    "get",
    "my",
    "message",
    "running",
    "late",
    "haha",
    "that's",
    "great",
    "can't",
    "wait",
    "let",
    "me",
    "check",
    "tomorrow",
    "works",
    "for",
    "me",
)


def make_batches(total: int, size: int) -> list[dict[str, Any]]:
    """Sync payloads: batch i belongs to conversation i % CONVERSATIONS, realistic texts."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    batches = []
    for b, first in enumerate(range(0, total, size)):
        chat = f"iMessage;-;+1555{b % CONVERSATIONS:07d}"
        handle = chat.rsplit(";", 1)[1]
        messages = []
        for n in range(first, min(first + size, total)):
            incoming = n % 3 != 0
            words = 3 + n % 12
            text = " ".join(WORDS[(n + k) % len(WORDS)] for k in range(words))
            messages.append(
                {
                    "imessageGuid": f"{uuid.UUID(int=n)}".upper(),
                    "senderId": handle if incoming else None,
                    "direction": "incoming" if incoming else "outgoing",
                    "messageType": "text",
                    "text": text,
                    "sentAt": (start + timedelta(seconds=37 * n)).isoformat(),
                    "service": "iMessage",
                }
            )
        batches.append(
            {
                "conversationId": chat,
                "displayName": None,
                "isGroup": False,
                "service": "iMessage",
                "participants": [handle],
                "messages": messages,
            }
        )
    return batches


async def admin(pg: str, statement: str) -> None:
    conn = await asyncpg.connect(f"{pg}/postgres")
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def wait_until_up(client: httpx.AsyncClient, server: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        if server.poll() is not None:
            raise SystemExit("the API server exited during start-up")
        try:
            if (await client.get("/api/health")).status_code < 500:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)
    raise SystemExit("the API server did not start")


async def run_api(
    client: httpx.AsyncClient, token: str, bodies: list[bytes], concurrency: int
) -> tuple[float, int]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    queue = list(reversed(bodies))
    inserted = 0

    async def worker() -> None:
        nonlocal inserted
        while queue:
            body = queue.pop()
            resp = await client.post("/api/sync/messages", content=body, headers=headers)
            if resp.status_code != 200:
                raise SystemExit(f"sync failed: {resp.status_code} {resp.text[:300]}")
            inserted += resp.json()["inserted"]

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, inserted


def raw_rows(
    batches: list[dict[str, Any]], conversation_ids: dict[str, uuid.UUID], device_id: uuid.UUID
) -> list[list[tuple[Any, ...]]]:
    out = []
    for batch in batches:
        conversation_id = conversation_ids[batch["conversationId"]]
        rows = []
        for m in sorted(batch["messages"], key=lambda m: m["imessageGuid"]):
            now = datetime.now(UTC)
            rows.append(
                (
                    uuid.uuid4(),
                    conversation_id,
                    m["imessageGuid"],
                    m["senderId"],
                    m["direction"],
                    m["messageType"],
                    m["text"],
                    datetime.fromisoformat(m["sentAt"]),
                    None,
                    False,
                    None,
                    m["service"],
                    device_id,
                    now,
                    now,
                )
            )
        out.append(rows)
    return out


async def run_raw(
    database: str, batches: list[list[tuple[Any, ...]]], concurrency: int
) -> tuple[float, int]:
    pool = await asyncpg.create_pool(database, min_size=concurrency, max_size=concurrency)
    queue = list(reversed(batches))

    async def worker() -> None:
        async with pool.acquire() as conn:
            while queue:
                rows = queue.pop()
                async with conn.transaction():
                    await conn.executemany(RAW_UPSERT, rows)

    try:
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        async with pool.acquire() as conn:
            count = await conn.fetchval("SELECT count(*) FROM messages")
    finally:
        await pool.close()
    return elapsed, int(count)


async def reset(database: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("TRUNCATE messages CASCADE")
        await conn.execute("UPDATE conversations SET message_count = 0, last_message_at = NULL")
        await conn.execute("UPDATE devices SET messages_synced = 0")
        await conn.execute("VACUUM ANALYZE messages")
    finally:
        await conn.close()


async def check_api_result(database: str, expected: int) -> None:
    """Every message stored once and every counter right."""
    conn = await asyncpg.connect(database)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM messages")
        drift = await conn.fetchval(
            "SELECT count(*) FROM conversations c WHERE c.message_count <> "
            "(SELECT count(*) FROM messages m WHERE m.conversation_id = c.id)"
        )
    finally:
        await conn.close()
    if stored != expected or drift:
        raise SystemExit(f"API run stored {stored} messages ({drift} counters wrong)")


async def main_async(args: argparse.Namespace) -> int:
    pg = args.postgres.rstrip("/")
    name = f"convassist_bench_{uuid.uuid4().hex[:8]}"
    database = f"{pg}/{name}"
    sqlalchemy_url = normalize_database_url(database)
    await admin(pg, f'CREATE DATABASE "{name}"')
    server: subprocess.Popen[bytes] | None = None
    data_dir = tempfile.TemporaryDirectory(prefix="convassist-bench-")
    try:
        await asyncio.to_thread(migrate.upgrade, sqlalchemy_url)
        await set_owner(sqlalchemy_url)
        batches = make_batches(args.messages, args.batch)
        bodies = [json.dumps(b).encode() for b in batches]
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": sqlalchemy_url,
            "CONVASSIST_DATA_DIR": data_dir.name,
            "CONVASSIST_SECRET_KEY": uuid.uuid4().hex,
            "CONVASSIST_DEVICE_POLL_INTERVAL": "0",
            "PYTHONPATH": str(REPO / "src"),
        }
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL if not args.server_log else None,
        )
        limits = httpx.Limits(max_connections=args.concurrency)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=120
        ) as client:
            await wait_until_up(client, server)
            token = (await approved_device(client, await owner_headers(client)))["token"]
            conn = await asyncpg.connect(database)
            device_id = await conn.fetchval("SELECT id FROM devices")
            await conn.close()

            api_times, raw_times = [], []
            rows: list[list[tuple[Any, ...]]] = []
            for round_ in range(args.repeat):
                await reset(database)
                elapsed, inserted = await run_api(client, token, bodies, args.concurrency)
                if inserted != args.messages:
                    raise SystemExit(f"API run inserted {inserted} of {args.messages}")
                await check_api_result(database, args.messages)
                api_times.append(elapsed)
                if not rows:
                    conn = await asyncpg.connect(database)
                    ids = {
                        r["imessage_id"]: r["id"]
                        for r in await conn.fetch("SELECT id, imessage_id FROM conversations")
                    }
                    await conn.close()
                    rows = raw_rows(batches, ids, device_id)
                await reset(database)
                elapsed, count = await run_raw(database, rows, args.concurrency)
                if count != args.messages:
                    raise SystemExit(f"raw run stored {count} of {args.messages}")
                raw_times.append(elapsed)
                print(
                    f"round {round_ + 1}: api {args.messages / api_times[-1]:,.0f} msg/s, "
                    f"raw {args.messages / raw_times[-1]:,.0f} msg/s"
                )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        data_dir.cleanup()
        if not args.keep:
            await admin(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    api_rate = args.messages / min(api_times)
    raw_rate = args.messages / min(raw_times)
    ratio = api_rate / raw_rate
    print(
        f"\n{args.messages:,} messages in batches of {args.batch}, "
        f"{args.concurrency} concurrent connections, best of {args.repeat}"
    )
    print(f"raw asyncpg executemany upsert: {raw_rate:>10,.0f} messages/s")
    print(f"POST /api/sync/messages:        {api_rate:>10,.0f} messages/s")
    print(f"ratio api/raw: {ratio:.2f} (goal >= {GOAL}): {'met' if ratio >= GOAL else 'MISSED'}")
    return 0 if ratio >= GOAL else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432"),
        help="PostgreSQL server URL without a database (trust auth)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--server-log", action="store_true", help="show the server's log")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
