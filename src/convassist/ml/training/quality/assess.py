"""A training job's evaluation half: held-out perplexity, suggestions, and the gate.

After export the runner calls `assess`: it scores the held-out replies' perplexity under the
base model, the new adapter and the adapter that was active when the job was queued
(`JobSpec.compare_adapter`, resolved through the adapter store on the machine that runs the
job, when it was trained on the same base model), then for up to `QUALITY_REPLIES` of those
replies (a sample chosen with the job's seed) it has each of them suggest as the service
does and measures the suggestions against what the owner really sent (`measures`), and
decides whether the new adapter is switched on by itself (`gate`). It stops suggesting at
the `deadline` once `MIN_REPLIES` are measured. Job metrics: the perplexity keys
(`evaluate.Report.metrics`), `quality` and `gate`; numbers and sentences only, no text.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from convassist.core.logging import get_logger
from convassist.core.replies import frequent_replies, tally
from convassist.core.training import EVAL_MAX_CONTEXT
from convassist.ml.adapters.store import AdapterStore, ChecksumMismatch
from convassist.ml.models.native import named_config
from convassist.ml.training.dataset import Sample, split_by_conversation, usable
from convassist.ml.training.evaluate import EvalSettings, evaluate, held_out
from convassist.ml.training.files import JobSpec
from convassist.ml.training.quality.gate import BASE, Side, decide
from convassist.ml.training.quality.measures import ModelResult, closer_share, style
from convassist.ml.training.quality.suggest import Model, suggest

log = get_logger("convassist.ml.training.quality")

QUALITY_REPLIES = 40
"""The most held-out replies whose suggestions a job measures."""
MIN_REPLIES = 10
"""Measured even when the deadline has passed (all of them when fewer are held out). With
20, on 2 AVX2 cores, the minimum alone took 115 s of a 10-minute job's 180 s reserve and the
job ended 23 s late; the gate allows for the noise of fewer replies (`gate.py`)."""


def compare_adapter(store: AdapterStore, spec: JobSpec) -> tuple[str, Path] | None:
    """The adapter active when the job was queued (id, checked file on this machine), if it
    is stored and was trained on this base model."""
    if spec.compare_adapter is None:
        return None
    info = store.get(spec.compare_adapter)
    if info is None or info.base_version != spec.base_version:
        log.info("quality_compare_skipped", job_id=spec.job_id, adapter_id=spec.compare_adapter)
        return None
    try:
        return info.id, store.fetch(info)
    except ChecksumMismatch:
        return None


def assess(
    spec: JobSpec,
    samples: Sequence[Sample],
    adapter: tuple[str, Path],
    store: AdapterStore,
    deadline: float | None,
) -> dict[str, Any]:
    """The job metrics of the evaluation: perplexity keys, `quality` and `gate`."""
    model_path = Path(spec.model_path)
    llama = named_config(spec.llama_config, "the ML service's") if spec.llama_config else None
    active = compare_adapter(store, spec)
    settings = EvalSettings(spec.holdout_fraction, EVAL_MAX_CONTEXT, spec.threads, llama)
    report = evaluate(
        model_path,
        samples,
        settings,
        adapter[1],
        active[1] if active else None,
        deadline=deadline,
        seed=spec.seed,
    )

    heldout = held_out(samples, spec.holdout_fraction)
    trained = split_by_conversation(usable(samples), spec.holdout_fraction)[0]
    own = frequent_replies(tally((s.completion, s.conversation_id) for s in trained))
    chosen = random.Random(spec.seed).sample(heldout, min(len(heldout), QUALITY_REPLIES))
    models = [Model("base", None), Model("adapter", adapter)]
    models += [Model("active", active)] if active else []
    suggested = suggest(
        model_path,
        spec.base_version,
        chosen,
        models,
        config=llama,
        deadline=deadline,
        minimum=MIN_REPLIES,
        own_replies=own,
    )
    reals = [sample.completion.strip() for sample in suggested.samples]
    results = {name: ModelResult.of(lists, reals) for name, lists in suggested.suggestions.items()}
    quality: dict[str, Any] = {
        "replies": len(reals),
        "ownReplies": len(own),
        "seconds": round(suggested.seconds, 1),
        "owner": style(reals),
        **{name: result.metrics() for name, result in results.items()},
        "closerThanBase": closer_share(results["adapter"], results["base"]),
    }
    if active:
        quality["closerThanActive"] = closer_share(results["adapter"], results["active"])
    old, old_score = (
        (results["active"], report.active) if active else (results["base"], report.base)
    )
    new = results["adapter"]
    gate = decide(
        Side(report.adapter.perplexity if report.adapter else None, new.usable, new.chrfs),
        Side(old_score.perplexity if old_score else None, old.usable, old.chrfs),
        active[0] if active else BASE,
    )
    log.info(
        "quality_measured",
        job_id=spec.job_id,
        replies=len(reals),
        seconds=quality["seconds"],
        activate=gate.activate,
        compared_with=gate.compared_with,
    )
    return {**report.metrics(), "quality": quality, "gate": gate.metrics()}
