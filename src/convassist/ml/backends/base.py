"""What an inference backend is: one prompt and sampling settings in, one completion out.

Two backends exist: `llama` (llama-cpp-python in this process, `llama.py`) and `openai` (an
OpenAI-compatible completions server, `openai_compat.py`). `factory.load_backend` picks the
configured one. Confidence of one completion = the geometric mean of the probabilities the
model gave the tokens it produced, `exp(mean(log p(token)))`, clamped to [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from convassist.ml.errors import PromptTooLong
from convassist.ml.models.native import NativeStatus


@dataclass(frozen=True)
class Sampling:
    """Settings for one completion."""

    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int


@dataclass(frozen=True)
class Completion:
    """One sampled continuation and the log-probabilities of its tokens."""

    text: str
    token_logprobs: tuple[float, ...]
    completion_tokens: int
    finish_reason: str

    @property
    def confidence(self) -> float | None:
        if not self.token_logprobs:
            return None
        mean = sum(self.token_logprobs) / len(self.token_logprobs)
        return min(1.0, max(0.0, math.exp(mean)))


def best_first(completions: Iterable[Completion]) -> list[Completion]:
    """Most confident first (those without a confidence last)."""
    return sorted(
        completions, key=lambda c: c.confidence if c.confidence is not None else -1.0, reverse=True
    )


class Backend(Protocol):
    """What the manager needs from an inference engine."""

    name: str
    max_concurrency: int

    @property
    def model_version(self) -> str: ...

    @property
    def context_size(self) -> int | None: ...

    def count_tokens(self, prompt: str) -> int | None:
        """Prompt length in tokens, or None where the backend cannot tell."""
        ...

    def complete(self, prompt: str, sampling: Sampling) -> Completion: ...

    def close(self) -> None: ...


@runtime_checkable
class AdapterBackend(Protocol):
    """A backend that serves a GGUF file in process and can switch LoRA adapters on it."""

    model_id: str
    base_version: str
    path: Path
    adapter_id: str | None
    native: NativeStatus
    """Its llama.cpp configuration and what the start-up probe found."""

    def set_adapter(self, adapter_id: str | None, path: Path | None) -> None: ...


@dataclass(frozen=True)
class Likeliest:
    """Which of the continuations offered is likeliest, and its tokens' log-probabilities."""

    index: int
    token_logprobs: tuple[float, ...]


@runtime_checkable
class ScoringBackend(Protocol):
    """A backend that can tell which continuation of a prompt is likeliest (llama)."""

    def likeliest(self, prompt: str, continuations: Sequence[str]) -> Likeliest | None: ...


def check_fits(prompt_tokens: int, max_tokens: int, context_size: int) -> None:
    if prompt_tokens + max_tokens > context_size:
        raise PromptTooLong(
            f"The prompt is {prompt_tokens} tokens; with maxTokens={max_tokens} that exceeds "
            f"the model's context of {context_size} tokens. Shorten the prompt or lower maxTokens.",
            promptTokens=prompt_tokens,
            contextSize=context_size,
        )
