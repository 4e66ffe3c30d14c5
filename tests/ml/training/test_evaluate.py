"""The one held-out evaluation (the training job's and `convassist eval`'s)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from convassist.ml.training import evaluate as evaluation
from convassist.ml.training.dataset import split_by_conversation, usable
from convassist.ml.training.evaluate import EvalSettings, evaluate, held_out
from tests.ml.training.conftest import TrainedAdapter, make_samples
from tests.support.adapters import zero_adapter

SETTINGS = EvalSettings(holdout_fraction=0.2, max_length=64, threads=2)


def test_it_scores_the_jobs_held_out_conversations_under_base_and_adapter(
    trained_adapter: TrainedAdapter, default_model_path: Path
) -> None:
    samples = make_samples(10, seed=5)
    # The conversations a job with this fraction holds out (it never trains on them).
    held = held_out(samples, SETTINGS.holdout_fraction)
    assert held == split_by_conversation(usable(samples), SETTINGS.holdout_fraction)[1]
    report = evaluate(default_model_path, samples, SETTINGS, trained_adapter.path)
    assert report.conversations == 2 and report.base.examples == len(held) == 6
    assert report.adapter is not None
    assert report.adapter.tokens == report.base.tokens > 0
    assert report.adapter.nll is not None and report.base.nll is not None
    assert report.adapter.nll < report.base.nll  # the adapter learnt this voice
    metrics = report.metrics()
    assert set(metrics) == {
        "baseNll",
        "adapterNll",
        "basePerplexity",
        "adapterPerplexity",
        "heldOutTokens",
        "heldOutScored",
    }
    assert metrics["basePerplexity"] == pytest.approx(math.exp(metrics["baseNll"]), rel=1e-3)
    assert metrics["heldOutTokens"] == report.base.tokens
    alone = evaluate(default_model_path, samples, SETTINGS, None)
    assert alone.adapter is None
    assert alone.base.nll == pytest.approx(report.base.nll, rel=1e-6)


def test_nothing_held_out_is_reported_as_null_and_scores_nothing(tmp_path: Path) -> None:
    # One conversation: a job trains on it and holds nothing out. No model is loaded.
    samples = make_samples(1)
    assert held_out(samples, SETTINGS.holdout_fraction) == []
    report = evaluate(tmp_path / "no-model.gguf", samples, SETTINGS, tmp_path / "a.gguf")
    assert report.metrics() == {
        "baseNll": None,
        "adapterNll": None,
        "basePerplexity": None,
        "adapterPerplexity": None,
        "heldOutTokens": 0,
        "heldOutScored": 0,
    }
    assert len(held_out(samples, 1)) == 3  # `convassist eval --holdout-fraction 1`: all


def test_with_a_deadline_every_model_scores_the_same_shuffled_replies_and_stops_at_it(
    default_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = make_samples(10, seed=5)
    adapter = zero_adapter(tmp_path / "zero.gguf", default_model_path)
    everything = evaluate(default_model_path, samples, SETTINGS, adapter)
    assert everything.base.examples == 6
    monkeypatch.setattr(evaluation, "MIN_SCORED", 2)
    late = evaluate(default_model_path, samples, SETTINGS, adapter, deadline=time.monotonic())
    assert late.base.examples == 2 and late.metrics()["heldOutScored"] == 2
    assert late.adapter is not None and late.adapter.examples == 2
    # A zero update: the adapter scores exactly what the base model scores, reply by reply.
    assert late.adapter.tokens == late.base.tokens
    assert late.adapter.nll == pytest.approx(late.base.nll, rel=1e-6)
    roomy = evaluate(
        default_model_path, samples, SETTINGS, adapter, deadline=time.monotonic() + 600
    )
    assert roomy.base.examples == 6
    assert roomy.base.nll == pytest.approx(everything.base.nll, rel=1e-6)  # same set, shuffled
