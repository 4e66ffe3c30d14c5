"""The owner's own stock replies among the candidates (`ownReplies`, see `core/replies.py`).

The model finds which offered reply that is not already a candidate is likeliest as a whole
line after the prompt (`" " + reply + "\\n"`: the newline says the reply ends there, so
"yeah" is not credited with "yeah that's great"), and that one replaces the least confident
sampled candidate when the request asks for several. Its confidence is a sampled
candidate's measure (`Completion.confidence` over the line and its newline), so candidates
stay best-first on one scale. Only a backend that can score continuations
(`ScoringBackend`: llama) does this; another one returns its sampled candidates unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from convassist.core.replies import normalize
from convassist.ml.backends.base import Backend, Completion, ScoringBackend, best_first

OWN_FINISH = "own_reply"
"""The `finish_reason` of a candidate that is one of the owner's own replies."""


def likeliest_own_reply(
    backend: Backend, prompt: str, own_replies: Sequence[str], taken: Sequence[str]
) -> Completion | None:
    """The offered reply the model finds likeliest after `prompt`, among those whose
    normalised text is not in `taken`; None when none is left or the backend cannot score."""
    if not isinstance(backend, ScoringBackend):
        return None
    offered = [r.strip() for r in own_replies if normalize(r) not in ("", *taken)]
    if not offered:
        return None
    likeliest = backend.likeliest(prompt, [f" {reply}\n" for reply in offered])
    if likeliest is None:
        return None
    return Completion(offered[likeliest.index], likeliest.token_logprobs, 0, OWN_FINISH)


def with_own_reply(
    backend: Backend, prompt: str, own_replies: Sequence[str], sampled: list[Completion], n: int
) -> list[Completion]:
    """`sampled` (best-first) with the likeliest own reply in the last place of `n`, re-sorted
    best-first; unchanged for one candidate or without own replies."""
    if n < 2 or not own_replies:
        return sampled
    taken = [normalize(c.text) for c in sampled]
    own = likeliest_own_reply(backend, prompt, own_replies, taken)
    if own is None:
        return sampled
    return best_first([*sampled[: n - 1], own])
