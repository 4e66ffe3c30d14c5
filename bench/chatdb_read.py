"""Benchmark: messages per second read and decoded from chat.db vs a raw sqlite3 SELECT.

Generates a chat.db on the real macOS 15 schema (copied from the shared fixture `test.db`) with
100,000 messages (about 4% of them carrying the 35 real fixture `attributedBody` blobs), then,
in the same run, times

* raw:    the reader's own SELECT (same columns, same joins, same pages), `fetchall()` only;
* reader: `ChatDB.read_messages` over the same pages (decode attributedBody, dates, types…).

The goal is reader ≥ 0.5x raw. Best of `--repeat` runs each, alternating.

    .venv/bin/python bench/chatdb_read.py [--messages 100000] [--page 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.agent.chatdb_factory import CHATDB_FIXTURES, FIXTURE_DB, build_chatdb  # noqa: E402

from convassist.agent import typedstream  # noqa: E402
from convassist.agent.chatdb import ChatCursor, ChatDB  # noqa: E402
from convassist.core.logging import configure_logging  # noqa: E402


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
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

    raw_rate, reader_rate = count / raw_best, count / reader_best
    print(f"bodies on the fast path: {fast:,} of {len(bodies):,}")
    print(f"decode: {decode_rate:,.0f} bodies/s; pytypedstream alone: {library_rate:,.0f} bodies/s")
    print(f"raw SELECT:  {raw_rate:>10,.0f} msg/s  ({raw_best:.3f}s for {count:,})")
    print(f"ChatDB read: {reader_rate:>10,.0f} msg/s  ({reader_best:.3f}s)")
    print(f"ratio reader/raw: {reader_rate / raw_rate:.2f}x  (goal >= 0.50x)")
    print(f"changed_since full scan: {len(changed):,} changed rows in {changes_s * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
