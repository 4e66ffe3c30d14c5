"""Benchmark: the inbox (`GET /api/inbox`, the home page `/`) on PostgreSQL, 10k conversations.

Creates its own PostgreSQL database, loads bench/ui.py's 10,000 conversations and 100,000
messages, then makes `--waiting` of them (default 3,000) wait for a reply since their newest
incoming message, each with a ready suggestion of three candidates and an older retired one,
plus old acted-on suggestions elsewhere. It starts the real API server (`convassist server`,
uvicorn, in a subprocess, automatic suggestions off) and, in the same run, times with one
keep-alive client, alternating so that all see the same machine load:

- raw:   the SQL statements one `GET /api/inbox?limit=20` runs (captured in-process from the
         inbox service), executed directly with asyncpg: the database's share;
- API:   `GET /api/inbox?limit=20` (bearer token);
- page:  `GET /` (cookie session; the same 20 conversations as HTML);
- poll:  `GET /` as the page's refresh asks for it (HTMX, the list alone);
- page 5: `GET /api/inbox?limit=20&cursor=…` (the fifth page).

Prints medians (after a warm-up) and ratios. Goals: page ≤ 1.5x API, API < 50 ms.

    .venv/bin/python bench/inbox.py [--requests 200] [--waiting 3000] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    PASSWORD,
    create_database,
    drop_database,
    server_on,
    set_owner,
    timed,
)
from bench.ui import load

from convassist.core.settings import normalize_database_url
from convassist.server import migrate

PAGE = 20
RATIO_GOAL = 1.5
LATENCY_GOAL_MS = 50.0

CANDIDATES = (
    '[{"text": "sounds good, see you then!", "confidence": 0.81}, '
    '{"text": "can we make it 8:30?", "confidence": 0.64}, '
    '{"text": "sorry, can\'t tonight", "confidence": 0.42}]'
)

WAIT = [
    # A share of the conversations (spread over all ages: the number's last digit) waits
    # since its newest incoming message.
    """
    UPDATE conversations c SET awaiting_reply_since = m.sent_at
    FROM (SELECT DISTINCT ON (conversation_id) conversation_id, sent_at FROM messages
          WHERE direction = 'incoming' ORDER BY conversation_id, sent_at DESC, id DESC) m
    WHERE m.conversation_id = c.id
      AND split_part(c.imessage_id, '-', 2)::int % 10 < {tenths}
    """,
    # The waiting message's ready suggestion, and an older one it replaced (retired; the
    # owner's own request, since a message has one live automatic suggestion at most).
    """
    INSERT INTO generated_responses (id, message_id, prompt, response, candidates, confidence,
        model_version, status, auto, generated_at, retired_at, created_at, updated_at)
    SELECT gen_random_uuid(), m.id, 'them: hi' || chr(10) || 'Me:', 'sounds good, see you then!',
           '{candidates}'::jsonb, 0.81, 'bench', 'completed', k = 1, now(),
           CASE WHEN k = 0 THEN now() END, now() - (1 - k) * interval '1 hour',
           now()
    FROM conversations c
    JOIN messages m ON m.conversation_id = c.id AND m.sent_at = c.awaiting_reply_since
         AND m.direction = 'incoming'
    CROSS JOIN generate_series(0, 1) AS k
    WHERE c.awaiting_reply_since IS NOT NULL
    """,
    # Old suggestions the owner acted on, in conversations that do not wait.
    """
    INSERT INTO generated_responses (id, message_id, prompt, response, candidates, confidence,
        model_version, status, auto, generated_at, acted_at, created_at, updated_at)
    SELECT gen_random_uuid(), m.id, 'them: hi' || chr(10) || 'Me:', 'ok',
           '{candidates}'::jsonb, 0.5, 'bench', 'accepted', false, now(), now(),
           now() - interval '2 days', now()
    FROM messages m WHERE m.direction = 'incoming' AND m.imessage_guid LIKE '%-7'
    """,
    "ANALYZE",
]


async def make_waiting(url: str, waiting: int) -> tuple[int, int]:
    conn = await asyncpg.connect(url)
    try:
        for statement in WAIT:
            quoted = CANDIDATES.replace("'", "''")
            await conn.execute(statement.format(tenths=waiting // 1000, candidates=quoted))
        count = await conn.fetchval(
            "SELECT count(*) FROM conversations WHERE awaiting_reply_since IS NOT NULL"
        )
        suggestions = await conn.fetchval("SELECT count(*) FROM generated_responses")
        return int(count), int(suggestions)
    finally:
        await conn.close()


async def captured_statements(database_url: str) -> list[tuple[str, Any]]:
    """The SQL one first page of the inbox runs, with its parameters (asyncpg style)."""
    from sqlalchemy import event

    from convassist.core.db import create_engine, create_sessionmaker
    from convassist.server.inbox import service
    from convassist.server.ml_client import MLClient

    engine = create_engine(database_url)
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    ml = MLClient("http://127.0.0.1:9", 1.0, token="unused")
    try:
        async with create_sessionmaker(engine)() as session:
            page = await service.list_inbox(session, ml, limit=PAGE, cursor=None)
            assert len(page.items) == PAGE, len(page.items)
            assert all(item.suggestion for item in page.items)
    finally:
        await ml.aclose()
        await engine.dispose()
    # SQLAlchemy's asyncpg dialect writes $n placeholders already; keep the reads only.
    return [(s, p) for s, p in statements if s.lstrip().upper().startswith("SELECT")]


async def raw_timer(url: str, statements: list[tuple[str, Any]]) -> Any:
    conn = await asyncpg.connect(url)

    async def run() -> float:
        start = time.perf_counter()
        for statement, parameters in statements:
            await conn.fetch(statement, *parameters)
        return (time.perf_counter() - start) * 1000

    return conn, run


def measure(
    base: str, url: str, statements: list[tuple[str, Any]], requests: int
) -> dict[str, list[float]]:
    loop = asyncio.new_event_loop()
    conn, raw = loop.run_until_complete(raw_timer(url, statements))
    results: dict[str, list[float]] = {"raw": [], "API": [], "page": [], "poll": [], "page 5": []}
    with httpx.Client(base_url=base, timeout=30) as client:
        login = client.post("/api/auth/login", json={"password": PASSWORD})
        login.raise_for_status()
        bearer = {"Authorization": f"Bearer {login.json()['token']}"}
        cursor = None
        for _ in range(4):
            params = {"limit": PAGE, **({"cursor": cursor} if cursor else {})}
            cursor = client.get("/api/inbox", params=params, headers=bearer).json()["nextCursor"]
        calls = {
            "raw": lambda: loop.run_until_complete(raw()),
            "API": lambda: timed(client, f"/api/inbox?limit={PAGE}", headers=bearer),
            "page": lambda: timed(client, "/"),
            "poll": lambda: timed(client, f"/?limit={PAGE}", headers={"HX-Request": "true"}),
            "page 5": lambda: timed(
                client, "/api/inbox", params={"limit": PAGE, "cursor": cursor}, headers=bearer
            ),
        }
        page = client.get("/").text
        assert page.count('class="inbox-row"') == PAGE, "the page shows a full page"
        for _ in range(20):  # warm up
            for call in calls.values():
                call()
        for _ in range(requests):
            for label, call in calls.items():
                results[label].append(call())
    results.update(loop.run_until_complete(each_statement(conn, statements, requests)))
    loop.run_until_complete(conn.close())
    loop.close()
    return results


async def each_statement(
    conn: Any, statements: list[tuple[str, Any]], requests: int
) -> dict[str, list[float]]:
    """Each captured SELECT alone, for where the database's time goes."""
    times: dict[str, list[float]] = {}
    for n, (statement, parameters) in enumerate(statements, 1):
        label = f"  SQL {n}: {' '.join(statement.split())[:60]}…"
        times[label] = []
        for _ in range(requests):
            start = time.perf_counter()
            await conn.fetch(statement, *parameters)
            times[label].append((time.perf_counter() - start) * 1000)
    return times


