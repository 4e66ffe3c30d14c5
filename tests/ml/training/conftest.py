"""LoRA fixtures: synthetic conversations with a distinctive "Me" voice, the model in torch."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from convassist.core.prompt import ChatLine, render_prompt
from convassist.ml.training.dataset import LlamaTokenizer, Sample, build_examples

if TYPE_CHECKING:
    from convassist.ml.training.trainer import TrainConfig, TrainResult

OPENERS = [
    "hey are you coming tonight?",
    "did you see the game last night",
    "what are you up to this weekend",
    "can you pick up milk on the way home",
    "how was the interview?",
    "are we still on for lunch tomorrow",
    "i just finished that book you lent me",
    "the train is late again",
    "want to grab coffee later?",
    "my laptop died in the middle of class",
    "guess who i ran into at the store",
    "happy birthday!! any plans?",
]
FOLLOW_UPS = ["nice", "ok cool", "haha really?", "wait what", "sounds good", "for real?"]
# The owner's voice: short replies that always end the same odd way, easy to learn.
REPLIES = [
    "ya ya totally, banana pancakes",
    "no way dude, banana pancakes",
    "sure thing, banana pancakes",
    "omg yes, banana pancakes",
    "lol maybe, banana pancakes",
    "on my way, banana pancakes",
]


def make_samples(conversations: int, per_conversation: int = 3, seed: int = 0) -> list[Sample]:
    """Samples like the server's: a growing seed-format context, then the owner's reply."""
    rng = random.Random(seed)
    samples = []
    for c in range(conversations):
        lines = [ChatLine("them", rng.choice(OPENERS))]
        for _ in range(per_conversation):
            reply = rng.choice(REPLIES)
            samples.append(
                Sample(
                    prompt=render_prompt(lines),
                    completion=reply,
                    quality=rng.choice([0.6, 0.8, 1.0]),
                    conversation_id=f"conv-{c}",
                )
            )
            lines += [ChatLine("me", reply), ChatLine("them", rng.choice(FOLLOW_UPS))]
    return samples


def sample_json(samples: list[Sample]) -> list[dict[str, Any]]:
    return [s.to_json() for s in samples]


@pytest.fixture(scope="session")
def tokenizer(default_model_path: Path) -> Iterator[LlamaTokenizer]:
    tok = LlamaTokenizer(default_model_path)
    yield tok
    tok.close()


@pytest.fixture(scope="session")
def torch_model(default_model_path: Path) -> Any:
    """The served GGUF in transformers, dequantized (loaded once: about 15 s)."""
    from convassist.ml.training.trainer import load_model

    return load_model(default_model_path)


@dataclass
class TrainedAdapter:
    """A LoRA trained briefly at a high learning rate (so it changes the model a lot)."""

    peft_model: Any
    path: Path
    result: TrainResult | None
    config: TrainConfig


@pytest.fixture(scope="session")
def trained_adapter(
    torch_model: Any,
    tokenizer: LlamaTokenizer,
    default_model_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> TrainedAdapter:
    """The default targets (every projection of the top 15 layers), a few steps at a high
    learning rate, exported."""
    from convassist.ml.training.export import export_adapter
    from convassist.ml.training.trainer import TrainConfig, add_lora, train

    config = TrainConfig(epochs=4, learning_rate=5e-3, rank=8, batch_size=8, seed=1, threads=2)
    peft_model = add_lora(copy.deepcopy(torch_model), config)
    examples = build_examples(make_samples(8), tokenizer, max_length=64)
    result = train(peft_model, examples, config, pad_id=2)
    path = tmp_path_factory.mktemp("adapter") / "adapter.gguf"
    export_adapter(peft_model, path, model_path=default_model_path, name="lora-test")
    return TrainedAdapter(peft_model=peft_model, path=path, result=result, config=config)
