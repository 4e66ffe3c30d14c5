"""Held-out evaluation: mean per-token NLL and perplexity of replies, base vs adapter.

Scored with llama.cpp on the served GGUF (quantized weights, the adapter applied the way
the service applies it), so the numbers describe what is actually served. Only the reply
tokens and their end-of-turn newline count (the prompt is context), every token equally
(quality does not weight evaluation). Perplexity = exp(mean NLL).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convassist.ml.backends.llama import LoraSwitch, default_threads
from convassist.ml.models.native import LlamaLoadConfig, load_llama
from convassist.ml.training.dataset import IGNORE_INDEX, Example


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
        total = 0.0
        tokens = 0
        for example in examples:
            nll, count = self._example_nll(example)
            total += nll
            tokens += count
        return Score(nll=total / tokens if tokens else None, tokens=tokens, examples=len(examples))

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
class Comparison:
    base: Score
    adapter: Score

    def metrics(self) -> dict[str, Any]:
        """The job-metrics keys: baseNll, adapterNll, basePerplexity, adapterPerplexity…"""
        return {
            "baseNll": _round(self.base.nll),
            "adapterNll": _round(self.adapter.nll),
            "basePerplexity": _round(self.base.perplexity),
            "adapterPerplexity": _round(self.adapter.perplexity),
            "heldOutTokens": self.base.tokens,
        }


def _round(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


def compare(scorer: LlamaScorer, examples: Sequence[Example], adapter: Path) -> Comparison:
    """Score `examples` under the base model, then under `adapter`."""
    scorer.set_adapter(None)
    base = scorer.score(examples)
    scorer.set_adapter(adapter)
    try:
        tuned = scorer.score(examples)
    finally:
        scorer.set_adapter(None)
    return Comparison(base=base, adapter=tuned)
