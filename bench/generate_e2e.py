"""Benchmark: what the API server adds to a suggestion, over a direct ML-service call.

Starts the real ML service (default model) and the real API server (on a fresh PostgreSQL
database, or `--sqlite`) as subprocesses, syncs a conversation through the device API, then
alternates, for `--requests` rounds:

* direct: `POST /generate` on the ML service with the prompt the server's context builder
  makes for the message;
* server: `POST /api/responses/generate` for that message (context building, the ML call,
  storing the GeneratedResponse).

Both are uncached and do identical model work: each round uses a fresh seed for both calls,
and the direct call asks for the server's stop sequence (the end of the line) plus an inert
one ("\\n\\n", never reached before "\\n") so its cache key differs from the server's.
The goal: the server adds at most 15 ms at p50.

    .venv/bin/python bench/generate_e2e.py [--requests 40] [--max-tokens 24] [--sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ML_AUTH,
    approved_device,
    bench_database,
    ml_and_server,
    owner_headers,
    percentile,
)
from convassist.core.prompt import REPLY_STOP

GOAL_MS = 15.0
STOP = [*REPLY_STOP, "\n\n"]
LINES = [
    ("incoming", "hey! are you around this weekend?"),
    ("outgoing", "yeah mostly, why"),
    ("incoming", "thinking of a hike saturday morning, want to come?"),
]


async def prepare(server: str) -> tuple[dict[str, str], str, str]:
    """Owner token, a synced incoming message's id, and the prompt the server builds for it."""
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        owner_auth = await owner_headers(client)
        token = (await approved_device(client, owner_auth))["token"]
        start = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
        synced = await client.post(
            "/api/sync/messages",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "conversationId": "bench-chat",
                "participants": ["+15550100000"],
                "messages": [
                    {
                        "imessageGuid": f"bench-{i}",
                        "senderId": None if d == "outgoing" else "+15550100000",
                        "direction": d,
                        "text": text,
                        "sentAt": (start + timedelta(minutes=i)).isoformat(),
                    }
                    for i, (d, text) in enumerate(LINES)
                ],
            },
        )
        conversation = synced.json()["conversationId"]
        page = (
            await client.get(f"/api/conversations/{conversation}/messages", headers=owner_auth)
        ).json()
        message_id = page["items"][-1]["id"]
        context = (
            await client.get(
                f"/api/conversations/{conversation}/context?messageId={message_id}&maxHistory=10",
                headers=owner_auth,
            )
        ).json()
        return owner_auth, message_id, context["prompt"]


async def measure(
    server: str, ml: str, args: argparse.Namespace
) -> tuple[list[float], list[float]]:
    owner_auth, message_id, prompt = await prepare(server)
    direct: list[float] = []
    through_server: list[float] = []
    async with (
        httpx.AsyncClient(base_url=ml, timeout=120, headers=ML_AUTH) as ml_client,
        httpx.AsyncClient(base_url=server, timeout=120, headers=owner_auth) as api,
    ):
        for round_ in range(-2, args.requests):  # two warm-up rounds
            seed = 1000 + round_ + 2 + uuid.uuid4().int % 10**6 * 100
            started = time.perf_counter()
            resp = await ml_client.post(
                "/generate",
                json={
                    "prompt": prompt,
                    "n": 1,
                    "maxTokens": args.max_tokens,
                    "temperature": 0.7,
                    "seed": seed,
                    "stop": STOP,
                },
            )
            direct_s = time.perf_counter() - started
            assert resp.status_code == 200 and not resp.json()["cached"], resp.text
            started = time.perf_counter()
            resp = await api.post(
                "/api/responses/generate",
                json={
                    "messageId": message_id,
                    "candidates": 1,
                    "maxTokens": args.max_tokens,
                    "temperature": 0.7,
                    "seed": seed,
                },
            )
            server_s = time.perf_counter() - started
            assert resp.status_code == 200, resp.text
            if round_ >= 0:
                direct.append(direct_s * 1000)
                through_server.append(server_s * 1000)
    return direct, through_server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="convassist-bench-") as tmp_name:
        tmp = Path(tmp_name)
        name = f"convassist_bench_e2e_{uuid.uuid4().hex[:6]}"
        with (
            bench_database(tmp, name, sqlite=args.sqlite) as database,
            ml_and_server(tmp, DATABASE_URL=database) as (ml, server),
        ):
            direct, through_server = asyncio.run(measure(server, ml, args))

    differences = [s - d for s, d in zip(through_server, direct, strict=True)]
    added = statistics.median(through_server) - statistics.median(direct)
    database = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"{args.requests} rounds, {args.max_tokens} max tokens, database: {database}")
    for name, values in (
        ("direct ML POST /generate", direct),
        ("POST /api/responses/generate", through_server),
    ):
        p50, p95 = statistics.median(values), percentile(values, 95)
        print(f"{name:<32} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms")
    paired = statistics.median(differences)
    print(f"server adds at p50: {added:.1f} ms (median of paired differences {paired:.1f} ms)")
    print(f"goal <= {GOAL_MS:.0f} ms: {'met' if added <= GOAL_MS else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
