"""Suggestions against the replies the owner really sent: usable, chrF, length and casing.

A suggestion is usable when it matches the real reply: the same text once case, punctuation
and spacing are ignored (`core.replies.normalize`, what near-duplicate detection
compares), or a sentence chrF of at least `USABLE_CHRF`. Each reply is scored by its best
suggestion (of the three the server asks for): usable in the top 3, and best-of-3 chrF.
Numbers only: no text leaves this module.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sacrebleu.metrics.chrf import CHRF

from convassist.core.replies import normalize

USABLE_CHRF = 60.0
END_PUNCTUATION = (".", "!", "?")

_chrf = CHRF()


def chrf(suggestion: str, real: str) -> float:
    """Sentence chrF (0-100) of a suggestion against the real reply."""
    return float(_chrf.sentence_score(suggestion, [real]).score)


def same_text(suggestion: str, real: str) -> bool:
    """The same reply once case, punctuation and spacing are ignored."""
    key = normalize(real)
    if not key:  # a reply of punctuation or emoji only: it must be the very same
        return suggestion.strip() == real.strip()
    return normalize(suggestion) == key


@dataclass(frozen=True)
class ReplyScore:
    """One model's suggestions for one held-out reply."""

    usable: bool
    """One of the suggestions matches the real reply (same text, or chrF >= USABLE_CHRF)."""
    chrf: float
    """The best suggestion's chrF (0 without suggestions)."""


def score_reply(suggestions: Sequence[str], real: str) -> ReplyScore:
    scores = [chrf(text, real) for text in suggestions]
    best = max(scores, default=0.0)
    matched = any(same_text(text, real) for text in suggestions)
    return ReplyScore(usable=matched or best >= USABLE_CHRF, chrf=best)


def style(texts: Sequence[str]) -> dict[str, float]:
    """Length and casing of some replies: mean words and characters, the share written all
    in lower case (of those with letters), and the share ending with . ! or ?"""
    if not texts:
        return {}
    lettered = [text for text in texts if any(c.isalpha() for c in text)]
    return {
        "meanWords": round(statistics.fmean(len(text.split()) for text in texts), 2),
        "meanChars": round(statistics.fmean(len(text) for text in texts), 1),
        "lowercaseShare": _share(text == text.lower() for text in lettered),
        "endPunctuationShare": _share(text.rstrip().endswith(END_PUNCTUATION) for text in texts),
    }


def _share(flags: Iterable[bool]) -> float:
    values = list(flags)
    return round(sum(values) / len(values), 4) if values else 0.0


@dataclass(frozen=True)
class ModelResult:
    """One model's suggestions for each measured reply (and their scores)."""

    suggestions: list[list[str]]
    scores: list[ReplyScore]

    @classmethod
    def of(cls, suggestions: list[list[str]], reals: Sequence[str]) -> ModelResult:
        scores = [score_reply(s, real) for s, real in zip(suggestions, reals, strict=True)]
        return cls(suggestions, scores)

    @property
    def usable(self) -> list[bool]:
        return [score.usable for score in self.scores]

    @property
    def chrfs(self) -> list[float]:
        return [score.chrf for score in self.scores]

    def metrics(self) -> dict[str, Any]:
        """M of the job metrics: usableTop3, chrf, meanSuggestions and the style keys of
        all its suggestions."""
        texts = [text for reply in self.suggestions for text in reply]
        return {
            "usableTop3": _share(self.usable),
            "chrf": round(statistics.fmean(self.chrfs), 2) if self.scores else 0.0,
            "meanSuggestions": (
                round(statistics.fmean(len(reply) for reply in self.suggestions), 2)
                if self.suggestions
                else 0.0
            ),
            **style(texts),
        }


def closer_share(model: ModelResult, other: ModelResult) -> float:
    """Share of replies where `model`'s best suggestion has a higher chrF than `other`'s."""
    pairs = list(zip(model.chrfs, other.chrfs, strict=True))
    return _share(mine > theirs for mine, theirs in pairs)
