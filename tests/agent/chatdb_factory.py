"""Build chat.db files for tests and the benchmark, on the real macOS 15 schema.

The schema SQL (tables, indexes, triggers) is copied from the fixture `test.db`'s sqlite_master;
the rows are generated here. Nothing binary is committed: the fixtures are read from the shared
directory (`CONVASSIST_SHARED_DIR`, default `<repo>/../shared`).
"""

from __future__ import annotations

import plistlib
import random
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.support.shared import SHARED_DIR

CHATDB_FIXTURES = SHARED_DIR / "fixtures" / "chatdb"
FIXTURE_DB = CHATDB_FIXTURES / "test.db"

NS = 1_000_000_000
BASE_DATE_NS = 760_000_000 * NS  # 2025-01-31, nanoseconds since 2001-01-01
URL_BALLOON = "com.apple.messages.URLBalloonProvider"
APP_BALLOON = "com.apple.messages.MSMessageExtensionBalloonPlugin:0000000000:com.example.app"
FRAKTUR_HELLO = "\U0001d58d\U0001d58a\U0001d591\U0001d591\U0001d594"
WORDS = (
    *["hey", "running", "late", "see", "you", "soon", "café", "🙂", "dinner", "tonight?"],
    *["ok", "sounds", "good", "👍🏽", "can't", "wait", "Straße", "naïve", "日本語", "test"],
    *["message", "call", "me", "later"],
    FRAKTUR_HELLO,
)
REACTIONS = ("love", "like", "dislike", "laugh", "emphasize", "question", "emoji", "sticker")


def fixture_schema(db: Path = FIXTURE_DB) -> list[str]:
    """CREATE statements from the fixture: tables, then indexes, then triggers."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
            "AND name != 'sqlite_sequence'"
        ).fetchall()
    finally:
        conn.close()
    order = {"table": 0, "index": 1, "trigger": 2}
    return [sql for kind, _, sql in sorted(rows, key=lambda r: order.get(r[0], 3)) if kind in order]


def register_apple_functions(conn: sqlite3.Connection) -> None:
    """No-op stand-ins for the SQL functions Messages registers (used by DELETE triggers)."""
    conn.create_function("delete_attachment_path", 1, lambda *_: None)
    conn.create_function("before_delete_attachment_path", 2, lambda *_: None)
    conn.create_function("after_delete_message_plugin", 2, lambda *_: None)


def _ts_int(value: int) -> bytes:
    """A typedstream integer as Apple writes it."""
    if -0x6E <= value < 0x80:  # outside the tag range 0x80..0x91
        return (value & 0xFF).to_bytes(1, "little")
    if -0x8000 <= value < 0x8000:
        return b"\x81" + value.to_bytes(2, "little", signed=True)
    return b"\x82" + value.to_bytes(4, "little", signed=True)


def make_attributed_body(text: str, *, mutable: bool = False) -> bytes:
    """An `attributedBody` typedstream like the ones Messages writes, with one attribute run."""
    data = text.encode("utf-8")
    utf16_length = len(text.encode("utf-16-le")) // 2
    if mutable:
        classes = (
            b"\x84\x84\x84\x19NSMutableAttributedString\x00\x84\x84\x12NSAttributedString\x00"
            b"\x84\x84\x08NSObject\x00\x85\x92\x84\x84\x84\x0fNSMutableString\x01"
            b"\x84\x84\x08NSString\x01\x95"
        )
        object_ref = b"\x95"
    else:
        classes = (
            b"\x84\x84\x84\x12NSAttributedString\x00\x84\x84\x08NSObject\x00\x85"
            b"\x92\x84\x84\x84\x08NSString\x01\x94"
        )
        object_ref = b"\x94"
    return (
        b"\x04\x0bstreamtyped\x81\xe8\x03\x84\x01@"
        + classes
        + b"\x84\x01+"
        + _ts_int(len(data))
        + data
        + b"\x86\x84\x02iI\x01"
        + _ts_int(utf16_length)
        + b"\x92\x84\x84\x84\x0cNSDictionary\x00"
        + object_ref
        + b"\x84\x01i\x00\x86\x86"
    )


def summary_info(
    *, parts: int = 1, edits: list[tuple[float, str]] | None = None, retracted: Sequence[int] = ()
) -> bytes:
    """A `message_summary_info` bplist like Messages writes: `{amc, ust}` for a plain message
    (`parts=0`, as in the fixture test.db), plus the part table, edits and unsent parts."""
    info: dict[str, object] = {"amc": 0, "ust": True}
    if parts:
        info["otr"] = {str(i): {"lo": i, "le": 1} for i in range(parts)}
    if edits:
        info["ec"] = {"0": [{"d": d, "t": make_attributed_body(t)} for d, t in edits]}
        info["ep"] = [0]
    if retracted:
        info["rp"] = list(retracted)
    return plistlib.dumps(info, fmt=plistlib.FMT_BINARY)


PLAIN_SUMMARY = summary_info(parts=0)


@dataclass
class Expected:
    """What the reader must return for one generated message."""

    guid: str
    chat_guid: str | None
    direction: str
    sender: str | None
    kind: str
    text: str | None
    sent_at_ns: int
    is_unsent: bool = False
    edited_at_ns: int = 0
    reply_to: str | None = None
    reaction: str | None = None
    reaction_removed: bool = False
    associated_guid: str | None = None


@dataclass
class GeneratedChatDB:
    path: Path
    messages: dict[str, Expected] = field(default_factory=dict)
    chats: dict[str, tuple[bool, str | None, tuple[str, ...]]] = field(default_factory=dict)
    handles: list[str] = field(default_factory=list)


def _words(rng: random.Random, lo: int = 1, hi: int = 12) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


_MESSAGE_COLUMNS = (
    "guid, text, attributedBody, handle_id, service, date, is_from_me, item_type, "
    "associated_message_type, associated_message_guid, balloon_bundle_id, is_audio_message, "
    "thread_originator_guid, date_edited, date_retracted, message_summary_info, account"
)


def create_schema(path: Path) -> sqlite3.Connection:
    """A new, empty chat.db with the fixture's schema; returns an open connection."""
    conn = sqlite3.connect(path)
    register_apple_functions(conn)
    for statement in fixture_schema():
        conn.execute(statement)
    conn.commit()
    return conn


