"""The owner's own stock replies: the short messages they send again and again.

Many replies are the same few words ("yeah", "oh ok", "haha"): on a Chit-Chat person, the
three most frequent replies of their history were, word for word, 7 % of the replies in
conversations held out from it. A sampled suggestion rarely lands on exactly those words, so
the server offers the model the owner's most frequent replies with each suggestion request
(`ownReplies`), and the ML service puts the one the model finds likeliest in the prompt's
context among the candidates (`ml/generation/own.py`). The training job's held-out
measure does the same with the replies of the conversations it trains on.

A reply counts only when it is short (`MAX_WORDS`, `MAX_CHARS`), was sent at least
`MIN_USES` times and in at least `MIN_CONVERSATIONS` conversations: phrases, not anything
that belongs to one chat. Texts compare as `normalize` makes them (case, punctuation and
spacing ignored; the conversations of spellings that meet are added up, so a count can be
high by the conversations two spellings share); each is offered as the owner most often
wrote it. The server tallies in SQL (`server/responses/own.py`), a job from its samples.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from convassist.core.prompt import clean_text

LIMIT = 5
"""Replies offered with a request (the most frequent first). Scoring each costs about one
generated token: with 10, the ML service's scoring took a third as long as sampling three
candidates (465 against 1,424 ms, SmolLM2 on 2 AMD EPYC cores)."""
MAX_OWN_REPLIES = 20
"""The most a request may carry (`POST /generate`'s `ownReplies`)."""
MAX_WORDS = 6
MAX_CHARS = 60
MIN_USES = 3
MIN_CONVERSATIONS = 2


def normalize(text: str) -> str:
    """Case, punctuation and spacing removed: how replies and candidates are compared."""
    return " ".join(re.sub(r"[^\w\s]", "", text.casefold()).split())


def short_enough(text: str) -> bool:
    return len(text) <= MAX_CHARS and len(text.split()) <= MAX_WORDS


@dataclass(frozen=True)
class Tally:
    """How often one exact text was sent, and in how many conversations."""

    text: str
    uses: int
    conversations: int


def tally(sent: Iterable[tuple[str, str | None]]) -> list[Tally]:
    """Tallies of `(text, conversation id)` pairs, one pair per message sent."""
    seen: dict[str, tuple[int, set[str | None]]] = {}
    for text, conversation in sent:
        uses, conversations = seen.get(text, (0, set()))
        conversations.add(conversation)
        seen[text] = (uses + 1, conversations)
    return [Tally(text, uses, len(where)) for text, (uses, where) in seen.items()]


def frequent_replies(tallies: Iterable[Tally], limit: int = LIMIT) -> list[str]:
    """The owner's stock replies, most used first. Texts that `normalize` to the same key
    count as one (their uses and conversations added up), offered in their most used form."""
    merged: dict[str, tuple[int, int, Counter[str]]] = {}
    for item in tallies:
        text = clean_text(item.text)
        key = normalize(text)
        if not key or not short_enough(text):
            continue
        uses, conversations, forms = merged.get(key, (0, 0, Counter()))
        forms[text] += item.uses
        merged[key] = (uses + item.uses, conversations + item.conversations, forms)
    ranked = sorted(
        (-uses, key, forms.most_common(1)[0][0])
        for key, (uses, conversations, forms) in merged.items()
        if uses >= MIN_USES and conversations >= MIN_CONVERSATIONS
    )
    return [form for _, _, form in ranked[:limit]]
