"""Benchmark: server render time of the web UI's data pages against the JSON API.

Creates its own PostgreSQL database, migrates it, bulk-loads 10,000 conversations and
100,000 messages with SQL (a few hundred conversations are long, the rest short; a tenth are
groups; half the handles have contact names), starts the real API server (`convassist
server`, uvicorn, in a subprocess) and, in the same run, times with one keep-alive client:

| page (cookie session)                  | JSON API for the same data (bearer token)          |
|----------------------------------------|----------------------------------------------------|
| GET /conversations                     | GET /api/conversations?limit=50                    |
| GET /conversations?cursor=… (page 3)   | GET /api/conversations?limit=50&cursor=…           |
| GET /conversations?q=…  (a search)     | GET /api/conversations?limit=50&q=…                |
| GET /conversations/{id}  (long chat)   | GET /api/conversations/{id}/messages?limit=60      |

Requests alternate between page and API so both see the same machine load. Prints p50 and
p95 per pair and the p50 ratio. The goal: every page p50 within 1.5x of its API and under
50 ms.

    .venv/bin/python bench/ui.py [--requests 300] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    PASSWORD,
    create_database,
    drop_database,
    percentile,
    server_on,
    set_owner,
    timed,
)

from convassist.core.settings import normalize_database_url
from convassist.server import migrate

CONVERSATIONS = 10_000
MESSAGES = 100_000
LONG_CHATS = 100  # 500 messages each: half of all messages
LONG_LENGTH = 500
SHORT_LENGTH, REMAINDER = divmod(MESSAGES - LONG_CHATS * LONG_LENGTH, CONVERSATIONS - LONG_CHATS)
RATIO_GOAL = 1.5
LATENCY_GOAL_MS = 50.0

LOAD = [
    # Handles: one per conversation, half with a contact name.
    """
    INSERT INTO contacts (id, apple_id, phone_number, display_name, created_at, updated_at)
    SELECT gen_random_uuid(), '+1555' || lpad(i::text, 7, '0'), '+1555' || lpad(i::text, 7, '0'),
           'Person ' || i, now(), now()
    FROM generate_series(1, {conversations}) AS i WHERE i % 2 = 0
    """,
    # Conversations: newest first by i; every tenth is a named group.
    """
    INSERT INTO conversations (id, imessage_id, display_name, is_group, service, last_message_at,
                               message_count, created_at, updated_at)
    SELECT gen_random_uuid(), 'chat-' || i,
           CASE WHEN i % 10 = 0 THEN 'Group ' || i END, i % 10 = 0, 'iMessage',
           now() - i * interval '7 minutes', 0, now(), now()
    FROM generate_series(1, {conversations}) AS i
    """,
    """
    INSERT INTO conversation_participants (id, conversation_id, handle)
    SELECT gen_random_uuid(), c.id, '+1555' || lpad((split_part(c.imessage_id, '-', 2)::int
           + k)::text, 7, '0')
    FROM conversations c
    CROSS JOIN generate_series(0, 2) AS k
    WHERE k = 0 OR c.is_group
    """,
    # Messages: the LONG_CHATS newest conversations get LONG_LENGTH each, the rest share
    # what is left.
    """
    WITH numbered AS (
        SELECT id, last_message_at, row_number() OVER (ORDER BY last_message_at DESC) AS n
        FROM conversations
    ), sizes AS (
        SELECT id, last_message_at, n,
               CASE WHEN n <= {long_chats} THEN {long_length}
                    WHEN n <= {long_chats} + {remainder} THEN {short_length} + 1
                    ELSE {short_length} END AS size
        FROM numbered
    )
    INSERT INTO messages (id, conversation_id, imessage_guid, sender_id, direction, message_type,
                          text, sent_at, is_unsent, service, created_at, updated_at)
    SELECT gen_random_uuid(), s.id, 'guid-' || s.n || '-' || j,
           CASE WHEN j % 3 = 0 THEN NULL ELSE '+1555' || lpad(s.n::text, 7, '0') END,
           CASE WHEN j % 3 = 0 THEN 'outgoing' ELSE 'incoming' END, 'text',
           'message ' || j || ' of a realistic length, sounds good see you at eight?',
           s.last_message_at - (s.size - j) * interval '1 minute', false, 'iMessage', now(), now()
    FROM sizes s CROSS JOIN LATERAL generate_series(1, s.size) AS j
    """,
    """
    UPDATE conversations c SET message_count = m.count
    FROM (SELECT conversation_id, count(*) AS count FROM messages GROUP BY conversation_id) m
    WHERE m.conversation_id = c.id
    """,
    "ANALYZE",
]


async def load(url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(url)
    try:
        for statement in LOAD:
            await conn.execute(
                statement.format(
                    conversations=CONVERSATIONS,
                    messages=MESSAGES,
                    long_chats=LONG_CHATS,
                    long_length=LONG_LENGTH,
                    short_length=SHORT_LENGTH,
                    remainder=REMAINDER,
                )
            )
        conversations = await conn.fetchval("SELECT count(*) FROM conversations")
        messages = await conn.fetchval("SELECT count(*) FROM messages")
        return int(conversations), int(messages)
    finally:
        await conn.close()


def pairs(client: httpx.Client, bearer: dict[str, str]) -> list[tuple[str, str, str]]:
    """(label, page path, API path) for the same data."""
    first = client.get("/api/conversations?limit=50", headers=bearer).json()
    second = client.get(
        f"/api/conversations?limit=50&cursor={first['nextCursor']}", headers=bearer
    ).json()
    cursor = second["nextCursor"]
    longest = first["items"][0]["id"]
    assert first["items"][0]["messageCount"] == LONG_LENGTH
    return [
        ("conversations", "/conversations", "/api/conversations?limit=50"),
        (
            "conversations p3",
            f"/conversations?cursor={cursor}",
            f"/api/conversations?limit=50&cursor={cursor}",
        ),
        ("search", "/conversations?q=Person%2077", "/api/conversations?limit=50&q=Person%2077"),
        (
            "detail",
            f"/conversations/{longest}",
            f"/api/conversations/{longest}/messages?limit=60",
        ),
    ]


def measure(base: str, requests: int) -> list[tuple[str, list[float], list[float]]]:
    with httpx.Client(base_url=base, timeout=30) as client:
        login = client.post("/api/auth/login", json={"password": PASSWORD})
        login.raise_for_status()
        bearer = {"Authorization": f"Bearer {login.json()['token']}"}
        # The page client is signed in by the cookie the login set (and sends no bearer).
        results = []
        for label, page, api in pairs(client, bearer):
            page_ms: list[float] = []
            api_ms: list[float] = []
            for _ in range(20):  # warm up both paths
                timed(client, page)
                timed(client, api, headers=bearer)
            for _ in range(requests):
                page_ms.append(timed(client, page))
                api_ms.append(timed(client, api, headers=bearer))
            results.append((label, page_ms, api_ms))
        body = client.get(pairs(client, bearer)[3][1]).text
        assert len(re.findall(r'class="bubble-text"', body)) == 60, "detail page shows 60"
    return results


def report(results: list[tuple[str, list[float], list[float]]], requests: int) -> bool:
    print(f"\n{requests} requests each, alternating page/API, one keep-alive connection\n")
    print(f"{'':18} {'page p50':>9} {'p95':>7} {'API p50':>9} {'p95':>7} {'ratio':>7}  goal")
    ok = True
    for label, page, api in results:
        page50, api50 = percentile(page, 50), percentile(api, 50)
        ratio = page50 / api50
        met = ratio <= RATIO_GOAL and page50 < LATENCY_GOAL_MS
        ok &= met
        print(
            f"{label:18} {page50:7.1f}ms {percentile(page, 95):5.1f}ms {api50:7.1f}ms "
            f"{percentile(api, 95):5.1f}ms {ratio:6.2f}x  {'met' if met else 'MISSED'}"
        )
    print(
        f"\ngoal: page p50 ≤ {RATIO_GOAL}x API p50 and < {LATENCY_GOAL_MS:.0f} ms: "
        f"{'met' if ok else 'missed'}"
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    args = parser.parse_args()

    name = f"convassist_bench_ui_{uuid.uuid4().hex[:8]}"
    url = asyncio.run(create_database(name))
    database_url = normalize_database_url(url)
    try:
        migrate.upgrade(database_url)
        started = time.perf_counter()
        conversations, messages = asyncio.run(load(url))
        print(
            f"loaded {conversations:,} conversations and {messages:,} messages "
            f"in {time.perf_counter() - started:.1f} s ({name})"
        )
        asyncio.run(set_owner(database_url))
        with tempfile.TemporaryDirectory() as data, server_on(database_url, Path(data)) as base:
            ok = report(measure(base, args.requests), args.requests)
    finally:
        if not args.keep:
            asyncio.run(drop_database(name))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
