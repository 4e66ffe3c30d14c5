"""Benchmark: the owner's stock replies a suggestion request carries, tallied or kept.

Stores `--messages` messages (100,000 by default: real texting from the Chit-Chat corpus,
every other one the owner's, in `--conversations` two-person conversations; the same load as
`bench/search.py`) into a fresh database migrated to head, a temporary SQLite file and a
throwaway PostgreSQL database on `BENCH_POSTGRES_URL`. Then, in the same run, it times

* tally: `responses.own.tally_own_replies`, the grouped scan of the owner's short messages
  within their consent, which every suggestion request paid for before;
* kept:  `responses.own.own_replies` once the tally is kept, which is what a request pays
  now until the owner's messages, consent or conversations change;

each in its own session, warmed up, then `--repeat` times alternating; medians compared.

    .venv/bin/python bench/own_replies.py [--messages 100000] [--conversations 1000]
        [--repeat 21] [--backend sqlite --backend postgresql]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.search import (  # noqa: E402
    corpus_texts,
    database_arguments,
    loaded_database,
    print_machine,
)

from convassist.core.db import create_engine, create_sessionmaker  # noqa: E402
from convassist.server.responses.own import own_replies, tally_own_replies  # noqa: E402


async def measure(url: str, repeat: int) -> dict[str, Any]:
    engine = create_engine(url)
    maker = create_sessionmaker(engine)

    async def timed(read: Callable[[Any], Awaitable[list[str]]]) -> tuple[float, list[str]]:
        async with maker() as session:
            started = time.perf_counter()
            replies = await read(session)
            return time.perf_counter() - started, replies

    try:
        for _ in range(3):
            await timed(tally_own_replies)
            await timed(own_replies)
        tallies, kept = [], []
        for _ in range(repeat):
            elapsed, tallied = await timed(tally_own_replies)
            tallies.append(elapsed)
            elapsed, offered = await timed(own_replies)
            kept.append(elapsed)
            assert offered == tallied, "the kept tally differs from a fresh one"
        return {
            "backend": engine.dialect.name,
            "replies": len(tallied),
            "tally_ms": statistics.median(tallies) * 1000,
            "kept_ms": statistics.median(kept) * 1000,
        }
    finally:
        await engine.dispose()


async def main() -> None:
    args = database_arguments(__doc__.split("\n")[0])
    texts = corpus_texts(args.messages)
    print_machine(texts, args.conversations)
    rows = []
    for backend in args.backend or ["sqlite", "postgresql"]:
        async with loaded_database(backend, texts, args.conversations) as url:
            rows.append(await measure(url, args.repeat))
    print(f"\n{'backend':<11} {'replies':>7} {'tally ms':>9} {'kept ms':>8} {'tally/kept':>10}")
    for r in rows:
        print(
            f"{r['backend']:<11} {r['replies']:>7} {r['tally_ms']:>9.2f} {r['kept_ms']:>8.3f} "
            f"{r['tally_ms'] / r['kept_ms']:>9.0f}x"
        )


if __name__ == "__main__":
    asyncio.run(main())
