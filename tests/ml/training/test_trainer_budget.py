"""The trainer under a budget: calibration on the first real steps, then the plan; a deadline."""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from convassist.ml.training.dataset import LlamaTokenizer, build_examples
from convassist.ml.training.trainer import (
    CALIBRATION_STEPS,
    CALIBRATION_WARMUP_STEPS,
    Calibration,
    Continuation,
    Progress,
    Schedule,
    TrainConfig,
    add_lora,
    train,
)
from tests.ml.training.conftest import make_samples


def _lora(model: Any, layer: int) -> dict[str, torch.Tensor]:
    return {
        name: param.detach().clone()
        for name, param in model.named_parameters()
        if f".layers.{layer}." in name and "lora_B" in name
    }


def test_the_first_steps_calibrate_and_the_plan_decides_the_rest(
    torch_model: Any, tokenizer: LlamaTokenizer
) -> None:
    config = TrainConfig(epochs=1, rank=2, batch_size=1, threads=2, layers=4, seed=3)
    model = add_lora(copy.deepcopy(torch_model), config)
    samples = make_samples(3, per_conversation=3)
    examples = build_examples(samples, tokenizer, max_length=32)
    shorter = build_examples(samples, tokenizer, max_length=16)  # the same samples, cut
    calibrations: list[Calibration] = []
    seen: list[Progress] = []
    before: dict[str, dict[str, torch.Tensor]] = {}

    def plan(calibration: Calibration) -> Continuation:
        calibrations.append(calibration)
        before["low"], before["top"] = _lora(model, 26), _lora(model, 29)
        return Continuation(shorter, epochs=1, layers=2)

    result = train(model, examples, config, pad_id=2, calibrate=plan, on_progress=seen.append)
    [calibration] = calibrations
    # Measured on the steps after the warm-up; those steps count as part of the first pass,
    # which then trains the 3 examples they did not see.
    calibrated = CALIBRATION_WARMUP_STEPS + CALIBRATION_STEPS
    assert calibration.steps == CALIBRATION_STEPS
    assert calibration.tokens > 0 and calibration.tokens_per_second > 0
    assert result.steps == calibrated + (9 - calibrated) == 9
    # The learning rate decays to zero at the plan's end: the last report shows that total.
    assert seen[-1].total_steps == result.steps == seen[-1].step
    # Below the plan's top 2 layers the LoRA stays as the calibration left it.
    assert all(torch.equal(before["low"][k], v) for k, v in _lora(model, 26).items())
    assert any(not torch.equal(before["top"][k], v) for k, v in _lora(model, 29).items())
    assert not result.stopped_early


def test_at_its_deadline_training_stops_cleanly_with_what_it_learnt(
    torch_model: Any, tokenizer: LlamaTokenizer
) -> None:
    config = TrainConfig(epochs=50, rank=2, batch_size=2, threads=2, layers=2)
    model = add_lora(copy.deepcopy(torch_model), config)
    examples = build_examples(make_samples(2, per_conversation=2), tokenizer, max_length=16)
    started = time.monotonic()
    result = train(model, examples, config, pad_id=2, deadline=started + 3.0)
    assert result.stopped_early and 0 < result.steps < 100
    # It stops before a step would end past the deadline (the mean step time, as measured).
    assert time.monotonic() - started < 3.0 + result.step_seconds + 1.0
    assert any(float(p.abs().sum()) > 0 for p in _lora(model, 29).values())


def test_a_late_start_still_calibrates_on_a_measured_step(
    torch_model: Any, tokenizer: LlamaTokenizer
) -> None:
    """Past its deadline already (the model loaded slowly): the plan still gets a speed, so
    it can say how long the job would need."""
    config = TrainConfig(epochs=1, rank=2, batch_size=1, threads=2, layers=2)
    model = add_lora(copy.deepcopy(torch_model), config)
    examples = build_examples(make_samples(3, per_conversation=3), tokenizer, max_length=16)
    calibrations: list[Calibration] = []

    def plan(calibration: Calibration) -> Continuation:
        calibrations.append(calibration)
        return Continuation(examples, epochs=1, layers=2)

    result = train(model, examples, config, pad_id=2, calibrate=plan, deadline=time.monotonic())
    [calibration] = calibrations
    assert calibration.steps == 1 and calibration.tokens_per_second > 0
    assert result.stopped_early and result.steps == CALIBRATION_WARMUP_STEPS + 1


def test_the_schedule_ends_at_the_total_it_is_given() -> None:
    lr = Schedule(100, 0.05)
    assert lr(0) == 0.2 and lr(4) == 1.0
    assert lr(50) < 1.0 and lr(100) == 0.0
    lr.total_steps = 20
    assert lr(19) > 0.0 and lr(20) == 0.0
