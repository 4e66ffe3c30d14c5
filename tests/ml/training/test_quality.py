"""The held-out measures of suggestions, on hand-made replies, and the activation gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from convassist.ml.adapters.shared import RedisAdapterStore
from convassist.ml.adapters.store import AdapterStore, LocalAdapterStore
from convassist.ml.training.files import JobSpec
from convassist.ml.training.quality.assess import compare_adapter
from convassist.ml.training.quality.gate import BASE, Side, decide
from convassist.ml.training.quality.measures import (
    USABLE_CHRF,
    ModelResult,
    chrf,
    closer_share,
    same_text,
    score_reply,
    style,
)


def test_the_same_text_ignores_case_punctuation_and_spacing_only() -> None:
    assert same_text("Sounds good!", "sounds  good")
    assert same_text("OK, see you at 5.", "ok see you at 5")
    assert not same_text("sounds good to me", "sounds good")
    assert not same_text("", "sounds good")
    # A reply without letters or digits must be the very same.
    assert same_text("!!", "!!") and not same_text("?", "!!")


def test_a_suggestion_is_usable_when_it_matches_or_is_close_enough() -> None:
    real = "on my way, see you in ten minutes"
    close = "on my way, see you in 10 minutes"
    far = "no idea what you mean"
    assert chrf(close, real) >= USABLE_CHRF > chrf(far, real)
    assert score_reply([far, close], real).usable  # one of three is enough
    assert not score_reply([far], real).usable
    assert score_reply(["ON MY WAY see you in ten minutes!"], real).usable
    empty = score_reply([], real)
    assert not empty.usable and empty.chrf == 0.0
    # Best of the suggestions: the closest one's chrF.
    assert score_reply([far, close], real).chrf == pytest.approx(chrf(close, real))


def test_a_model_s_measures_count_replies_not_suggestions() -> None:
    reals = ["sure thing", "lol maybe", "no way dude", "ok"]
    suggestions = [
        ["Sure thing!", "nope"],  # same text once case and punctuation are ignored
        ["lol maybe", "maybe"],  # exact
        ["whatever"],  # not usable
        [],  # nothing suggested
    ]
    result = ModelResult.of(suggestions, reals)
    metrics = result.metrics()
    assert result.usable == [True, True, False, False]
    assert metrics["usableTop3"] == 0.5
    assert metrics["chrf"] == pytest.approx(sum(result.chrfs) / 4, abs=0.01)
    assert metrics["meanSuggestions"] == pytest.approx(1.25)
    # Style of the five suggestions: one capitalised, one ends with "!".
    assert metrics["meanWords"] == pytest.approx(7 / 5)
    assert metrics["lowercaseShare"] == 0.8 and metrics["endPunctuationShare"] == 0.2


def test_style_is_length_and_casing() -> None:
    owner = style(["ok", "Sounds good.", "lol 👍", "See you soon!"])
    assert owner["meanWords"] == 2.0
    assert owner["meanChars"] == pytest.approx((2 + 12 + 5 + 13) / 4, abs=0.1)
    assert owner["lowercaseShare"] == 0.5  # "ok" and "lol 👍" of the four with letters
    assert owner["endPunctuationShare"] == 0.5
    assert style(["👍"])["lowercaseShare"] == 0.0  # no letters: not counted
    assert style([]) == {}


def test_closer_share_counts_strict_wins() -> None:
    reals = ["sure thing", "lol maybe", "no way"]
    adapter = ModelResult.of([["sure thing"], ["lol"], ["nah"]], reals)
    base = ModelResult.of([["hello"], ["lol"], ["no way"]], reals)
    assert closer_share(adapter, base) == pytest.approx(1 / 3, abs=1e-3)  # a tie is no win
    assert closer_share(base, adapter) == pytest.approx(1 / 3, abs=1e-3)


def side(usable: list[bool], chrf: list[float] | None = None, ppl: float | None = 20.0) -> Side:
    return Side(perplexity=ppl, usable=usable, chrf=chrf or [30.0] * len(usable))


def test_the_gate_lets_an_adapter_no_worse_than_the_reference_through() -> None:
    old = side([True] * 4 + [False] * 36, ppl=24.0)
    new = side([True] * 5 + [False] * 35, ppl=21.0)
    gate = decide(new, old, "lora-aaaaaaaa")
    assert gate.activate and gate.compared_with == "lora-aaaaaaaa"
    assert gate.reason == (
        "Switched on: on 40 held-out replies its suggestions were usable 12% of the time "
        "against 10% for the active adapter, their chrF was 30.0 against 30.0 for the active "
        "adapter and its perplexity was 21.00 against 24.00 for the active adapter."
    )
    assert gate.metrics() == {
        "activate": True,
        "reason": gate.reason,
        "comparedWith": "lora-aaaaaaaa",
    }


def test_losing_within_noise_is_no_reason_to_hold_back() -> None:
    # One reply fewer usable (lost 2, won 1: 1 < 2 sqrt(3)); chrF 0.5 points lower.
    old = side([True, True, False] + [False] * 37, [30.0] * 40)
    new = side([False, False, True] + [False] * 37, [29.5] * 40)
    assert decide(new, old, BASE).activate
    # Three fewer, none more (3 < 2 sqrt(3)): two equal adapters split so one time in 8.
    assert decide(side([False] * 40), side([True] * 3 + [False] * 37), BASE).activate
    # Perplexity within 2 %.
    assert decide(side([False] * 40, ppl=20.3), side([False] * 40, ppl=20.0), BASE).activate


def test_fewer_usable_suggestions_hold_the_adapter_back() -> None:
    old = side([True] * 6 + [False] * 34)  # lost 5, won 0: 5 > 2 sqrt(5)
    new = side([True] * 1 + [False] * 39, ppl=15.0)  # even with a better perplexity
    gate = decide(new, old, "lora-aaaaaaaa")
    assert not gate.activate
    assert gate.reason == (
        "Not switched on: on 40 held-out replies its suggestions were usable 2% of the time "
        "against 15% for the active adapter."
    )


def test_lower_chrf_or_higher_perplexity_hold_the_adapter_back() -> None:
    flags = [False] * 20
    worse = decide(side(flags, [25.0 + i % 2 for i in range(20)]), side(flags), BASE)
    assert not worse.activate and worse.compared_with == BASE
    assert worse.reason.startswith("Not switched on: on 20 held-out replies their chrF was 25.5")
    assert worse.reason.endswith("against 30.0 for the base model.")
    # A mean drop within the noise of very different replies is not.
    noisy = [30.0 + (20 if i % 2 else -22) for i in range(20)]
    assert decide(side(flags, noisy), side(flags), BASE).activate
    higher = decide(side(flags, ppl=20.5), side(flags, ppl=20.0), BASE)
    assert not higher.activate
    assert "its perplexity was 20.50 against 20.00 for the base model" in higher.reason


def test_with_nothing_measured_the_adapter_is_switched_on_as_trained() -> None:
    gate = decide(side([], ppl=None), side([], ppl=None), BASE)
    assert gate.activate and gate.reason.startswith("Switched on as trained")
    # Perplexity alone still decides when no suggestion could be measured.
    only = decide(side([], ppl=30.0), side([], ppl=20.0), BASE)
    assert not only.activate and only.reason == (
        "Not switched on: on the held-out replies its perplexity was 30.00 against 20.00 for "
        "the base model."
    )


def spec_for(compare: str | None) -> JobSpec:
    return JobSpec(
        job_id="job-2",
        base_model="m",
        base_version="m@000000000001",
        model_path="/nonexistent.gguf",
        compare_adapter=compare,
    )


def store_adapter(store: AdapterStore, tmp_path: Path, job: str, base_version: str) -> str:
    source = tmp_path / f"{job}.gguf"
    source.write_bytes(b"GGUF" + bytes(60))
    return store.save(
        source, job_id=job, base_model="m", base_version=base_version, metrics={}, settings={}
    ).id


def test_the_adapter_compared_with_is_the_active_one_of_the_same_base(tmp_path: Path) -> None:
    store = LocalAdapterStore(tmp_path / "adapters")
    same = store_adapter(store, tmp_path, "aaaa0000", "m@000000000001")
    other = store_adapter(store, tmp_path, "bbbb0000", "m@000000000002")
    assert compare_adapter(store, spec_for(None)) is None
    assert compare_adapter(store, spec_for(same)) == (same, store.path(same))
    assert compare_adapter(store, spec_for(other)) is None  # trained on another base model
    assert compare_adapter(store, spec_for("lora-cccc0000")) is None  # not stored


@pytest.mark.redis
def test_a_worker_finds_the_adapter_compared_with_through_redis(
    tmp_path: Path, redis_url: str
) -> None:
    service = RedisAdapterStore(redis_url, tmp_path / "service" / "adapters")
    worker = RedisAdapterStore(redis_url, tmp_path / "worker" / "adapters")
    try:
        active = store_adapter(service, tmp_path, "aaaa0000", "m@000000000001")
        found = compare_adapter(worker, spec_for(active))
        assert found is not None and found[0] == active
        assert found[1].is_relative_to(tmp_path / "worker") and found[1].is_file()
        assert found[1].read_bytes() == service.path(active).read_bytes()
    finally:
        service.close()
        worker.close()
