"""Benchmark: the suggestion gate's trigger share (the share of incoming messages that would
get suggestions), with the reasons for the rest, and the gate's speed.

Each incoming message is judged as if it were the newest of its conversation
(`convassist.server.suggest.gate.check`, default policy). Two corpora:

* Chit-Chat (`<shared>/data/chitchat`, see its SOURCE.md): the 4,018 two-person chats; every
  message is incoming for the other person, whose handle is a phone number. Also per turn: a
  burst of messages from one sender waits on a reply when any of its messages passes (sync
  takes the newest that passes).
* The real chat.db fixtures (`<shared>/fixtures/chatdb`): `test.db`'s own rows, and each of
  the 35 real `attributedBody` blobs as an incoming message from a phone number in a copy of
  it, all read by the agent's ChatDB reader (types, reactions and text as sync sends them).

Smart Reply triggered on about 11% of emails (Kannan et al., KDD 2016).

Measured 2026-12-01 (AMD EPYC): Chit-Chat 100.0% per message (243,011 of 243,046: 33 empty,
2 numbers next to the word "code" taken for one-time codes) and per turn (135,575 of
135,587); chat.db fixtures 78.4% (29 of 37: 5 placeholders only, 1 sticker, 1 one-time code,
1 sticker reaction as text); the gate takes about 7 µs a message. The gate only leaves out
what nobody answers with a sentence, and Chit-Chat is all conversation; Smart Reply's 11%
is of email, most of which needs no reply, and came from a learned triggering model.

    .venv/bin/python bench/trigger_share.py   # CONVASSIST_SHARED_DIR picks the shared dir
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.shared import SHARED_DIR  # noqa: E402

from convassist.agent.chatdb import ChatDB  # noqa: E402
from convassist.core.logging import configure_logging  # noqa: E402
from convassist.server.demo.corpus import load_corpus  # noqa: E402
from convassist.server.models import Direction, MessageType  # noqa: E402
from convassist.server.suggest.gate import SuggestPolicy, check  # noqa: E402

CHITCHAT = SHARED_DIR / "data" / "chitchat" / "dataset.json.gz"
CHATDB = SHARED_DIR / "fixtures" / "chatdb"
POLICY = SuggestPolicy()
PASSED = "suggested"
SMART_REPLY = 0.11
FRIEND = "+15558675309"


@dataclass(frozen=True, slots=True)
class Incoming:
    text: str | None
    sender_id: str | None
    message_type: MessageType = MessageType.TEXT
    direction: Direction = Direction.INCOMING
    is_unsent: bool = False


def verdict(message: Incoming) -> str:
    reason = check(message, is_group=False, owner_participates=False, policy=POLICY)
    return PASSED if reason is None else reason.value


def report(name: str, verdicts: Counter[str], unit: str = "messages") -> None:
    total = sum(verdicts.values())
    share = verdicts[PASSED] / total if total else 0.0
    print(f"{name}: {verdicts[PASSED]:,} of {total:,} incoming {unit} get suggestions: {share:.1%}")
    for reason, count in verdicts.most_common():
        if reason != PASSED:
            print(f"    {reason:<26} {count:>8,}  {count / total:.2%}")


def chitchat() -> None:
    corpus = load_corpus(CHITCHAT)
    phones: dict[str, str] = {}
    per_message: Counter[str] = Counter()
    per_turn: Counter[str] = Counter()
    messages: list[Incoming] = []
    for conversation in corpus.values():
        turns = conversation["messages"]
        if len({turn[0]["sender"] for turn in turns}) != 2:
            continue  # abandoned one-person chats (SOURCE.md)
        for turn in turns:
            sender = phones.setdefault(turn[0]["sender"], f"+1555{len(phones):07d}")
            judged = [verdict(Incoming(m["text"], sender)) for m in turn]
            messages.extend(Incoming(m["text"], sender) for m in turn)
            per_message.update(judged)
            per_turn[PASSED if PASSED in judged else judged[-1]] += 1
    report("Chit-Chat, per message", per_message)
    report("Chit-Chat, per turn (burst)", per_turn, unit="turns")
    began = time.perf_counter()
    for message in messages:
        verdict(message)
    took = time.perf_counter() - began
    print(
        f"gate speed: {len(messages) / took:,.0f} messages/s "
        f"({took / len(messages) * 1e6:.1f} µs each)"
    )


def _with_fixture_blobs(db: Path) -> list[str]:
    """Add each typedstream blob as an incoming message from FRIEND to the copy `db`."""
    blobs = sorted((CHATDB / "typedstream").iterdir())
    conn = sqlite3.connect(db)
    try:
        conn.execute(
            "INSERT INTO handle (ROWID, id, service, uncanonicalized_id) VALUES (9001, ?, ?, ?)",
            (FRIEND, "iMessage", FRIEND),
        )
        for n, blob in enumerate(blobs):
            conn.execute(
                "INSERT INTO message (guid, attributedBody, date, is_from_me, handle_id, service)"
                " VALUES (?, ?, ?, 0, 9001, 'iMessage')",
                (f"BENCH-{n:04d}", blob.read_bytes(), 760569924490443648 + n),
            )
        conn.commit()
    finally:
        conn.close()
    return [blob.name for blob in blobs]


def chatdb() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "chat.db"
        shutil.copyfile(CHATDB / "test.db", db)
        names = _with_fixture_blobs(db)
        with ChatDB.open(db) as reader:
            rows = reader.read_messages(0, limit=10_000)
    verdicts: Counter[str] = Counter()
    lines: list[str] = []
    blob_names = iter(names)
    for row in rows:
        if row.direction != "incoming":
            continue
        message = Incoming(
            row.text, row.sender_id, MessageType(row.message_type), is_unsent=row.is_unsent
        )
        judged = verdict(message)
        verdicts[judged] += 1
        source = next(blob_names) if row.imessage_guid.startswith("BENCH-") else "test.db row"
        lines.append(f"    {source:<24} {row.message_type:<10} {judged}")
    report("chat.db fixtures", verdicts)
    print("  per message:")
    print("\n".join(lines))


def main(argv: Iterable[str] = ()) -> None:
    configure_logging("WARNING", "console")
    for path in (CHITCHAT, CHATDB / "test.db"):
        if not path.exists():
            raise SystemExit(f"{path} not found (set CONVASSIST_SHARED_DIR)")
    chitchat()
    print()
    chatdb()
    print()
    print(f"Smart Reply triggered on about {SMART_REPLY:.0%} of messages (email).")


if __name__ == "__main__":
    main(sys.argv[1:])
