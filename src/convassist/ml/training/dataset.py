"""Samples → token sequences for training and evaluation.

A sample is a `prompt` (the seed-format context ending with ``Me:``), a `completion` (the
reply), a `quality` in [0, 1] and the `conversationId` it came from. Its example is
``tokens(prompt) + tokens(" " + reply + "\\n")``: the reply is rendered by
`core.prompt.render_example`, as inference expects it after ``Me:``, and the newline that ends
the turn is a target too, so the model learns to stop (generation stops at ``\\nThem:``,
``\\nMe:`` or ``\\n\\n``, all of which begin with it). Tokens come from llama.cpp's own
tokenizer for the served GGUF, so training sees exactly the tokens inference sees.

Only reply tokens carry a loss (prompt labels are -100); the sample's quality weights it.
Training examples (`own_lines`) also take the loss on the owner's earlier messages in the
context (its ``Me: …`` lines): the same forward pass then learns from several of the
owner's messages instead of one, which at equal compute cut the held-out perplexity half as
much again (docs/ml-service.md, "Training settings at equal compute"); evaluation scores
the reply alone.
Contexts longer than the budget lose their oldest lines (cut from the left, at a line
start). Held-out data is chosen by conversation, never by message, so no conversation is on
both sides.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from convassist.core.prompt import PROMPT_END, render_example
from convassist.ml.models.native import load_llama

IGNORE_INDEX = -100
END_OF_TURN = "\n"


@dataclass(frozen=True, slots=True)
class Sample:
    """One training pair as the server sends it."""

    prompt: str
    completion: str
    quality: float = 1.0
    conversation_id: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Sample:
        """A sample from its JSON form (camelCase keys; other keys are ignored)."""
        conversation = data.get("conversationId")
        return cls(
            prompt=str(data["prompt"]),
            completion=str(data["completion"]),
            quality=float(data.get("quality", 1.0)),
            conversation_id=str(conversation) if conversation else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "completion": self.completion,
            "quality": self.quality,
            "conversationId": self.conversation_id,
        }


def unusable_reason(sample: Sample) -> str | None:
    """Why a sample cannot be trained on, or None when it can."""
    if not sample.prompt.rstrip().endswith(PROMPT_END):
        return f"the prompt does not end with {PROMPT_END!r}"
    if not sample.completion.strip():
        return "the reply is empty"
    if not sample.quality > 0:
        return "its quality is 0"
    return None


def usable(samples: Iterable[Sample]) -> list[Sample]:
    return [sample for sample in samples if unusable_reason(sample) is None]


def read_samples(path: Path) -> list[Sample]:
    """Samples from a JSONL file (the server's export format, or what `write_samples` wrote).
    ValueError names the first line that is not a sample and why (never its text)."""
    samples = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                samples.append(_sample_line(line, f"{path}, line {number}"))
    return samples


def _sample_line(line: str, where: str) -> Sample:
    try:
        data = json.loads(line)
    except ValueError:
        why = "not JSON"
    else:
        if not isinstance(data, dict):
            why = "not a JSON object"
        else:
            try:
                return Sample.from_json(data)
            except KeyError as exc:
                why = f"no {exc} key"
            except (TypeError, ValueError):
                why = "a field of the wrong type"
    raise ValueError(
        f'{where}: not a training sample ({why}); each line must be a JSON object with "prompt" '
        'and "completion"'
    )


def write_samples(path: Path, samples: Iterable[Sample]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for sample in samples:
            handle.write(json.dumps(sample.to_json(), ensure_ascii=False) + "\n")


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, with no BOS."""
        ...

    @property
    def prefix(self) -> list[int]:
        """What starts every prompt (BOS where the model adds one)."""
        ...


class LlamaTokenizer:
    """llama.cpp's tokenizer for a GGUF file (vocabulary only: loads in a fraction of a second)."""

    def __init__(self, model_path: Path) -> None:
        self._llm = load_llama(model_path, vocab_only=True)
        with_bos = self._tokenize("x", bos=True)
        self._prefix = with_bos[: len(with_bos) - len(self._tokenize("x", bos=False))]

    def _tokenize(self, text: str, *, bos: bool) -> list[int]:
        # As the inference backend tokenizes prompts: special tokens are parsed.
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=bos, special=True))

    def encode(self, text: str) -> list[int]:
        return self._tokenize(text, bos=False)

    @property
    def prefix(self) -> list[int]:
        return list(self._prefix)

    def close(self) -> None:
        self._llm.close()


