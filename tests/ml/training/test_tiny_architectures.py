"""Every trainable architecture: transformers+peft and llama.cpp with the exported adapter
compute the same logits, on a tiny float32 model of that architecture written as a GGUF.

Float32 weights on both sides (and a float32 KV cache in llama.cpp) leave only rounding, so
the comparison is tight: the base logits must agree (the GGUF loads as the same model), and so
must the adapted ones (the export maps every adapted module onto the tensor llama.cpp serves).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.nn import functional

from convassist.ml.backends.llama import LoraSwitch
from convassist.ml.models.native import load_llama
from convassist.ml.training.architectures import TRAINABLE
from convassist.ml.training.dataset import LlamaTokenizer, build_examples
from convassist.ml.training.export import export_adapter
from convassist.ml.training.trainer import TrainConfig, add_lora, load_model, token_nll, train
from tests.ml.training.conftest import make_samples
from tests.support.tiny_models import SLIDING_WINDOW, TINY, VOCAB, write_tiny_gguf

TOLERANCE = 1e-2
"""Logits (of magnitude up to about 4). Float32 rounding in two implementations leaves 3e-6
(llama); ggml's CPU GELU looks its values up in a float16 table, which leaves 3e-3 (gemma3)."""
GGML_TYPE_F32 = 0
IDS = [int(i) for i in np.random.default_rng(7).integers(3, VOCAB, size=5 * SLIDING_WINDOW)]


@dataclass
class Exported:
    model_path: Path
    adapter_path: Path
    peft_model: Any


@pytest.fixture(scope="module", params=sorted(TINY))
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """The tiny model of one architecture loaded from its GGUF, a LoRA with the default
    (llama-named) targets on every layer with random lora_B, exported."""
    architecture = request.param
    folder = tmp_path_factory.mktemp(architecture)
    model_path = write_tiny_gguf(folder / "model.gguf", architecture)
    peft_model = add_lora(load_model(model_path), TrainConfig(rank=4, layers=99)).eval()
    generator = torch.Generator().manual_seed(1)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.3, generator=generator)
    adapter_path = folder / "adapter.gguf"
    export_adapter(peft_model, adapter_path, model_path=model_path, name="lora-tiny")
    return Exported(model_path, adapter_path, peft_model)


def llama_logits(model_path: Path, adapter: Path | None) -> np.ndarray:
    llm = load_llama(
        model_path,
        n_ctx=64,
        logits_all=True,
        n_threads=2,
        type_k=GGML_TYPE_F32,
        type_v=GGML_TYPE_F32,
    )
    lora = LoraSwitch(llm)
    lora.set(adapter)
    llm.eval(IDS)
    logits = np.array(llm.scores[: len(IDS)])
    lora.set(None)
    llm.close()
    return logits


def peft_logits(peft_model: Any, *, adapter: bool) -> np.ndarray:
    with torch.no_grad():
        if adapter:
            return np.asarray(peft_model(input_ids=torch.tensor([IDS])).logits[0].numpy())
        with peft_model.disable_adapter():
            return np.asarray(peft_model(input_ids=torch.tensor([IDS])).logits[0].numpy())


def test_every_trainable_architecture_has_a_tiny_model() -> None:
    """Each set of rules is checked here (mistral GGUFs share llama's)."""
    assert {id(TRAINABLE[a]) for a in TINY} == {id(rules) for rules in TRAINABLE.values()}


def test_llama_cpp_with_the_adapter_computes_what_peft_computes(exported: Exported) -> None:
    peft_base = peft_logits(exported.peft_model, adapter=False)
    peft_tuned = peft_logits(exported.peft_model, adapter=True)
    llama_base = llama_logits(exported.model_path, None)
    llama_tuned = llama_logits(exported.model_path, exported.adapter_path)
    assert np.abs(peft_base - llama_base).max() < TOLERANCE  # the GGUF loads as one model
    assert np.abs(peft_tuned - peft_base).max() > 100 * TOLERANCE  # the adapter matters
    assert np.abs(peft_tuned - llama_tuned).max() < TOLERANCE


def test_the_training_loss_sees_the_models_own_logits(exported: Exported) -> None:
    """token_nll runs the output layer itself (on labelled positions only): it must do what
    the model's forward does after it (Gemma's final soft-capping)."""
    ids = torch.tensor([IDS])
    labels = ids.clone()
    labels[0, : SLIDING_WINDOW * 2] = -100
    causal_lm = exported.peft_model.get_base_model()
    with torch.no_grad():
        nll = token_nll(causal_lm, ids, labels)
        logits = causal_lm(input_ids=ids).logits[0, :-1]
    expected = functional.cross_entropy(logits, labels[0, 1:], reduction="none")
    torch.testing.assert_close(nll, expected[labels[0, 1:] != -100])


@pytest.mark.slow  # 3-11 s each here (the first backward pass sets up its kernels)
def test_training_on_it_lowers_the_loss(exported: Exported) -> None:
    """The whole trainer runs on each architecture (its own tokenizer: byte pieces)."""
    tokenizer = LlamaTokenizer(exported.model_path)
    examples = build_examples(make_samples(4), tokenizer, max_length=48)
    tokenizer.close()
    config = TrainConfig(epochs=3, learning_rate=5e-3, rank=4, batch_size=6, seed=1, threads=2)
    peft_model = add_lora(load_model(exported.model_path), config)
    result = train(peft_model, examples, config, pad_id=0)
    assert result.steps == 6 and result.losses[-1] < 0.9 * result.losses[0]
