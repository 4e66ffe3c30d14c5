"""The BYU Chit-Chat corpus (MIT; PyPI `chitchat-dataset`, the `demo` extra).

Real people texting each other one-on-one, with sender ids that are stable across
conversations, so one person can play the owner. The corpus maps a conversation id to
`{"messages": [turn, …], …}`; a turn is a list of one sender's messages, each
`{"text", "timestamp", "sender"}`. This is the one loader, for `convassist demo` and the
benchmarks.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from convassist.core.prompt import clean_text

PACKAGE = "chitchat_dataset"
Conversation = dict[str, Any]


class CorpusMissing(Exception):
    """The corpus is not installed (nor found at the path given)."""


def load_corpus(path: Path | None = None) -> dict[str, Conversation]:
    """The corpus from `path` (JSON, or gzip-compressed JSON), or else from the installed
    `chitchat-dataset` package."""
    if path is None:
        try:
            path = Path(str(resources.files(PACKAGE) / "dataset.json"))
        except ModuleNotFoundError:
            raise CorpusMissing(
                "The demo corpus is not installed: "
                "pip install 'conversation-assistant[demo]' (the chitchat-dataset package)."
            ) from None
    if not path.is_file():
        raise CorpusMissing(f"No Chit-Chat corpus at {path}.")
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            corpus: dict[str, Conversation] = json.load(handle)
    else:
        with path.open(encoding="utf-8") as handle:
            corpus = json.load(handle)
    return corpus


def senders(conversation: Conversation) -> set[str]:
    return {turn[0]["sender"] for turn in conversation["messages"]}


def most_conversations(corpus: dict[str, Conversation]) -> str:
    """The sender in the most conversations."""
    counts = Counter(sender for c in corpus.values() for sender in senders(c))
    return counts.most_common(1)[0][0]


def replies_in(conversation: Conversation, me: str) -> int:
    """The person's replies: their first non-empty message after one from the other side
    (as the server's history counts them)."""
    count, previous_incoming = 0, False
    for turn in conversation["messages"]:
        for message in turn:
            if not clean_text(message["text"]):
                continue
            mine = message["sender"] == me
            count += mine and previous_incoming
            previous_incoming = not mine
    return count


def pick_conversations(
    corpus: dict[str, Conversation], me: str, replies: int
) -> list[tuple[str, Conversation]]:
    """`me`'s two-person conversations in file order, until they hold `replies` replies."""
    chosen: list[tuple[str, Conversation]] = []
    total = 0
    for conversation_id, conversation in corpus.items():
        if total >= replies:
            break
        people = senders(conversation)
        if me in people and len(people) == 2:
            chosen.append((conversation_id, conversation))
            total += replies_in(conversation, me)
    return chosen


def sync_payload(
    chat_guid: str,
    conversation: Conversation,
    me: str,
    handle_of: Callable[[str], str] = str,
) -> dict[str, Any]:
    """One conversation as the agent sends it to `POST /api/sync/messages` (`me`'s messages
    outgoing; the other person's handle is `handle_of(sender id)`). Message guids are
    `<chat_guid>-<n>`; times are made strictly increasing (the corpus has one-second
    resolution, chat.db has nanoseconds)."""
    other = next(s for s in senders(conversation) if s != me)
    handle = handle_of(other)
    messages: list[dict[str, Any]] = []
    previous: datetime | None = None
    for number, message in enumerate(m for turn in conversation["messages"] for m in turn):
        sent = datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00"))
        if previous is not None and sent <= previous:
            sent = previous + timedelta(milliseconds=1)
        previous = sent
        mine = message["sender"] == me
        messages.append(
            {
                "imessageGuid": f"{chat_guid}-{number}",
                "senderId": None if mine else handle,
                "direction": "outgoing" if mine else "incoming",
                "text": message["text"],
                "sentAt": sent.isoformat(),
            }
        )
    return {"conversationId": chat_guid, "participants": [handle], "messages": messages}
