"""The one prompt format (the seed's), shared by context building, inference and training.

A prompt is one line per message, oldest first, and ends with the bare line ``Me:``::

    Them: Hey, how's it going?
    Me: Pretty good, just working on some code
    Them: Nice! What are you building?
    Me:

In group chats the other participants' lines carry their display name (``Alice: …``)
instead of ``Them:``. Newlines and other whitespace runs inside a message collapse to one
space (a blank line is a stop sequence), and messages that are empty after that are skipped.

The model's continuation is expected to begin with a space (``Me:`` is followed by
`` reply`` in every rendered line), so training completions are rendered as ``" " + reply``
and a suggestion is the continuation's first line, stripped (`extract_reply`): a message is
one line, so a newline always ends the reply (the server stops generation there,
`REPLY_STOP`; a model often goes on with an invented next turn such as ``Sam: …``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Speaker = Literal["me", "them"]

ME = "Me"
THEM = "Them"
PROMPT_END = f"{ME}:"
"""How every prompt ends: where the reply goes."""
# The seed's stop sequences: the start of the next turn or a blank line (the ML service's
# default for `POST /generate`).
STOP_SEQUENCES: tuple[str, ...] = ("\nThem:", "\nMe:", "\n\n")
# What the server stops a suggestion at: the end of its line.
REPLY_STOP: tuple[str, ...] = ("\n",)


@dataclass(frozen=True, slots=True)
class ChatLine:
    """One message as the prompt sees it. `name` labels the other side in group chats."""

    speaker: Speaker
    text: str
    name: str | None = None


def clean_text(text: str) -> str:
    """One line: every whitespace run (newlines included) becomes a single space."""
    return " ".join(text.split())


def speaker_label(line: ChatLine, *, group: bool) -> str:
    """``Me``; ``Them`` in one-to-one chats; the sender's name (else ``Them``) in groups."""
    if line.speaker == "me":
        return ME
    if group and line.name:
        name = clean_text(line.name).replace(":", "")
        if name and name not in (ME, THEM):
            return name
    return THEM


def render_lines(lines: Iterable[ChatLine], *, group: bool = False) -> list[str]:
    """``Label: text`` for each non-empty line, in order."""
    rendered = []
    for line in lines:
        text = clean_text(line.text)
        if text:
            rendered.append(f"{speaker_label(line, group=group)}: {text}")
    return rendered


def render_prompt(lines: Iterable[ChatLine], *, group: bool = False) -> str:
    """The prompt for the next reply: the rendered history, then a final ``Me:``."""
    return "\n".join([*render_lines(lines, group=group), PROMPT_END])


def render_example(
    context_lines: Iterable[ChatLine], reply: str, *, group: bool = False
) -> tuple[str, str]:
    """A training pair ``(prompt, completion)``; the completion is ``" " + reply`` on one line.

    ``prompt + completion`` is exactly how that reply would appear in a longer prompt.
    """
    completion = clean_text(reply)
    if not completion:
        raise ValueError("the reply is empty")
    return render_prompt(context_lines, group=group), f" {completion}"


def extract_reply(generated: str) -> str:
    """The reply in a model continuation: its first line, stripped."""
    return generated.split("\n", 1)[0].strip()
