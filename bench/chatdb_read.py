"""Benchmark: messages per second read and decoded from chat.db vs a raw sqlite3 SELECT.

Generates a chat.db on the real macOS 15 schema (copied from the shared fixture `test.db`) with
100,000 messages (about 4% of them carrying the 35 real fixture `attributedBody` blobs), then,
in the same run, times

* raw:    the reader's own SELECT (same columns, same joins, same pages), `fetchall()` only;
* reader: `ChatDB.read_messages` over the same pages (decode attributedBody, dates, types…).

The goal is reader ≥ 0.5x raw. Best of `--repeat` runs each, alternating.

Then (unless `--no-sync`) it times a full first sync of the same chat.db into a real server:
a fresh PostgreSQL database on `--postgres`, migrated, the API server (uvicorn) on 127.0.0.1 in
a subprocess, a device registered and approved through the API, and the agent's own
`sync_once` (windows, per-chat batches, cursor commits, HTTP) with `--batch` and
`--concurrency`; then a second sync, which must send nothing. The server's row count is checked.

    .venv/bin/python bench/chatdb_read.py [--messages 100000] [--page 1000] [--repeat 3]
        [--no-sync] [--postgres postgresql://postgres@127.0.0.1:5432] [--batch 500]
        [--concurrency 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import approved_device, free_port, owner_headers, set_owner  # noqa: E402
from tests.agent.chatdb_factory import CHATDB_FIXTURES, FIXTURE_DB, build_chatdb  # noqa: E402

from convassist.agent import typedstream  # noqa: E402
from convassist.agent.chatdb import ChatCursor, ChatDB  # noqa: E402
from convassist.agent.client import TokenGrant  # noqa: E402
from convassist.agent.registration import save_grant  # noqa: E402
from convassist.agent.runner import sync_once  # noqa: E402
from convassist.agent.settings import AgentSettings  # noqa: E402
from convassist.core.logging import configure_logging  # noqa: E402
from convassist.core.settings import normalize_database_url  # noqa: E402
from convassist.server import migrate  # noqa: E402

SERVER = """
import sys
import uvicorn
from convassist.core.logging import configure_logging
from convassist.core.settings import ServerSettings
from convassist.server.app import create_app

configure_logging("WARNING", "json", component="server")
uvicorn.run(create_app(ServerSettings()), host="127.0.0.1", port=int(sys.argv[1]),
            log_config=None, access_log=False, server_header=False)
"""


def time_raw(path: Path, sql: str, page: int) -> tuple[float, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    start = time.perf_counter()
    after, count = 0, 0
    while True:
        rows = conn.execute(sql, (after, page)).fetchall()
        if not rows:
            break
        count += len(rows)
        after = rows[-1][0]
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed, count


def time_reader(path: Path, page: int) -> tuple[float, int]:
    with ChatDB.open(path) as db:
        start = time.perf_counter()
        after, count = 0, 0
        while True:
            messages = db.read_messages(after, page)
            if not messages:
                break
            count += len(messages)
            after = messages[-1].rowid
        return time.perf_counter() - start, count


async def pg_admin(pg: str, statement: str) -> None:
    conn = await asyncpg.connect(f"{pg}/postgres")
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def register(base: str, state_dir: Path) -> AgentSettings:
    """Owner password, device register → approve → verify; the token saved like the CLI does."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for _ in range(300):
            try:
                if (await client.get("/api/health")).status_code == 200:
                    break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        await set_owner(os.environ["DATABASE_URL"])
        verified = await approved_device(client, await owner_headers(client))
    settings = AgentSettings(state_dir=state_dir, token_store="file")
    grant = TokenGrant(
        verified["deviceId"], verified["token"], datetime.fromisoformat(verified["expiresAt"])
    )
    save_grant(settings, base, "bench", grant)
    return settings


