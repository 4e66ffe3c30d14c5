"""Character edit distance (Levenshtein: insertions, deletions, substitutions of one code point).

Hyyrö's bit-parallel form of Myers' algorithm: one pass over `a` with Python integers as bit
vectors over `b`, so a long rewrite costs len(a) big-integer steps instead of len(a) * len(b).
"""

from __future__ import annotations


def levenshtein(a: str, b: str) -> int:
    """The number of single-character edits that turn `a` into `b`."""
    if a == b:
        return 0
    # The common prefix and suffix change nothing.
    start = 0
    while start < len(a) and start < len(b) and a[start] == b[start]:
        start += 1
    a, b = a[start:], b[start:]
    end = 0
    while end < len(a) and end < len(b) and a[-1 - end] == b[-1 - end]:
        end += 1
    if end:
        a, b = a[:-end], b[:-end]
    if not a or not b:
        return len(a) + len(b)
    matches: dict[str, int] = {}
    for i, char in enumerate(b):
        matches[char] = matches.get(char, 0) | (1 << i)
    full = (1 << len(b)) - 1
    last = 1 << (len(b) - 1)
    plus, minus, score = full, 0, len(b)
    for char in a:
        eq = matches.get(char, 0)
        xv = eq | minus
        xh = ((((eq & plus) + plus) & full) ^ plus) | eq
        hplus = (minus | ~(xh | plus)) & full
        hminus = plus & xh
        if hplus & last:
            score += 1
        elif hminus & last:
            score -= 1
        hplus = ((hplus << 1) | 1) & full
        hminus = (hminus << 1) & full
        plus = (hminus | ~(xv | hplus)) & full
        minus = hplus & xv
    return score


def normalized(a: str, b: str, distance: int) -> float:
    """`distance` as a share of the longer text (0 = unchanged, 1 = rewritten entirely)."""
    longest = max(len(a), len(b))
    return distance / longest if longest else 0.0
