"""Benchmark: conversation search over message text, on SQLite and on PostgreSQL.

Stores `--messages` messages (100,000 by default: real texting from the Chit-Chat corpus, in
file order, dealt into `--conversations` conversations of equal size, two participants each)
into a fresh database migrated to head (a temporary SQLite file; a throwaway PostgreSQL
database on `BENCH_POSTGRES_URL`, vacuumed and analysed after loading as autovacuum would).
Then, in the same run, for a rare word, a common word, a type-ahead prefix and two words, it
times

* search: `conversations.service.list_conversations(q=…, limit=50)`, the whole first page
  the API and the web page answer (names, handles and message text, each conversation with its
  newest match and excerpt), one session per call;
* index:  `search.newest_matches` alone, the full-text part (every conversation's newest
  matching message);
* like:   the naive scan an unindexed search would do for message text alone:
  `SELECT conversation_id, max(sent_at) FROM messages WHERE text LIKE '%word%' (ILIKE on
  PostgreSQL) AND NOT is_unsent GROUP BY conversation_id` (the last word only).

Each query is warmed up, then run `--repeat` times, alternating; medians are compared.
The goal is a few milliseconds per search.

    .venv/bin/python bench/search.py [--messages 100000] [--conversations 1000] [--repeat 21]
        [--backend sqlite --backend postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import cpu, create_database, drop_database, load_chitchat  # noqa: E402

from convassist.core.db import create_engine, create_sessionmaker  # noqa: E402
from convassist.core.settings import normalize_database_url  # noqa: E402
from convassist.server import migrate  # noqa: E402
from convassist.server.conversations import search, service  # noqa: E402
from convassist.server.models import (  # noqa: E402
    Conversation,
    ConversationParticipant,
    Message,
)

START = datetime(2025, 1, 1, tzinfo=UTC)
WORD = re.compile(r"[^\W_]+")


def corpus_texts(count: int) -> list[str]:
    texts = [
        message["text"]
        for conversation in load_chitchat().values()
        for turn in conversation["messages"]
        for message in turn
        if message["text"].strip()
    ]
    if len(texts) < count:
        texts = (texts * (count // len(texts) + 1))[:count]
    return texts[:count]


def pick_queries(texts: list[str]) -> dict[str, str]:
    """A rare word, the most common word of 3+ letters, a prefix and two frequent words."""
    counts = Counter(word.lower() for text in texts for word in set(WORD.findall(text)))
    frequent = [w for w, _ in counts.most_common() if len(w) >= 3 and w.isalpha()]
    rare = next(w for w, n in sorted(counts.items()) if n == 10 and len(w) >= 7 and w.isalpha())
    return {
        "rare word": rare,
        "common word": frequent[0],
        "prefix": frequent[40][:3],
        "two words": f"{frequent[5]} {frequent[12]}",
    }


async def load(url: str, texts: list[str], conversations: int) -> None:
    engine = create_engine(url)
    per = len(texts) // conversations
    ids = [uuid.uuid4() for _ in range(conversations)]
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(Conversation),
                [
                    {
                        "id": cid,
                        "imessage_id": f"iMessage;-;+1555{i:07d}",
                        "display_name": f"Friend {i}",
                        "message_count": per,
                        "last_message_at": START + timedelta(minutes=(i + 1) * per - 1),
                    }
                    for i, cid in enumerate(ids)
                ],
            )
            await conn.execute(
                sa.insert(ConversationParticipant),
                [
                    {"id": uuid.uuid4(), "conversation_id": cid, "handle": f"+1555{i:07d}"}
                    for i, cid in enumerate(ids)
                ],
            )
            rows = [
                {
                    "id": uuid.uuid4(),
                    "conversation_id": ids[min(n // per, conversations - 1)],
                    "imessage_guid": f"bench-{n}",
                    "sender_id": None if n % 2 else "+15550000000",
                    "direction": "outgoing" if n % 2 else "incoming",
                    "text": text,
                    "sent_at": START + timedelta(minutes=n),
                    "is_unsent": n % 500 == 0,
                }
                for n, text in enumerate(texts)
            ]
            for first in range(0, len(rows), 5000):
                await conn.execute(sa.insert(Message), rows[first : first + 5000])
        if url.startswith("postgresql"):
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(sa.text("VACUUM ANALYZE"))
    finally:
        await engine.dispose()


LIKE = {
    "sqlite": "SELECT conversation_id, max(sent_at) FROM messages"
    " WHERE text LIKE :pattern AND NOT is_unsent GROUP BY conversation_id",
    "postgresql": "SELECT conversation_id, max(sent_at) FROM messages"
    " WHERE text ILIKE :pattern AND NOT is_unsent GROUP BY conversation_id",
}


async def measure(url: str, queries: dict[str, str], repeat: int) -> list[dict[str, Any]]:
    engine = create_engine(url)
    maker = create_sessionmaker(engine)
    dialect = engine.dialect.name

    async def page(q: str) -> tuple[float, int, int]:
        async with maker() as session:
            started = time.perf_counter()
            page = await service.list_conversations(session, q=q, limit=50, cursor=None)
            elapsed = time.perf_counter() - started
        return elapsed, len(page.items), sum(item.match is not None for item in page.items)

    async def index(q: str) -> float:
        matches = search.newest_matches(dialect, q)
        assert matches is not None
        async with maker() as session:
            started = time.perf_counter()
            (await session.execute(sa.select(matches))).all()
            return time.perf_counter() - started

    async def like(q: str) -> tuple[float, int]:
        pattern = "%" + q.split()[-1] + "%"
        async with maker() as session:
            started = time.perf_counter()
            rows = (await session.execute(sa.text(LIKE[dialect]), {"pattern": pattern})).all()
            return time.perf_counter() - started, len(rows)

    async def matching_messages(q: str) -> int:
        *whole, last = q.split()
        condition = " AND ".join(
            [*(f"lower(text) LIKE '%{w}%'" for w in whole), f"lower(text) LIKE '%{last}%'"]
        )
        async with maker() as session:
            sql = f"SELECT count(*) FROM messages WHERE {condition}"
            return int((await session.execute(sa.text(sql))).scalar_one())

    results = []
    try:
        for label, q in queries.items():
            for _ in range(3):
                await page(q)
                await index(q)
                await like(q)
            searches, indexes, likes = [], [], []
            for _ in range(repeat):
                elapsed, items, matched = await page(q)
                searches.append(elapsed)
                indexes.append(await index(q))
                like_elapsed, like_rows = await like(q)
                likes.append(like_elapsed)
            results.append(
                {
                    "backend": dialect,
                    "query": f"{label}: {q!r}",
                    "substring_messages": await matching_messages(q),
                    "like_conversations": like_rows,
                    "page": f"{items} ({matched} by text)",
                    "search_ms": statistics.median(searches) * 1000,
                    "search_p90_ms": statistics.quantiles(searches, n=10)[-1] * 1000,
                    "index_ms": statistics.median(indexes) * 1000,
                    "like_ms": statistics.median(likes) * 1000,
                }
            )
    finally:
        await engine.dispose()
    return results


@asynccontextmanager
async def loaded_database(backend: str, texts: list[str], conversations: int) -> AsyncIterator[str]:
    """A fresh database migrated to head and loaded with `texts` (`load`); yields its URL.
    SQLite: a temporary file; PostgreSQL: a throwaway database on `BENCH_POSTGRES_URL`."""

    async def loaded(url: str) -> str:
        await asyncio.to_thread(migrate.upgrade, url)
        started = time.perf_counter()
        await load(url, texts, conversations)
        print(f"{backend}: loaded in {time.perf_counter() - started:.1f} s", flush=True)
        return url

    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield await loaded(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.sqlite3'}")
        return
    name = f"convassist_bench_{uuid.uuid4().hex[:8]}"
    try:
        yield await loaded(normalize_database_url(await create_database(name)))
    finally:
        await drop_database(name)


def database_arguments(description: str) -> argparse.Namespace:
    """The options of a benchmark on `loaded_database`s."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    return parser.parse_args()


