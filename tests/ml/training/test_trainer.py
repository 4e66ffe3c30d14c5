"""The trainer: it learns (loss falls), weights by quality, reports progress, can be stopped."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from convassist.ml.training.dataset import LlamaTokenizer, build_examples
from convassist.ml.training.trainer import (
    Cancelled,
    Progress,
    TrainConfig,
    add_lora,
    collate,
    train,
    weighted_loss,
)
from tests.ml.training.conftest import TrainedAdapter, make_samples


def test_training_drives_the_loss_down(trained_adapter: TrainedAdapter) -> None:
    result = trained_adapter.result
    assert result is not None
    assert len(result.losses) == result.steps == 12  # 24 examples, batch 8, 4 epochs
    assert sum(result.losses[-2:]) < 0.5 * sum(result.losses[:2])
    assert result.tokens > 0 and result.tokens_per_second > 0


def test_quality_weights_each_samples_loss(torch_model: Any, tokenizer: LlamaTokenizer) -> None:
    examples = build_examples(make_samples(2, per_conversation=2), tokenizer, max_length=64)
    ids, labels, _ = collate(examples, pad_id=2)
    with torch.no_grad():
        full = weighted_loss(torch_model, ids, labels, torch.ones(len(examples)))
        half = weighted_loss(torch_model, ids, labels, torch.full((len(examples),), 0.5))
        none = weighted_loss(torch_model, ids, labels, torch.zeros(len(examples)))
    assert float(half) == pytest.approx(float(full) / 2, rel=1e-5)
    assert float(none) == 0.0


def test_progress_is_reported_and_a_stop_request_cancels(
    torch_model: Any, tokenizer: LlamaTokenizer
) -> None:
    config = TrainConfig(epochs=5, rank=2, batch_size=2, threads=2)
    model = add_lora(copy.deepcopy(torch_model), config)
    examples = build_examples(make_samples(2, per_conversation=2), tokenizer, max_length=48)
    seen: list[Progress] = []
    with pytest.raises(Cancelled):
        train(
            model,
            examples,
            config,
            pad_id=2,
            on_progress=seen.append,
            should_stop=lambda: len(seen) >= 2,
        )
    assert [p.step for p in seen] == [1, 2]
    assert all(p.total_steps == 10 and p.tokens_per_second > 0 for p in seen)


def test_lora_can_be_limited_to_the_top_layers(torch_model: Any) -> None:
    from convassist.ml.training.export import lora_tensors

    model = add_lora(copy.deepcopy(torch_model), TrainConfig(rank=2, layers=2))
    layers = {name.split(".")[1] for name in lora_tensors(model)}
    assert layers == {"28", "29"}


def test_by_default_the_lora_adapts_every_projection_of_the_top_half(torch_model: Any) -> None:
    from convassist.ml.training.export import lora_tensors

    model = add_lora(copy.deepcopy(torch_model), TrainConfig(rank=2))
    names = lora_tensors(model)
    assert {int(name.split(".")[1]) for name in names} == set(range(15, 30))
    kinds = {name.split(".")[2] for name in names}
    assert kinds == {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}
    everything = add_lora(copy.deepcopy(torch_model), TrainConfig(rank=2, layers=99))
    assert {name.split(".")[1] for name in lora_tensors(everything)} == {str(i) for i in range(30)}