def build_chatdb(
    path: Path,
    *,
    messages: int = 2000,
    chats: int = 40,
    handles: int = 60,
    seed: int = 6,
    fixture_blobs: dict[str, str | None] | None = None,
) -> GeneratedChatDB:
    """Fill a new chat.db with a realistic mix of messages; returns what each should read as.

    `fixture_blobs` (file name → expected text) mixes real typedstream blobs into the bodies.
    """
    rng = random.Random(seed)
    conn = create_schema(path)
    result = GeneratedChatDB(path=path)

    handle_ids: list[str] = []
    for i in range(handles):
        handle_ids.append(f"+1555{i:07d}" if i % 3 else f"person{i}@example.com")
    conn.executemany(
        "INSERT INTO handle (ROWID, id, service, uncanonicalized_id) VALUES (?, ?, ?, ?)",
        [(i + 1, h, "iMessage", h) for i, h in enumerate(handle_ids)],
    )
    result.handles = handle_ids

    chat_rows = []
    chat_members: dict[int, list[int]] = {}
    for c in range(1, chats + 1):
        group = c % 4 == 0
        members = rng.sample(range(1, handles + 1), rng.randint(2, 5) if group else 1)
        chat_members[c] = members
        service = "SMS" if c % 7 == 3 else "RCS" if c % 11 == 5 else "iMessage"
        guid = f"{service};{'+' if group else '-'};chat{c:05d}"
        name = f"Group {c}" if group and c % 8 == 0 else None
        chat_rows.append((c, guid, 43 if group else 45, guid.split(";")[2], service, name))
        participants = tuple(sorted(handle_ids[m - 1] for m in members))
        result.chats[guid] = (group, name, participants)
    conn.executemany(
        "INSERT INTO chat (ROWID, guid, style, chat_identifier, service_name, display_name) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        chat_rows,
    )
    conn.executemany(
        "INSERT INTO chat_handle_join (chat_id, handle_id) VALUES (?, ?)",
        [(c, h) for c, members in chat_members.items() for h in members],
    )

    blob_items = sorted((fixture_blobs or {}).items())
    message_rows = []
    joins = []
    attachments = []
    guids: list[str] = []
    for i in range(1, messages + 1):
        c = rng.randint(1, chats)
        chat_guid = chat_rows[c - 1][1]
        service = chat_rows[c - 1][4]
        from_me = rng.random() < 0.4
        handle_row = rng.choice(chat_members[c])
        sender = None if from_me else handle_ids[handle_row - 1]
        date = BASE_DATE_NS + i * 37 * NS + rng.randint(0, NS)
        guid = str(uuid.UUID(int=rng.getrandbits(128))).upper()
        text = _words(rng)
        column_text: str | None = text
        body: bytes | None = make_attributed_body(text, mutable=rng.random() < 0.5)
        item_type = 0
        assoc_type = 0
        assoc_guid = None
        balloon = None
        is_audio = 0
        thread = None
        date_edited = 0
        date_retracted = 0
        summary: bytes | None = PLAIN_SUMMARY
        exp = Expected(
            guid, chat_guid, "outgoing" if from_me else "incoming", sender, "text", text, date
        )
        roll = rng.random()
        if roll < 0.40:
            column_text = None  # modern rows: the body only
        elif roll < 0.48 and guids:
            assoc_type = rng.choice([*range(2000, 2008), *range(3000, 3008)])
            target = rng.choice(guids)
            assoc_guid = rng.choice([f"p:0/{target}", f"bp:{target}"])
            exp.kind = "reaction"
            exp.reaction = REACTIONS[assoc_type % 1000]
            exp.reaction_removed = assoc_type >= 3000
            exp.associated_guid = target
        elif roll < 0.53:
            caption = rng.random() < 0.5
            text = ("\ufffc" + _words(rng)) if caption else "\ufffc"
            column_text, body = None, make_attributed_body(text)
            exp.text = text[1:] if caption else None
            exp.kind = "attachment"
            attachments.append((i, False))
        elif roll < 0.55:
            column_text, body = None, make_attributed_body("\ufffc")
            exp.text, exp.kind = None, "sticker"
            attachments.append((i, True))
        elif roll < 0.57:
            balloon = APP_BALLOON
            column_text, body = None, make_attributed_body("\ufffd")
            exp.text, exp.kind = None, "app"
        elif roll < 0.59:
            balloon = URL_BALLOON
            text = f"https://example.com/{i}"
            column_text, body = text, make_attributed_body(text, mutable=True)
            exp.text = text
        elif roll < 0.60:
            is_audio = 1
            column_text, body = None, make_attributed_body("\ufffc")
            exp.text, exp.kind = None, "attachment"
        elif roll < 0.63:
            old = _words(rng)
            date_edited = date + rng.randint(1, 600) * NS
            summary = summary_info(edits=[((date / NS), old), (date_edited / NS, text)])
            column_text = None
            exp.edited_at_ns = date_edited
        elif roll < 0.64:
            date_edited = date_retracted = date + rng.randint(1, 120) * NS
            column_text, body = None, None
            summary = summary_info(retracted=[0])
            exp.text, exp.is_unsent, exp.edited_at_ns = None, True, date_edited
        elif roll < 0.645:
            kept = _words(rng)
            date_edited = date_retracted = date + rng.randint(1, 120) * NS
            column_text, body = None, make_attributed_body(kept)
            summary = summary_info(parts=2, retracted=[1])
            exp.text, exp.edited_at_ns = kept, date_edited
        elif roll < 0.70:
            column_text, body, summary = None, None, None
            exp.text = None
        elif roll < 0.72:
            item_type = rng.choice([1, 2, 3])
            column_text, body = None, None
            exp.text, exp.kind = None, "other"
        elif roll < 0.76 and blob_items:
            name, expected_text = blob_items[i % len(blob_items)]
            body = (CHATDB_FIXTURES / "typedstream" / name).read_bytes()
            column_text = None
            exp.text = _clean(expected_text) if expected_text else None
        elif roll < 0.762:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.choice([40, 300, 1500])))
            column_text, body = None, make_attributed_body(text)
            exp.text = text
        if guids and rng.random() < 0.05 and exp.kind == "text":
            thread = rng.choice(guids)
            exp.reply_to = thread
        message_rows.append(
            (
                i,
                guid,
                column_text,
                body,
                handle_row,
                service,
                date,
                int(from_me),
                item_type,
                assoc_type,
                assoc_guid,
                balloon,
                is_audio,
                thread,
                date_edited,
                date_retracted,
                summary,
                "E:me@example.com",
            )
        )
        joins.append((c, i, date))
        guids.append(guid)
        result.messages[guid] = exp

    conn.executemany(
        f"INSERT INTO message (ROWID, {_MESSAGE_COLUMNS}) "  # noqa: S608
        f"VALUES ({', '.join('?' * 18)})",
        message_rows,
    )
    conn.executemany(
        "INSERT INTO chat_message_join (chat_id, message_id, message_date) VALUES (?, ?, ?)", joins
    )
    conn.executemany(
        "INSERT INTO attachment (ROWID, guid, original_guid, filename, mime_type, is_sticker, "
        "transfer_state) VALUES (?, ?, ?, ?, ?, ?, 5)",
        [
            (
                n,
                f"at_{n}",
                f"at_{n}",
                f"~/Library/Messages/Attachments/{n}.heic",
                "image/heic",
                int(sticker),
            )
            for n, (_, sticker) in enumerate(attachments, start=1)
        ],
    )
    conn.executemany(
        "INSERT INTO message_attachment_join (message_id, attachment_id) VALUES (?, ?)",
        [(m, n) for n, (m, _) in enumerate(attachments, start=1)],
    )
    conn.commit()
    conn.close()
    return result


