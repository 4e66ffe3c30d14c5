"""The owner's stock replies (`core/replies.py`): what counts, how spellings merge."""

from __future__ import annotations

from convassist.core.replies import (
    LIMIT,
    MAX_CHARS,
    MIN_CONVERSATIONS,
    MIN_USES,
    Tally,
    frequent_replies,
    normalize,
    tally,
)


def sent(text: str, times: int, conversations: int) -> list[tuple[str, str | None]]:
    return [(text, f"c{i % conversations}") for i in range(times)]


def test_only_short_replies_used_often_in_several_conversations_count() -> None:
    history = [
        *sent("yeah", 5, 3),
        *sent("oh ok", MIN_USES, MIN_CONVERSATIONS),
        *sent("see you at the lake house", MIN_USES + 3, 1),  # one chat's
        *sent("lol", MIN_USES - 1, 2),  # not often enough
        *sent("that sounds like a really great plan to me", 9, 4),  # too many words
        *sent("x" * (MAX_CHARS + 1), 9, 4),  # too long
        *sent("!!!", 9, 4),  # nothing left once punctuation goes
    ]
    assert frequent_replies(tally(history)) == ["yeah", "oh ok"]


def test_spellings_merge_and_the_most_used_one_is_offered() -> None:
    history = [*sent("Yeah!", 1, 1), *sent("yeah", 2, 2), *sent("  yeah ", 1, 1)]
    assert normalize("Yeah!") == normalize("yeah") == "yeah"
    # 4 uses of one reply across its spellings; shown as most written (cleaned of spaces).
    assert frequent_replies(tally(history)) == ["yeah"]
    assert frequent_replies([Tally("Haha", 2, 1), Tally("haha!", 1, 1)]) == ["Haha"]


def test_most_used_first_and_at_most_the_limit() -> None:
    tallies = [Tally(f"reply {n}", 100 - n, 5) for n in range(LIMIT + 5)]
    offered = frequent_replies(tallies)
    assert offered == [f"reply {n}" for n in range(LIMIT)]
    assert frequent_replies(tallies, limit=2) == ["reply 0", "reply 1"]
    assert frequent_replies([]) == []
