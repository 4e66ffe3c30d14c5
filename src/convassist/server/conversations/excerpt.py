"""The short part of a matching message shown under a search result, with its words marked."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from convassist.server.conversations.search import MIN_PREFIX, WORD, words

BEFORE = 40
"""Characters of context kept before the first matching word."""
LENGTH = 140
ELLIPSIS = "…"


@lru_cache(maxsize=4096)
def _fold(word: str) -> str:
    """Lower-cased, without diacritics: how the indexes compare words."""
    if word.isascii():
        return word.lower()
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def excerpt(text: str, q: str) -> tuple[str, list[tuple[int, int]]]:
    """About `LENGTH` characters of `text` from shortly before its first word matching `q`,
    and the (start, end) offsets of the matching words within that excerpt."""
    flat = " ".join(text.split())
    found = [_fold(word) for word in words(q)]
    *whole, last = found or [""]
    spans = [
        m.span()
        for m in WORD.finditer(flat)
        if (folded := _fold(m.group())) in whole
        or folded == last
        or (len(last) >= MIN_PREFIX and folded.startswith(last))
    ]
    start = 0
    first = spans[0][0] if spans else 0
    if first > BEFORE:
        space = flat.find(" ", first - BEFORE, first)
        start = space + 1 if space >= 0 else first - BEFORE
    end = len(flat)
    if end - start > LENGTH:
        cut = flat.rfind(" ", start, start + LENGTH)
        end = cut if cut > first else start + LENGTH
    lead = ELLIPSIS if start > 0 else ""
    shift = len(lead) - start
    marked = [(a + shift, b + shift) for a, b in spans if a >= start and b <= end]
    return lead + flat[start:end] + (ELLIPSIS if end < len(flat) else ""), marked
