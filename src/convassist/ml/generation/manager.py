"""The LLM manager: one backend, inference off the event loop, distinct candidates, confidence.

The manager runs backend calls on its own thread pool (one thread for llama: a llama context
is not thread-safe), so the event loop, and with it `/health`, stays responsive while a
generation runs. For `n > 1` it samples with seeds `seed, seed+1, …`, drops near-duplicates
and returns the candidates best-first.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path

from convassist.core.limits import SEED_SPACE
from convassist.core.replies import normalize
from convassist.ml.backends.base import (
    AdapterBackend,
    Backend,
    Completion,
    Sampling,
    best_first,
    check_fits,
)
from convassist.ml.generation.own import with_own_reply

SIMILARITY_THRESHOLD = 0.9
"""Two candidates whose normalised texts are at least this similar count as one."""
EXTRA_TEMPERATURE = 0.7
"""With temperature 0 only the first candidate is greedy; the others sample at this."""


@dataclass(frozen=True)
class GenerationParams:
    """A generation request's settings (the API's `/generate` body minus the prompt)."""

    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None
    n: int = 1
    own_replies: tuple[str, ...] = ()
    """The owner's stock replies; the likeliest may take the last candidate's place (`own`)."""

    @property
    def deterministic(self) -> bool:
        """Same prompt + params → same output: a fixed seed, or greedy with one candidate."""
        return self.seed is not None or (self.temperature == 0 and self.n == 1)


@dataclass(frozen=True)
class Candidate:
    text: str
    confidence: float | None


@dataclass(frozen=True)
class Generation:
    """The outcome of one request: candidates best-first, and what it cost."""

    candidates: list[Candidate]
    model_version: str
    prompt_tokens: int | None
    completion_tokens: int
    samples: int
    queue_seconds: float
    generation_seconds: float

    @property
    def tokens_per_second(self) -> float | None:
        if self.generation_seconds <= 0 or not self.completion_tokens:
            return None
        return self.completion_tokens / self.generation_seconds


def near_duplicate(a: str, b: str) -> bool:
    if a == b:
        return True
    return SequenceMatcher(None, a, b, autojunk=False).ratio() >= SIMILARITY_THRESHOLD


@dataclass(frozen=True)
class Drawn:
    candidates: list[Completion]
    """Distinct completions, best (most confident) first."""
    samples: int
    completion_tokens: int


def draw_candidates(backend: Backend, prompt: str, params: GenerationParams, seed: int) -> Drawn:
    """Up to `params.n` distinct completions: samples with seeds `seed, seed+1, …` (at most
    `2n+1` of them), near-duplicates dropped, sorted best-first, the likeliest of the
    owner's own replies in the last place (`own.with_own_reply`). Blocking."""
    attempts = 1 if params.n == 1 else 2 * params.n + 1
    kept: list[Completion] = []
    seen: list[str] = []
    first: Completion | None = None
    completion_tokens = 0
    samples = 0
    for i in range(attempts):
        temperature = params.temperature
        if i > 0 and temperature == 0:
            temperature = EXTRA_TEMPERATURE
        completion = backend.complete(
            prompt,
            Sampling(
                max_tokens=params.max_tokens,
                temperature=temperature,
                top_p=params.top_p,
                stop=params.stop,
                seed=(seed + i) % SEED_SPACE,
            ),
        )
        samples += 1
        completion_tokens += completion.completion_tokens
        first = first or completion
        key = normalize(completion.text)
        if not key or any(near_duplicate(key, other) for other in seen):
            continue
        seen.append(key)
        kept.append(completion)
        if len(kept) == params.n:
            break
    if not kept and first is not None:
        kept = [first]
    kept = with_own_reply(backend, prompt, params.own_replies, best_first(kept), params.n)
    return Drawn(kept, samples, completion_tokens)


class LLMManager:
    """Owns the backend and the inference threads."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._executor = ThreadPoolExecutor(
            max_workers=backend.max_concurrency, thread_name_prefix="inference"
        )
        self.in_flight = 0

    @property
    def model_version(self) -> str:
        return self.backend.model_version

    @property
    def adapter_backend(self) -> AdapterBackend | None:
        """The backend, where it can serve LoRA adapters (llama); else None."""
        return self.backend if isinstance(self.backend, AdapterBackend) else None

    async def set_adapter(self, adapter_id: str | None, path: Path | None) -> str:
        """Switch the adapter between requests (on the inference thread); the new model_version.

        The inference threads run whole requests, so no request sees both adapters.
        """
        backend = self.adapter_backend
        if backend is None:
            raise TypeError(f"the {self.backend.name} backend cannot serve adapters")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, backend.set_adapter, adapter_id, path)
        return self.model_version

    async def generate(self, prompt: str, params: GenerationParams) -> Generation:
        """Run a generation on the inference threads; the event loop stays free."""
        loop = asyncio.get_running_loop()
        self.in_flight += 1
        try:
            return await loop.run_in_executor(
                self._executor, self._generate, prompt, params, time.perf_counter()
            )
        finally:
            self.in_flight -= 1

    def _generate(self, prompt: str, params: GenerationParams, submitted: float) -> Generation:
        started = time.perf_counter()
        prompt_tokens = self.backend.count_tokens(prompt)
        context = self.backend.context_size
        if prompt_tokens is not None and context is not None:
            check_fits(prompt_tokens, params.max_tokens, context)
        base_seed = params.seed if params.seed is not None else secrets.randbelow(SEED_SPACE)
        drawn = draw_candidates(self.backend, prompt, params, base_seed)
        return Generation(
            candidates=[Candidate(c.text, c.confidence) for c in drawn.candidates],
            model_version=self.backend.model_version,
            prompt_tokens=prompt_tokens,
            completion_tokens=drawn.completion_tokens,
            samples=drawn.samples,
            queue_seconds=started - submitted,
            generation_seconds=time.perf_counter() - started,
        )

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.backend.close()