def print_machine(texts: list[str], conversations: int) -> None:
    load_1, load_5, _ = os.getloadavg()
    print(
        f"CPU: {cpu()} ({os.cpu_count()} cores, load average {load_1:.1f} / {load_5:.1f}); "
        f"{len(texts)} messages in {conversations} conversations"
    )


async def main() -> None:
    args = database_arguments(__doc__.split("\n")[0])
    texts = corpus_texts(args.messages)
    queries = pick_queries(texts)
    print_machine(texts, args.conversations)
    rows = []
    for backend in args.backend or ["sqlite", "postgresql"]:
        async with loaded_database(backend, texts, args.conversations) as url:
            rows += await measure(url, queries, args.repeat)
    print(
        f"\n{'backend':<11} {'query':<34} {'substr msgs':>11} {'page':>14} "
        f"{'search ms':>9} {'p90':>6} {'index ms':>8} {'LIKE ms':>8} {'LIKE/search':>11}"
    )
    for r in rows:
        print(
            f"{r['backend']:<11} {r['query']:<34} {r['substring_messages']:>11} {r['page']:>14} "
            f"{r['search_ms']:>9.2f} {r['search_p90_ms']:>6.2f} {r['index_ms']:>8.2f} "
            f"{r['like_ms']:>8.1f} "
            f"{r['like_ms'] / r['search_ms']:>10.1f}x"
        )


if __name__ == "__main__":
    asyncio.run(main())
