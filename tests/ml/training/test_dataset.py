"""Samples → examples: reply-only labels, end-of-turn, weights, truncation, split, batches."""

from __future__ import annotations

import random

import pytest

from convassist.ml.training.dataset import (
    IGNORE_INDEX,
    LlamaTokenizer,
    Sample,
    build_example,
    build_examples,
    length_batches,
    split_by_conversation,
    unusable_reason,
    usable,
)
from tests.ml.conftest import PROMPT
from tests.ml.training.conftest import make_samples


def test_only_the_reply_and_its_newline_are_targets(tokenizer: LlamaTokenizer) -> None:
    sample = Sample(PROMPT, "  a chat app,\n mostly ", quality=0.7, conversation_id="c1")
    example = build_example(sample, tokenizer, max_length=256)
    prompt_ids = tokenizer.encode(PROMPT)
    # The prompt tokenizes exactly as the inference backend tokenizes it.
    assert example.input_ids[: len(prompt_ids)] == prompt_ids
    assert example.labels[: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    reply = example.input_ids[len(prompt_ids) :]
    # The reply is rendered as inference expects it after "Me:" (one space, one line), then "\n".
    assert reply == tokenizer.encode(" a chat app, mostly\n")
    assert example.labels[len(prompt_ids) :] == reply
    assert reply[-1:] == tokenizer.encode("\n")
    assert example.targets == len(reply)
    assert example.weight == 0.7 and example.conversation_id == "c1"


def test_own_lines_make_the_owners_earlier_messages_targets(tokenizer: LlamaTokenizer) -> None:
    prompt = "Me: yo\nThem: hi there\nMe: hey you\nThem: how are you\nMe:"
    sample = Sample(prompt, "fine", conversation_id="c1")
    example = build_example(sample, tokenizer, max_length=256, own_lines=True)
    targets = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label >= 0]
    assert targets == tokenizer.encode(" yo\n") + tokenizer.encode(" hey you\n") + tokenizer.encode(
        " fine\n"
    )
    assert example.labels[-2:] == tokenizer.encode(" fine\n")[-2:]
    plain = build_example(sample, tokenizer, max_length=256)
    assert plain.input_ids == example.input_ids
    assert plain.targets == len(tokenizer.encode(" fine\n"))


def test_long_contexts_lose_their_oldest_lines(tokenizer: LlamaTokenizer) -> None:
    lines = [f"Them: message number {i} about something" for i in range(40)]
    prompt = "\n".join([*lines, "Me:"])
    example = build_example(Sample(prompt, "ok"), tokenizer, max_length=64)
    assert len(example) <= 64
    text_ids = example.input_ids[: len(example) - example.targets]
    context = tokenizer._llm.detokenize(text_ids).decode()
    # Cut at a line start, newest lines kept, still ending with the "Me:" turn.
    assert context.startswith("Them: message number ")
    assert context.endswith("message number 39 about something\nMe:")
    assert example.labels[-example.targets :] == tokenizer.encode(" ok\n")


def test_a_reply_longer_than_half_the_budget_is_cut(tokenizer: LlamaTokenizer) -> None:
    example = build_example(Sample(PROMPT, "word " * 100), tokenizer, max_length=64)
    assert len(example) <= 64
    assert example.targets == 32


@pytest.mark.parametrize(
    ("sample", "reason"),
    [
        (Sample("Them: hi", "hello"), "the prompt does not end with 'Me:'"),
        (Sample("Them: hi\nMe:", "  \n "), "the reply is empty"),
        (Sample("Them: hi\nMe:", "hello", quality=0.0), "its quality is 0"),
    ],
)
def test_unusable_samples_are_left_out(sample: Sample, reason: str) -> None:
    assert unusable_reason(sample) == reason
    assert usable([sample, Sample("Them: hi\nMe:", "hello")]) == [Sample("Them: hi\nMe:", "hello")]


def test_held_out_data_is_chosen_by_conversation() -> None:
    samples = make_samples(20, per_conversation=4)
    samples.append(Sample("Them: hi\nMe:", "hello"))  # no conversation: always trains
    train, heldout = split_by_conversation(samples, 0.25)
    held_conversations = {s.conversation_id for s in heldout}
    assert len(held_conversations) == 5
    assert not held_conversations & {s.conversation_id for s in train}
    assert len(train) + len(heldout) == len(samples)
    assert samples[-1] in train
    # Stable: the same conversations every time, whatever the order of the samples.
    again = split_by_conversation(list(reversed(samples)), 0.25)[1]
    assert {s.conversation_id for s in again} == held_conversations


def test_the_split_keeps_something_on_each_side() -> None:
    two = make_samples(2)
    train, heldout = split_by_conversation(two, 0.01)
    assert train and heldout  # at least one conversation held out when asked for any
    one = make_samples(1)
    assert split_by_conversation(one, 0.5) == (one, [])  # the only conversation trains
    assert split_by_conversation(two, 0.0) == (two, [])


def test_batches_group_similar_lengths(tokenizer: LlamaTokenizer) -> None:
    examples = build_examples(make_samples(12), tokenizer, max_length=128)
    batches = length_batches(examples, 4, random.Random(0))
    assert sorted(map(id, (e for b in batches for e in b))) == sorted(map(id, examples))
    # Each batch is a run of neighbours in length order (padding stays small).
    runs = sorted((sorted(len(e) for e in batch) for batch in batches), key=lambda r: r[0])
    assert [n for run in runs for n in run] == sorted(len(e) for e in examples)
    assert length_batches(examples, 4, random.Random(0)) == batches  # seeded