def _clean(text: str) -> str | None:
    """The reader's placeholder clean-up, restated for expectations."""
    if "\ufffc" not in text and "\ufffd" not in text:
        return text
    pieces = [p.strip() for p in text.replace("\ufffd", "\ufffc").split("\ufffc")]
    joined = "\n".join(p for p in pieces if p)
    return joined or None


def write_row(
    path: Path, chat_guid: str, text: str, *, from_me: bool, when: datetime | None = None
) -> str:
    """What Messages writes when a message is sent from this Mac (`from_me`: the sent row an
    outbox test expects) or arrives from the chat's first participant, dated `when` (default
    now), into the chat `chat_guid`; returns its guid."""
    sent = when or datetime.now(UTC)
    date = int((sent - datetime(2001, 1, 1, tzinfo=UTC)).total_seconds() * NS)
    conn = sqlite3.connect(path)
    register_apple_functions(conn)
    try:
        (chat_rowid,) = conn.execute(
            "SELECT ROWID FROM chat WHERE guid = ?", (chat_guid,)
        ).fetchone()
        (handle,) = conn.execute(
            "SELECT MIN(handle_id) FROM chat_handle_join WHERE chat_id = ?", (chat_rowid,)
        ).fetchone()
        guid = str(uuid.uuid4()).upper()
        cursor = conn.execute(
            "INSERT INTO message (guid, text, attributedBody, handle_id, service, date, "
            "is_from_me, is_sent, is_delivered, account) "
            "VALUES (?, ?, ?, ?, 'iMessage', ?, ?, ?, 1, 'E:me@example.com')",
            (guid, text, make_attributed_body(text), handle or 0, date, int(from_me), int(from_me)),
        )
        conn.execute(
            "INSERT INTO chat_message_join (chat_id, message_id, message_date) VALUES (?, ?, ?)",
            (chat_rowid, cursor.lastrowid, date),
        )
        conn.commit()
    finally:
        conn.close()
    return guid
