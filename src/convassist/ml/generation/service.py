"""One generation request end to end: cache lookup, inference, cache store, metrics.

Shared by `POST /generate`, in-process async jobs and the SAQ worker. Never logs the prompt
or the generated text: only sizes, timings and whether the cache answered. While the model
works, the generation holds a mark a training job on this machine pauses for
(`training.yielding`).
"""

from __future__ import annotations

import time

from convassist.core.logging import get_logger
from convassist.ml.generation.cache import ResponseCache, cache_key
from convassist.ml.generation.manager import Generation, GenerationParams, LLMManager
from convassist.ml.generation.schemas import (
    CandidateOut,
    GenerateRequest,
    GenerateResponse,
    Timings,
)
from convassist.ml.metrics import Metrics
from convassist.ml.training.yielding import GenerationMarks

log = get_logger("convassist.ml.generate")


class GenerationService:
    def __init__(
        self,
        manager: LLMManager,
        cache: ResponseCache,
        metrics: Metrics,
        marks: GenerationMarks,
    ) -> None:
        self.manager = manager
        self.cache = cache
        self.metrics = metrics
        self.marks = marks

    async def generate(self, request: GenerateRequest) -> GenerateResponse:
        started = time.perf_counter()
        params = generation_params(request)
        key = None
        version = self.manager.model_version
        if params.deterministic:
            key = cache_key(version, request.prompt, params)
            hit = await self.cache.get(key)
            if hit is not None:
                self.metrics.cache.labels("hit").inc()
                response = GenerateResponse.model_validate(
                    {**hit, "cached": True, "timings": Timings(total_ms=_ms(started))}
                )
                log.info("generated", cached=True, total_ms=response.timings.total_ms)
                return response
            self.metrics.cache.labels("miss").inc()
        else:
            self.metrics.cache.labels("bypass").inc()
        with self.marks.busy():
            generation = await self.manager.generate(request.prompt, params)
        self.metrics.observe_generation(generation)
        response = generate_response(generation, total_ms=_ms(started))
        if key is not None:
            if generation.model_version != version:
                # Keyed by the version that generated it: the adapter was switched while
                # this request waited for the inference thread.
                key = cache_key(generation.model_version, request.prompt, params)
            await self.cache.set(
                key,
                response.model_dump(
                    include={"response", "candidates", "confidence", "model_version"}, by_alias=True
                ),
            )
        log.info(
            "generated",
            cached=False,
            n=params.n,
            candidates=len(generation.candidates),
            samples=generation.samples,
            prompt_tokens=generation.prompt_tokens,
            completion_tokens=generation.completion_tokens,
            generation_ms=response.timings.generation_ms,
            total_ms=response.timings.total_ms,
        )
        return response


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def generation_params(request: GenerateRequest) -> GenerationParams:
    """The manager's parameters for a request (the wire contract knows nothing of them)."""
    return GenerationParams(
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=tuple(request.stop),
        seed=request.seed,
        n=request.n,
        own_replies=tuple(request.own_replies),
    )


def generate_response(generation: Generation, total_ms: float) -> GenerateResponse:
    """The response body for a finished generation (not from the cache)."""
    best = generation.candidates[0]
    return GenerateResponse(
        response=best.text,
        candidates=[
            CandidateOut(text=c.text, confidence=c.confidence) for c in generation.candidates
        ],
        confidence=best.confidence,
        model_version=generation.model_version,
        cached=False,
        timings=Timings(
            total_ms=total_ms,
            queue_ms=round(generation.queue_seconds * 1000, 2),
            generation_ms=round(generation.generation_seconds * 1000, 2),
            prompt_tokens=generation.prompt_tokens,
            completion_tokens=generation.completion_tokens,
            tokens_per_second=(
                round(generation.tokens_per_second, 1)
                if generation.tokens_per_second is not None
                else None
            ),
        ),
    )