def report(results: dict[str, list[float]], requests: int, statements: int) -> bool:
    medians = {label: statistics.median(values) for label, values in results.items()}
    print(
        f"\n{requests} rounds, alternating, one keep-alive connection; "
        f"{statements} SELECTs a page\n"
    )
    for label, median in medians.items():
        print(f"{label:8} median {median:7.2f} ms")
        if label == "page 5":
            print("raw, statement by statement:")
    api = medians["API"]
    print(f"\nAPI / raw SQL   {api / medians['raw']:5.2f}x")
    print(f"page / API      {medians['page'] / api:5.2f}x")
    print(f"poll / API      {medians['poll'] / api:5.2f}x")
    print(f"page 5 / API    {medians['page 5'] / api:5.2f}x")
    ok = medians["page"] / api <= RATIO_GOAL and api < LATENCY_GOAL_MS
    print(
        f"\ngoal: page ≤ {RATIO_GOAL}x API and API < {LATENCY_GOAL_MS:.0f} ms: "
        f"{'met' if ok else 'missed'}"
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--waiting", type=int, default=3000, help="A multiple of 1,000.")
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    args = parser.parse_args()

    name = f"convassist_bench_inbox_{uuid.uuid4().hex[:8]}"
    url = asyncio.run(create_database(name))
    database_url = normalize_database_url(url)
    try:
        migrate.upgrade(database_url)
        started = time.perf_counter()
        conversations, messages = asyncio.run(load(url))
        waiting, suggestions = asyncio.run(make_waiting(url, args.waiting))
        print(
            f"loaded {conversations:,} conversations ({waiting:,} waiting), {messages:,} "
            f"messages, {suggestions:,} suggestions in {time.perf_counter() - started:.1f} s"
        )
        asyncio.run(set_owner(database_url))
        statements = asyncio.run(captured_statements(database_url))
        with (
            tempfile.TemporaryDirectory() as data,
            server_on(database_url, Path(data), CONVASSIST_AUTO_SUGGEST="false") as base,
        ):
            results = measure(base, url, statements, args.requests)
            ok = report(results, args.requests, len(statements))
    finally:
        if not args.keep:
            asyncio.run(drop_database(name))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
