"""Only architectures with export rules are trained; others are refused before queueing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from convassist.core.training import DEFAULT_LEARNING_RATE, DEFAULT_TARGET_MODULES
from convassist.ml.training.architectures import (
    GEMMA_LEARNING_RATE,
    TRAINABLE,
    ArchitectureNotTrainable,
    config_overrides,
    export_rules,
    gguf_architecture,
    rules_for_model_type,
    trainable_label,
    trainable_names,
)
from convassist.ml.training.schemas import TrainingRequest
from convassist.ml.training.service import TrainingJobs
from tests.ml.conftest import ml_settings
from tests.ml.training.conftest import make_samples, sample_json
from tests.support.gguf_files import write_gguf
from tests.support.tiny_models import write_tiny_gguf


@dataclass
class Served:
    """A served model as training sees it (`supervise.ServedModel`)."""

    model_id: str
    base_version: str
    path: Path
    native: Any = None
    adapter_id: str | None = None


def test_the_header_gives_the_architecture(tmp_path: Path, default_model_path: Path) -> None:
    assert gguf_architecture(write_gguf(tmp_path / "q.gguf", "qwen2")) == "qwen2"
    assert gguf_architecture(default_model_path) == "llama"
    assert export_rules("llama").permute_qk and not export_rules("gemma3").permute_qk
    assert rules_for_model_type("mistral") is TRAINABLE["mistral"]
    assert rules_for_model_type("gemma3_text") is TRAINABLE["gemma3"]
    with pytest.raises(ValueError, match="loads as falcon"):
        rules_for_model_type("falcon")


def test_the_default_targets_map_onto_each_architectures_modules() -> None:
    assert TRAINABLE["gemma3"].target_modules(DEFAULT_TARGET_MODULES) == list(
        DEFAULT_TARGET_MODULES
    )
    phi3 = TRAINABLE["phi3"]
    assert phi3.target_modules(DEFAULT_TARGET_MODULES) == [
        "qkv_proj",
        "o_proj",
        "gate_up_proj",
        "down_proj",
    ]
    assert phi3.target_modules(["v_proj", "q_proj"]) == ["qkv_proj"]
    assert set(phi3.target_modules(DEFAULT_TARGET_MODULES)) == set(phi3.tensors)


def test_the_config_takes_what_transformers_gguf_loader_leaves_out(tmp_path: Path) -> None:
    gemma2 = write_tiny_gguf(tmp_path / "gemma2.gguf", "gemma2")
    assert config_overrides(gemma2) == {
        "query_pre_attn_scalar": 32,
        "final_logit_softcapping": 3.0,
        "attn_logit_softcapping": 4.0,
    }
    assert config_overrides(write_tiny_gguf(tmp_path / "q.gguf", "qwen3")) == {"head_dim": 32}
    assert config_overrides(write_tiny_gguf(tmp_path / "l.gguf", "llama")) == {}


def test_the_trainable_label() -> None:
    assert trainable_label("llama") == "yes"
    assert trainable_label("gemma3") == "yes"
    assert trainable_label("falcon") == "no (architecture falcon)"
    assert trainable_label(None) == "unknown until downloaded"


def test_a_rewritten_file_is_read_again(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", "llama")
    assert gguf_architecture(path) == "llama"
    write_gguf(tmp_path / "m.gguf", "phi3")
    assert gguf_architecture(path) == "phi3"


@pytest.mark.parametrize("architecture", ["falcon", "starcoder2"])
async def test_an_untrainable_model_is_refused_before_queueing(
    tmp_path: Path, architecture: str
) -> None:
    model = write_gguf(tmp_path / f"{architecture}.gguf", architecture)
    settings = ml_settings(tmp_path)

    async def activate(_adapter_id: str) -> None:
        raise AssertionError("nothing may complete")

    jobs = TrainingJobs(settings, Served(architecture, "v1", model), activate)
    request = TrainingRequest.model_validate(
        {"jobId": "job-1", "samples": sample_json(make_samples(2))}
    )
    try:
        with pytest.raises(ArchitectureNotTrainable) as refused:
            await jobs.submit(request)
        assert await jobs.get("job-1") is None
    finally:
        await jobs.close()
    error = refused.value
    assert error.status_code == 422
    body = error.to_body()
    assert body["error"] == "architecture_not_trainable"
    assert architecture in body["detail"] and trainable_names() in body["detail"]
    assert body["trainable"] == sorted(TRAINABLE) and "gemma3" in body["trainable"]
    assert not (settings.training_dir / "job-1").exists()


@pytest.mark.parametrize(
    ("architecture", "asked", "used"),
    [
        ("gemma3", None, GEMMA_LEARNING_RATE),
        ("gemma2", None, GEMMA_LEARNING_RATE),
        ("llama", None, DEFAULT_LEARNING_RATE),
        ("qwen3", None, DEFAULT_LEARNING_RATE),
        ("gemma3", 1e-3, 1e-3),
    ],
)
async def test_a_job_without_a_learning_rate_gets_its_architecture_s(
    tmp_path: Path, architecture: str, asked: float | None, used: float
) -> None:
    model = write_gguf(tmp_path / f"{architecture}.gguf", architecture)

    async def activate(_adapter_id: str) -> None:
        raise AssertionError("nothing is run")

    jobs = TrainingJobs(ml_settings(tmp_path), Served(architecture, "v1", model), activate)
    request = TrainingRequest.model_validate(
        {"jobId": "job-1", "learningRate": asked, "samples": sample_json(make_samples(2))}
    )
    try:
        queued = await jobs.submit(request)
        assert queued.learning_rate == used
        state = await jobs.get("job-1")
        assert state is not None and state.learning_rate == used
    finally:
        await jobs.close()
