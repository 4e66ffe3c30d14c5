"""Suggestions for held-out prompts from the base model and adapters, as the service makes them.

One llama.cpp model (`backends.llama.LlamaBackend`, the service's sampler), the adapters
switched on it (`LoraSwitch`), the server's suggestion settings (`core.suggestions`: three
candidates, temperature 0.7, up to 64 tokens, stopped at the end of the line, the first line
kept) and the service's candidate loop (`generation.manager.draw_candidates`), with the same
seed for every model on the same reply. Replies are done in rounds of `ROUND` (each model in
turn, so every model has the same replies): once `minimum` replies are done, it starts no
round that would end past the `deadline` (a `time.monotonic()` value) if it took as long
as the last one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from convassist.core.model_version import ModelVersion
from convassist.core.prompt import REPLY_STOP, extract_reply
from convassist.core.suggestions import CANDIDATES, MAX_TOKENS, TEMPERATURE, TOP_P
from convassist.ml.backends.llama import LlamaBackend
from convassist.ml.generation.manager import GenerationParams, draw_candidates
from convassist.ml.models.manifest import ResolvedModel
from convassist.ml.models.native import LlamaLoadConfig, NativeStatus, choose_load_config
from convassist.ml.training.dataset import LlamaTokenizer, Sample

ROUND = 5
THREADS = 1
"""llama.cpp threads: a job runs beside the service, at a low priority; there, threads that
wait for each other at every token cost far more than a second one gains (7.8 tokens/s with
one thread, 0.5 with two, on 2 busy cores)."""
MAX_CONTEXT = 4096
"""The service's default context (`ML_SERVICE_CONTEXT_SIZE`): longer prompts are skipped."""
SUGGESTION = GenerationParams(
    max_tokens=MAX_TOKENS,
    temperature=TEMPERATURE,
    top_p=TOP_P,
    stop=REPLY_STOP,
    seed=None,
    n=CANDIDATES,
)


@dataclass(frozen=True)
class Model:
    """A model to suggest with: a name (`base`, `adapter`, `active`) and its adapter (id and
    file; None for the base model)."""

    name: str
    adapter: tuple[str, Path] | None


@dataclass(frozen=True)
class Suggested:
    samples: list[Sample]
    """The replies measured, in order."""
    suggestions: dict[str, list[list[str]]]
    """Per model name, each measured reply's suggestions (first lines, best first)."""
    seconds: float


def fitting(model_path: Path, samples: Sequence[Sample]) -> tuple[list[Sample], int]:
    """The samples whose prompt and a suggestion fit `MAX_CONTEXT`, and the context they need."""
    tokenizer = LlamaTokenizer(model_path)
    try:
        sizes = [len(tokenizer.prefix) + len(tokenizer.encode(s.prompt)) for s in samples]
    finally:
        tokenizer.close()
    kept = [(s, n) for s, n in zip(samples, sizes, strict=True) if n + MAX_TOKENS <= MAX_CONTEXT]
    return [s for s, _ in kept], max((n for _, n in kept), default=0) + MAX_TOKENS + 1


def suggest(
    model_path: Path,
    base_version: str,
    samples: Sequence[Sample],
    models: Sequence[Model],
    *,
    config: LlamaLoadConfig | None,
    deadline: float | None,
    minimum: int,
    own_replies: Sequence[str] = (),
) -> Suggested:
    """Each model's suggestions for the samples' prompts, in order, until the deadline, with
    the owner's stock replies offered as the server offers them (`core/replies.py`)."""
    params = replace(SUGGESTION, own_replies=tuple(own_replies))
    started = time.perf_counter()
    kept, context = fitting(model_path, samples)
    out: dict[str, list[list[str]]] = {model.name: [] for model in models}
    done: list[Sample] = []
    if not kept:
        return Suggested(done, out, 0.0)
    version = ModelVersion.parse(base_version)
    backend = LlamaBackend(
        ResolvedModel(version.model_id, model_path, None),
        sha256=version.digest or "0" * 12,
        context_size=context,
        threads=THREADS,
        native=NativeStatus(config or choose_load_config(), "not run"),
    )
    last_round = 0.0
    try:
        for start in range(0, len(kept), ROUND):
            late = deadline is not None and time.monotonic() + last_round > deadline
            if late and len(done) >= minimum:
                break  # another round like the last would end past the deadline
            round_started = time.monotonic()
            batch = kept[start : start + ROUND]
            for model in models:
                adapter_id, path = model.adapter or (None, None)
                backend.set_adapter(adapter_id, path)
                for index, sample in enumerate(batch, start):
                    drawn = draw_candidates(backend, sample.prompt, params, seed=index)
                    out[model.name].append([extract_reply(c.text) for c in drawn.candidates])
            done += batch
            last_round = time.monotonic() - round_started
    finally:
        backend.close()
    return Suggested(done, out, time.perf_counter() - started)
