"""Held-out evaluation: mean per-token NLL and perplexity of replies, base vs adapter.

One evaluation for the training job (runner.py) and `convassist eval`: `evaluate` takes
the samples, keeps the usable ones of the conversations a job holds out, tokenizes them,
scores them under the base model, the adapter and (for a training job) the adapter that was
active when it was queued, and returns a `Report`.

Scored with llama.cpp on the served GGUF (quantized weights, the adapter applied the way
the service applies it), so the numbers describe what is actually served. Only the reply
tokens and their end-of-turn newline count (the prompt is context), every token equally
(quality does not weight evaluation). Perplexity = exp(mean NLL).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convassist.ml.backends.llama import LoraSwitch, default_threads
from convassist.ml.models.native import LlamaLoadConfig, load_llama
from convassist.ml.training.dataset import (
    IGNORE_INDEX,
    Example,
    LlamaTokenizer,
    Sample,
    build_examples,
    split_by_conversation,
    usable,
)


@dataclass(frozen=True)
class Score:
    nll: float | None
    """Mean NLL per reply token, in nats (None without tokens)."""
    tokens: int
    examples: int

    @property
    def perplexity(self) -> float | None:
        return math.exp(self.nll) if self.nll is not None else None


class LlamaScorer:
    """Scores examples with llama.cpp, with or without a LoRA adapter."""

    def __init__(
        self,
        model_path: Path,
        *,
        context_size: int,
        threads: int | None = None,
        config: LlamaLoadConfig | None = None,
    ) -> None:
        n_threads = threads or default_threads()
        self._llm: Any = load_llama(
            model_path,
            config,
            n_ctx=context_size,
            n_batch=min(context_size, 512),
            n_threads=n_threads,
            n_threads_batch=n_threads,
            logits_all=True,
        )
        self._lora = LoraSwitch(self._llm)
        self.context_size = context_size

    def set_adapter(self, path: Path | None) -> None:
        self._lora.set(path)

    def score(self, examples: Sequence[Example]) -> Score:
        return self.score_within(examples, None)

    def score_within(
        self, examples: Sequence[Example], until: float | None, minimum: int = 0
    ) -> Score:
        """Score `examples` in order, stopping at `until` (`time.monotonic()`) once `minimum`
        are scored (`Score.examples` says how many were)."""
        total = 0.0
        tokens = 0
        scored = 0
        for example in examples:
            if until is not None and scored >= minimum and time.monotonic() >= until:
                break
            nll, count = self._example_nll(example)
            total += nll
            tokens += count
            scored += 1
        return Score(nll=total / tokens if tokens else None, tokens=tokens, examples=scored)

    def _example_nll(self, example: Example) -> tuple[float, int]:
        ids = example.input_ids[-self.context_size :]
        labels = example.labels[-self.context_size :]
        positions = [t for t in range(len(ids) - 1) if labels[t + 1] != IGNORE_INDEX]
        if not positions:
            return 0.0, 0
        self._llm.reset()
        self._llm.eval(ids)
        logits = np.asarray(self._llm.scores[positions], dtype=np.float64)
        peak = logits.max(axis=1, keepdims=True)
        log_norm = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
        chosen = logits[np.arange(len(positions)), [ids[t + 1] for t in positions]]
        return float((log_norm - chosen).sum()), len(positions)

    def close(self) -> None:
        self._lora.set(None)
        self._llm.close()


@dataclass(frozen=True)
class EvalSettings:
    """Which conversations are held out, the tokens per example, llama.cpp's threads/config."""

    holdout_fraction: float
    """As the training job's; 1 scores every usable sample."""
    max_length: int
    threads: int | None = None
    llama_config: LlamaLoadConfig | None = None


@dataclass(frozen=True)
class Report:
    base: Score
    adapter: Score | None
    """None when no adapter was scored."""
    conversations: int
    active: Score | None = None
    """The adapter active when the job was queued, when there was one."""

    def metrics(self) -> dict[str, Any]:
        """The job-metrics keys: baseNll, adapterNll, basePerplexity, adapterPerplexity…"""
        tuned = self.adapter
        return {
            "baseNll": _round(self.base.nll),
            "adapterNll": _round(tuned.nll) if tuned else None,
            "basePerplexity": _round(self.base.perplexity),
            "adapterPerplexity": _round(tuned.perplexity) if tuned else None,
            "heldOutTokens": self.base.tokens,
            "heldOutScored": self.base.examples,
            **(
                {
                    "activeNll": _round(self.active.nll),
                    "activePerplexity": _round(self.active.perplexity),
                }
                if self.active
                else {}
            ),
        }


def _round(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


def held_out(samples: Sequence[Sample], fraction: float) -> list[Sample]:
    """The usable samples of the conversations a job with this holdout `fraction` scores."""
    kept = usable(samples)
    return kept if fraction >= 1 else split_by_conversation(kept, fraction)[1]


MIN_SCORED = 40
"""Held-out replies scored under every model even past the deadline (all when fewer)."""
SCORING_SHARE = 0.5
"""With a deadline, perplexity scoring takes at most this share of the time left to it
(the held-out suggestions get the rest)."""


def evaluate(
    model_path: Path,
    samples: Sequence[Sample],
    settings: EvalSettings,
    adapter: Path | None,
    active: Path | None = None,
    *,
    deadline: float | None = None,
    seed: int = 0,
) -> Report:
    """Split, tokenize, then score the held-out replies under the base model, `adapter` and
    `active`. With a `deadline` (a training job's budget), the replies are taken in an order
    shuffled with `seed`, and the base model scores them until its share of the time is used
    (`SCORING_SHARE`, split between the models; at least `MIN_SCORED`): every model then
    scores the same replies."""
    kept = held_out(samples, settings.holdout_fraction)
    if not kept:
        empty = Score(nll=None, tokens=0, examples=0)
        return Report(
            base=empty,
            adapter=empty if adapter else None,
            conversations=0,
            active=empty if active else None,
        )
    tokenizer = LlamaTokenizer(model_path)
    try:
        examples = build_examples(kept, tokenizer, settings.max_length)
    finally:
        tokenizer.close()
    scorer = LlamaScorer(
        model_path,
        context_size=settings.max_length + 8,
        threads=settings.threads,
        config=settings.llama_config,
    )
    try:
        until = None
        if deadline is not None:
            random.Random(seed).shuffle(examples)
            models = 1 + (adapter is not None) + (active is not None)
            until = time.monotonic() + SCORING_SHARE * (deadline - time.monotonic()) / models
        base = scorer.score_within(examples, until, MIN_SCORED)
        examples = examples[: base.examples]
        tuned = before = None
        if adapter is not None:
            scorer.set_adapter(adapter)
            tuned = scorer.score(examples)
        if active is not None:
            scorer.set_adapter(active)
            before = scorer.score(examples)
    finally:
        scorer.close()
    conversations = len({e.conversation_id for e in examples})
    return Report(base, tuned, conversations, active=before)