def time_first_sync(args: argparse.Namespace, chat_db: Path, tmp: Path) -> tuple[float, int]:
    """Wall time of the agent's first full sync into a fresh server on PostgreSQL."""
    pg = args.postgres.rstrip("/")
    name = f"convassist_bench_agent_{uuid.uuid4().hex[:8]}"
    database = normalize_database_url(f"{pg}/{name}")
    asyncio.run(pg_admin(pg, f'CREATE DATABASE "{name}"'))
    migrate.upgrade(database)
    port = free_port()
    os.environ["DATABASE_URL"] = database
    env = {
        **os.environ,
        "CONVASSIST_DATA_DIR": str(tmp / "server-data"),
        "CONVASSIST_SECRET_KEY": uuid.uuid4().hex,
        "CONVASSIST_DEVICE_POLL_INTERVAL": "0",
        "PYTHONPATH": str(REPO / "src"),
    }
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        settings = asyncio.run(register(base, tmp / "agent-state"))
        settings.batch_size, settings.concurrency = args.batch, args.concurrency
        start = time.perf_counter()
        report = asyncio.run(sync_once(settings, db_path=chat_db))
        elapsed = time.perf_counter() - start
        start = time.perf_counter()
        again = asyncio.run(sync_once(settings, db_path=chat_db))
        second = time.perf_counter() - start

        async def count() -> int:
            conn = await asyncpg.connect(f"{pg}/{name}")
            try:
                return int(await conn.fetchval("SELECT count(*) FROM messages"))
            finally:
                await conn.close()

        stored = asyncio.run(count())
    finally:
        server.terminate()
        server.wait(timeout=20)
        asyncio.run(pg_admin(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    if stored != report.counts.inserted or again.counts.sent:
        raise SystemExit(f"sync stored {stored}, inserted {report.counts.inserted}")
    print(
        f"first sync:  {report.counts.sent:,} messages in {report.batches:,} batches, "
        f"{elapsed:.1f}s wall (batch {settings.batch_size}, concurrency {settings.concurrency})"
    )
    print(f"second sync: {again.counts.sent} messages sent, {second * 1000:.0f} ms")
    return elapsed, report.counts.sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-sync", dest="sync", action="store_false")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    if not FIXTURE_DB.is_file():
        print(f"fixture chat.db not found at {FIXTURE_DB} (set CONVASSIST_SHARED_DIR)")
        return 2
    configure_logging(level="WARNING", fmt="console")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chat.db"
        start = time.perf_counter()
        # About 4% of the bodies are the 35 real fixture blobs (one truncated: the slow path).
        real_blobs: dict[str, str | None] = {
            blob.name: None for blob in (CHATDB_FIXTURES / "typedstream").iterdir()
        }
        build_chatdb(path, messages=args.messages, chats=400, handles=600, fixture_blobs=real_blobs)
        print(f"generated {args.messages:,} messages in {time.perf_counter() - start:.1f}s")

        with ChatDB.open(path) as db:
            sql = db.message_sql
            start = time.perf_counter()
            changed = db.changed_since(ChatCursor(), limit=args.messages)
            changes_s = time.perf_counter() - start
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        bodies = [row[0] for row in conn.execute("SELECT attributedBody FROM message") if row[0]]
        conn.close()
        fast = sum(typedstream._fast_text(b) is not None for b in bodies)
        sample = bodies[:2000]
        start = time.perf_counter()
        for body in sample:
            typedstream._library_text(body)
        library_rate = len(sample) / (time.perf_counter() - start)
        start = time.perf_counter()
        for body in sample:
            typedstream.decode_attributed_body(body)
        decode_rate = len(sample) / (time.perf_counter() - start)

        raw_best = reader_best = float("inf")
        count = 0
        for _ in range(args.repeat):
            raw_s, count = time_raw(path, sql, args.page)
            reader_s, reader_count = time_reader(path, args.page)
            assert reader_count == count, (reader_count, count)
            raw_best, reader_best = min(raw_best, raw_s), min(reader_best, reader_s)
        sync_s, synced = time_first_sync(args, path, Path(tmp)) if args.sync else (0.0, 0)

    raw_rate, reader_rate = count / raw_best, count / reader_best
    print(f"bodies on the fast path: {fast:,} of {len(bodies):,}")
    print(f"decode: {decode_rate:,.0f} bodies/s; pytypedstream alone: {library_rate:,.0f} bodies/s")
    print(f"raw SELECT:  {raw_rate:>10,.0f} msg/s  ({raw_best:.3f}s for {count:,})")
    print(f"ChatDB read: {reader_rate:>10,.0f} msg/s  ({reader_best:.3f}s)")
    print(f"ratio reader/raw: {reader_rate / raw_rate:.2f}x  (goal >= 0.50x)")
    print(f"changed_since full scan: {len(changed):,} changed rows in {changes_s * 1000:.0f} ms")
    if args.sync:
        sync_rate = synced / sync_s
        print(
            f"first sync into the server: {sync_rate:>10,.0f} msg/s  "
            f"({sync_s:.1f}s for {synced:,}; {sync_rate / raw_rate:.3f}x the raw SELECT)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