@dataclass(frozen=True, slots=True)
class Example:
    """One tokenized sample: `labels` is -100 where no loss is taken (the prompt)."""

    input_ids: list[int]
    labels: list[int]
    weight: float
    conversation_id: str | None = None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def targets(self) -> int:
        """Tokens with a loss (the reply and its end-of-turn newline)."""
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def build_example(
    sample: Sample, tokenizer: Tokenizer, max_length: int, *, own_lines: bool = False
) -> Example:
    """Tokenize one usable sample into at most `max_length` tokens.

    A reply longer than half the budget is cut (and then has no end-of-turn target); the
    context keeps its newest tokens, starting at a line boundary where that keeps at least
    half of what fits. With `own_lines`, the owner's earlier messages in the context (the
    text and newline of its ``Me: …`` lines) are targets too: training only.
    """
    _, completion = render_example((), sample.completion)
    prefix = tokenizer.prefix
    reply = tokenizer.encode(completion + END_OF_TURN)[: max(1, max_length // 2)]
    budget = max(max_length - len(reply) - len(prefix), 1)
    context = tokenizer.encode(sample.prompt.rstrip())
    if len(context) > budget:
        context = _cut_left(context, budget, tokenizer.encode(END_OF_TURN))
    input_ids = prefix + context + reply
    context_labels = _own_lines(context, tokenizer) if own_lines else [IGNORE_INDEX] * len(context)
    labels = [IGNORE_INDEX] * len(prefix) + context_labels + reply
    return Example(input_ids, labels, sample.quality, sample.conversation_id)


def _own_lines(context: list[int], tokenizer: Tokenizer) -> list[int]:
    """Labels of `context`: the tokens after ``Me:`` up to and with the line's newline."""
    labels = [IGNORE_INDEX] * len(context)
    newline, me = tokenizer.encode(END_OF_TURN), tokenizer.encode(PROMPT_END)
    if len(newline) != 1:
        return labels
    starts = [0] + [i + 1 for i, token in enumerate(context) if token == newline[0]]
    for start in starts:
        if context[start : start + len(me)] != me:
            continue
        for i in range(start + len(me), len(context)):
            labels[i] = context[i]
            if context[i] == newline[0]:
                break
    return labels


def _cut_left(tokens: list[int], budget: int, newline: list[int]) -> list[int]:
    tail = tokens[len(tokens) - budget :]
    if len(newline) == 1:
        for i, token in enumerate(tail[: budget // 2]):
            if token == newline[0]:
                return tail[i + 1 :]
    return tail


def build_examples(
    samples: Iterable[Sample], tokenizer: Tokenizer, max_length: int, *, own_lines: bool = False
) -> list[Example]:
    return [
        build_example(sample, tokenizer, max_length, own_lines=own_lines)
        for sample in usable(samples)
    ]


class HasConversation(Protocol):
    @property
    def conversation_id(self) -> str | None: ...


T = TypeVar("T", bound=HasConversation)


def split_by_conversation(items: Sequence[T], fraction: float) -> tuple[list[T], list[T]]:
    """(train, held-out): about `fraction` of the conversations, chosen by a hash of their id.

    The choice is stable (the same conversations are held out by every job). Items without
    a conversation always train; at least one conversation trains when nothing else does,
    and one is held out when `fraction` > 0 and there are two or more.
    """
    conversations = sorted(
        {item.conversation_id for item in items if item.conversation_id},
        key=lambda cid: hashlib.sha256(cid.encode("utf-8")).hexdigest(),
    )
    loose = any(not item.conversation_id for item in items)
    count = round(fraction * len(conversations))
    if fraction > 0:
        count = max(count, 1)
    count = min(count, len(conversations) if loose else len(conversations) - 1)
    held = set(conversations[: max(count, 0)])
    train = [item for item in items if item.conversation_id not in held]
    heldout = [item for item in items if item.conversation_id in held]
    return train, heldout


def length_batches(
    examples: Sequence[Example], batch_size: int, rng: random.Random
) -> list[list[Example]]:
    """Batches of similar length (little padding), in a random order.

    Examples are sorted by length (ties broken at random) and cut into runs of `batch_size`.
    """
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i]), rng.random()))
    batches = [
        [examples[i] for i in order[start : start + batch_size]]
        for start in range(0, len(order), batch_size)
    ]
    rng.shuffle(batches)
    return batches
