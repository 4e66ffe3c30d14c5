"""Benchmark: from the sync that brings a message to its suggestions being ready, against the
raw generation time of the same request.

Starts the real ML service (default model) and the real API server (fresh PostgreSQL
database, or `--sqlite`) as subprocesses, approves a device, then for `--runs` rounds (after
two warm-up rounds), alternating:

* ready: `POST /api/sync/messages` brings a new incoming message (a chat of its own, three
  lines of history); the clock stops when `GET /api/responses?conversationId=` shows its
  automatic suggestion `completed` (polled every `--poll` ms; a read shows the ML job's live
  state, as the inbox does). The sync's own time is reported too;
* raw: `POST /generate` on the ML service with that suggestion's prompt and the Suggester's
  parameters (3 candidates, 64 tokens, temperature 0.7, no seed: never cached).

Reported: medians, p95, the hand-over (the sync's response to the suggestion row's
`createdAt`), and the ratio ready / raw (1.0 = the loop adds nothing).

Measured 2026-12-01 on a shared 2-core AMD EPYC (other jobs running), PostgreSQL, the
default model (SmolLM2-135M): sync p50 15-26 ms; hand-over p50 6.5 ms; ready p50 1.3-3.5 s
against raw 0.8-2.7 s, ready / raw 1.3-1.7 at p50 (15 runs: 1,317 vs 768 ms, 1.71; 8 runs
twice: 3,478 vs 2,663 ms and 3,537 vs 2,702 ms, 1.31). The rest of the gap is the async path
(job queue, the reads polling it while the model runs on the same two cores).

    .venv/bin/python bench/suggest_latency.py [--runs 10] [--sqlite | --preload] [--poll 25]
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
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (
    ML_AUTH,
    approved_device,
    bench_database,
    ml_and_server,
    owner_headers,
    percentile,
)
from bench.ui import load

from convassist.core.prompt import REPLY_STOP
from convassist.core.settings import normalize_database_url
from convassist.server import migrate
from convassist.server.suggest.service import CANDIDATES

FRIEND = "+15550100000"
LINES = [
    ("incoming", "hey! are you around this weekend?"),
    ("outgoing", "yeah mostly, why"),
    ("incoming", "thinking of a hike saturday morning, want to come? round {n}"),
]


def batch(n: int) -> dict[str, Any]:
    start = datetime.now(UTC) - timedelta(minutes=5)
    return {
        "conversationId": f"iMessage;-;bench-{n}-{uuid.uuid4().hex[:6]}",
        "participants": [FRIEND],
        "messages": [
            {
                "imessageGuid": f"bench-{n}-{i}-{uuid.uuid4().hex[:8]}",
                "senderId": None if direction == "outgoing" else FRIEND,
                "direction": direction,
                "text": text.format(n=n),
                "sentAt": (start + timedelta(minutes=i)).isoformat(),
            }
            for i, (direction, text) in enumerate(LINES)
        ],
    }


async def until_ready(api: httpx.AsyncClient, conversation: str, poll: float) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        page = (await api.get("/api/responses", params={"conversationId": conversation})).json()
        for item in page["items"]:
            if item["status"] == "completed":
                return dict(item)
            if item["status"] == "failed":
                raise SystemExit(f"the automatic suggestion failed: {item['error']}")
        await asyncio.sleep(poll)
    raise SystemExit("no automatic suggestion within 300 s")


async def measure(
    server: str, ml: str, args: argparse.Namespace
) -> tuple[list[float], list[float], list[float], list[float]]:
    syncs: list[float] = []
    queued: list[float] = []
    ready: list[float] = []
    raw: list[float] = []
    async with httpx.AsyncClient(base_url=server, timeout=120) as client:
        owner = await owner_headers(client)
        token = (await approved_device(client, owner))["token"]
    async with (
        httpx.AsyncClient(base_url=ml, timeout=300, headers=ML_AUTH) as ml_client,
        httpx.AsyncClient(base_url=server, timeout=120, headers=owner) as api,
        httpx.AsyncClient(
            base_url=server, timeout=120, headers={"Authorization": f"Bearer {token}"}
        ) as device,
    ):
        for n in range(-2, args.runs):  # two warm-up rounds
            started = time.perf_counter()
            synced = await device.post("/api/sync/messages", json=batch(n))
            sync_s = time.perf_counter() - started
            synced_at = datetime.now(UTC)
            assert synced.status_code == 200, synced.text
            item = await until_ready(api, synced.json()["conversationId"], args.poll / 1000)
            ready_s = time.perf_counter() - started
            assert len(item["candidates"]) == CANDIDATES, item
            started = time.perf_counter()
            resp = await ml_client.post(
                "/generate",
                json={
                    "prompt": item["prompt"],
                    "n": CANDIDATES,
                    "maxTokens": 64,
                    "temperature": 0.7,
                    "stop": list(REPLY_STOP),
                },
            )
            raw_s = time.perf_counter() - started
            assert resp.status_code == 200 and not resp.json()["cached"], resp.text
            if n >= 0:
                created = datetime.fromisoformat(item["createdAt"])
                queued.append((created - synced_at).total_seconds() * 1000)
                syncs.append(sync_s * 1000)
                ready.append(ready_s * 1000)
                raw.append(raw_s * 1000)
    return syncs, queued, ready, raw


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--poll", type=float, default=25.0, help="ms between reads")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument(
        "--preload",
        action="store_true",
        help="PostgreSQL: first load bench/ui.py's 10,000 conversations and 100,000 messages",
    )
    args = parser.parse_args()
    if args.preload and args.sqlite:
        parser.error("--preload loads PostgreSQL only")

    with tempfile.TemporaryDirectory(prefix="convassist-bench-") as tmp_name:
        tmp = Path(tmp_name)
        name = f"convassist_bench_sl_{uuid.uuid4().hex[:6]}"
        with bench_database(tmp, name, sqlite=args.sqlite) as database:
            preloaded = ""
            if args.preload:
                migrate.upgrade(normalize_database_url(database))
                conversations, messages = asyncio.run(load(database))
                preloaded = f", holding {conversations:,} conversations, {messages:,} messages"
            with ml_and_server(tmp, DATABASE_URL=database) as (ml, server):
                syncs, queued, ready, raw = asyncio.run(measure(server, ml, args))

    backend = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"{args.runs} runs after 2 warm-up, database: {backend}{preloaded}")
    for name, values in (
        ("sync request (POST /api/sync/messages)", syncs),
        ("sync response to suggestion row (queued)", queued),
        ("sync to suggestions ready", ready),
        (f"raw ML POST /generate (n={CANDIDATES})", raw),
    ):
        p50 = statistics.median(values)
        p95 = percentile(values, 95) if len(values) > 1 else p50
        print(f"{name:<42} p50 {p50:8.1f} ms  p95 {p95:8.1f} ms")
    ratio = statistics.median(ready) / statistics.median(raw)
    ratios = statistics.median(r / g for r, g in zip(ready, raw, strict=True))
    print(f"ready / raw at p50: {ratio:.2f} (median of per-run ratios {ratios:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
