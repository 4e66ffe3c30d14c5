"""The time budget's plan: what fits, in order of preference, from the measured speed."""

from __future__ import annotations

import pytest

from convassist.core.training import DEFAULT_EPOCHS
from convassist.ml.training.budget import (
    Situation,
    choose,
    contexts,
    newest_first,
    reserve_seconds,
)

# A first job's history: 1,500 replies of 71 to 130 tokens (cut to the context length).
REPLIES = 1500


def lengths(replies: int = REPLIES) -> dict[int, list[int]]:
    return {n: [min(n, 130 - i % 60) for i in range(replies)] for n in (128, 96, 64)}


def situation(tokens_per_second: float, **changes: object) -> Situation:
    values: dict[str, object] = {
        "budget_seconds": 600.0,
        "spent_seconds": 40.0,
        "tokens_per_second": tokens_per_second,
        "layers": 15,
        "total_layers": 30,
        "lengths": lengths(),
        "hardware": "cpu/bf16",
    }
    values.update(changes)
    return Situation(**values)  # type: ignore[arg-type]


def test_the_contexts_tried_are_the_full_one_then_shorter() -> None:
    assert contexts(128) == (128, 96, 64)
    assert contexts(64) == (64, 48, 32)
    assert contexts(16) == (16,)


def test_the_reserve_is_a_share_of_the_budget_with_a_floor() -> None:
    assert reserve_seconds(600) == 180
    assert reserve_seconds(60) == 20


def test_newest_first_takes_each_conversation_s_newest_samples_first() -> None:
    ids = ["a", "a", "a", "b", "b", None]
    order = newest_first(ids)
    assert sorted(order) == list(range(6))
    assert order[:3] == [2, 4, 5]  # the last of a, of b, and the loose one
    assert order[3:] == [1, 3, 0]


def test_fast_hardware_trains_every_sample_once_and_finishes_early() -> None:
    plan = choose(situation(3000))
    assert DEFAULT_EPOCHS == 1
    assert (plan.epochs, plan.max_length, plan.layers) == (1, 128, 15)
    assert plan.samples == REPLIES and plan.history_share == 1
    assert plan.estimated_seconds <= (600 - 40 - reserve_seconds(600)) / 3
    assert plan.reason.startswith("Measured 3,000 tokens/s on cpu/bf16: 1 pass over 1,500 replies")
    assert plan.metrics()["historyShare"] == 1 and plan.metrics()["epochs"] == 1


def test_the_owner_s_epochs_are_a_ceiling() -> None:
    assert choose(situation(3000, epochs=2)).epochs == 2
    assert choose(situation(3000, epochs=3)).epochs == 3
    assert choose(situation(30000, epochs=10)).epochs == 10  # above DEFAULT_EPOCHS when asked
    capped = choose(situation(600, epochs=10))  # 10 passes do not fit: as many as do
    assert 1 <= capped.epochs < 10 and capped.max_length == 128


def test_the_machine_of_the_defaults_does_one_full_pass() -> None:
    plan = choose(situation(450))
    assert (plan.epochs, plan.max_length, plan.layers, plan.samples) == (1, 128, 15, REPLIES)
    assert "leaving" in plan.reason and "for export and evaluation" in plan.reason


def test_slower_hardware_cuts_the_context_then_the_layers_then_the_history() -> None:
    shorter = choose(situation(420))
    assert (shorter.max_length, shorter.layers, shorter.samples) == (96, 15, REPLIES)
    assert "1 pass over 1,500 replies at 96 tokens (not 128) fit in" in shorter.reason
    fewer_layers = choose(situation(240))
    assert fewer_layers.max_length == 64 and 8 <= fewer_layers.layers < 15
    assert fewer_layers.samples == REPLIES
    less_history = choose(situation(100))
    assert (less_history.max_length, less_history.layers) == (64, 8)
    assert REPLIES // 4 <= less_history.samples < REPLIES
    assert less_history.history_share == pytest.approx(less_history.samples / REPLIES)
    assert f"1 pass over the newest {less_history.samples:,} of 1,500 at" in less_history.reason
    assert "the LoRA on the top 8 layers (not 15)" in less_history.reason
    # Each plan fits the time left, and the slower the machine, the less it does.
    for plan in (shorter, fewer_layers, less_history):
        assert plan.estimated_seconds <= 600 - 40 - reserve_seconds(600)


def test_a_job_that_cannot_fit_says_how_long_it_would_need() -> None:
    with pytest.raises(ValueError, match="cannot finish in 10 minutes") as failed:
        choose(situation(20))
    message = str(failed.value)
    assert "measured 20 tokens/s on cpu/bf16" in message
    assert "375 of the 1,500 replies at 64 tokens with the LoRA on 8 layers" in message
    needed = float(message.split("need about ")[1].split(" minutes")[0])
    assert needed > 10
    # With that many minutes, the same machine can do it.
    assert choose(situation(20, budget_seconds=needed * 60 + 6)).samples >= 375


def test_a_job_without_a_measured_speed_cannot_fit() -> None:
    with pytest.raises(ValueError, match="its speed could not even be measured"):
        choose(situation(0.0))


def test_time_already_spent_counts() -> None:
    assert choose(situation(450)).max_length == 128
    assert choose(situation(450, spent_seconds=200)).max_length < 128
    with pytest.raises(ValueError, match="cannot finish in 10 minutes"):
        choose(situation(450, spent_seconds=590))


def test_a_small_job_keeps_at_least_its_floor_of_samples() -> None:
    small = situation(1.0, lengths=lengths(10), budget_seconds=60.0, spent_seconds=10.0)
    with pytest.raises(ValueError, match="10 of the 10 replies"):
        choose(small)
