"""The exported GGUF adapter makes llama.cpp compute what the peft model computes.

llama.cpp runs the quantized weights (with 8-bit activations), so its logits differ from the
dequantized float32 model's by noise; what must agree is the *change* the adapter makes.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
import torch

from convassist.core.training import ATTENTION_MODULES, MLP_MODULES
from convassist.ml.backends.llama import LoraSwitch
from convassist.ml.models.native import load_llama
from convassist.ml.training.dataset import LlamaTokenizer
from convassist.ml.training.export import export_adapter, lora_tensors, write_adapter
from convassist.ml.training.trainer import TrainConfig, add_lora
from tests.ml.training.conftest import TrainedAdapter

ARGMAX_TOLERANCE = 1.0
"""Logits. llama.cpp's top token must be one peft scores within this of its own top token.
Quantization noise (Q4_1 weights, 8-bit activations) moves the top-5 logits by up to 0.50
here (mean-centred, default adapter), so it can swap two tokens closer than about twice that
(a build without AMX swapped 12.63 and 12.54), never a clear winner."""

MIN_CHANGE_CORRELATION = 0.97
"""Of the logit changes an adapter makes in peft and in llama.cpp. Quantization noise grows
with the change: the random every-projection adapter gives 0.979 on an AMD EPYC (AVX2 build)
and the trained one over 0.98; leaving out the q/k permutation gives under 0.9."""

PROMPTS = [
    "Them: are we still on for lunch tomorrow\nMe:",
    "Them: my laptop died in the middle of class\nMe: no way dude\nThem: for real?\nMe:",
    "Them: Hey, how's it going?\nMe: Pretty good\nThem: What are you building?\nMe:",
    "Alice: who is bringing the snacks\nBob: not me\nMe:",
]


def llama_logits(model_path: Path, ids: list[int], adapter: Path | None) -> np.ndarray:
    llm = load_llama(model_path, n_ctx=256, logits_all=True, n_threads=2)
    lora = LoraSwitch(llm)
    lora.set(adapter)
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)])
    lora.set(None)
    llm.close()
    return logits


def peft_logits(peft_model: Any, ids: list[int], *, adapter: bool) -> np.ndarray:
    with torch.no_grad():
        if adapter:
            return peft_model(input_ids=torch.tensor([ids])).logits[0].numpy()
        with peft_model.disable_adapter():
            return peft_model(input_ids=torch.tensor([ids])).logits[0].numpy()


def deltas(
    adapter: TrainedAdapter,
    tokenizer: LlamaTokenizer,
    model_path: Path,
    path: Path,
    prompts: list[str] = PROMPTS,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    out = []
    for prompt in prompts:
        ids = tokenizer.encode(prompt)
        peft_tuned = peft_logits(adapter.peft_model, ids, adapter=True)
        peft_base = peft_logits(adapter.peft_model, ids, adapter=False)
        llama_base = llama_logits(model_path, ids, None)
        llama_tuned = llama_logits(model_path, ids, path)
        out.append((peft_tuned, peft_base, llama_tuned, llama_base))
    return out


def top_agrees(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per position: `other`'s top token is one `reference` scores within ARGMAX_TOLERANCE
    of its top (the same prediction up to a near tie)."""
    picked = reference[np.arange(len(reference)), other.argmax(-1)]
    return np.asarray(picked >= reference.max(-1) - ARGMAX_TOLERANCE)


def test_top_agreement_forgives_near_ties_only() -> None:
    reference = np.zeros((2, 30000))
    reference[:, 335], reference[:, 21285] = 12.63, 12.54  # the near tie from the AMX machine
    swapped = reference.copy()
    swapped[:, 335], swapped[:, 21285] = 12.54, 12.63
    assert top_agrees(reference, swapped).all()
    reference[1, 335] = 15.0  # a clear winner (margin 2.46) swapped is a disagreement
    assert top_agrees(reference, swapped).tolist() == [True, False]


def test_llama_cpp_with_the_adapter_matches_peft(
    trained_adapter: TrainedAdapter, tokenizer: LlamaTokenizer, default_model_path: Path
) -> None:
    untuned_disagreements = 0
    for peft_tuned, peft_base, llama_tuned, llama_base in deltas(
        trained_adapter, tokenizer, default_model_path, trained_adapter.path
    ):
        peft_change = (peft_tuned - peft_base).ravel()
        llama_change = (llama_tuned - llama_base).ravel()
        assert peft_change.std() > 1.0  # the adapter really changes the model
        assert np.corrcoef(peft_change, llama_change)[0, 1] > MIN_CHANGE_CORRELATION
        # Every next-token prediction is peft's, up to near ties (quantization noise).
        assert top_agrees(peft_tuned, llama_tuned).all()
        untuned_disagreements += int((~top_agrees(peft_tuned, llama_base)).sum())
    # The check has teeth: llama.cpp without the adapter (an export that did nothing)
    # predicts other tokens (35 positions here).
    assert untuned_disagreements >= 5


def test_without_the_q_k_permutation_llama_cpp_disagrees(
    trained_adapter: TrainedAdapter,
    tokenizer: LlamaTokenizer,
    default_model_path: Path,
    tmp_path: Path,
) -> None:
    """The permutation is needed (this is what the export test would catch if it broke)."""
    tensors = lora_tensors(trained_adapter.peft_model)
    unpermuted = {}
    for name, module in trained_adapter.peft_model.named_modules():
        if name.endswith(".layers.20.self_attn.q_proj"):
            unpermuted["blk.20.attn_q.weight.lora_b"] = (
                module.lora_B["default"].weight.detach().numpy().copy()
            )
    q_only = {k: v for k, v in tensors.items() if k.startswith("blk.20.attn_q.")}
    right, wrong = tmp_path / "right.gguf", tmp_path / "wrong.gguf"
    alpha = trained_adapter.config.lora_alpha
    write_adapter(right, q_only, alpha=alpha, architecture="llama", name="q")
    write_adapter(wrong, {**q_only, **unpermuted}, alpha=alpha, architecture="llama", name="q")
    ids = tokenizer.encode(PROMPTS[2])
    base = llama_logits(default_model_path, ids, None)
    change_right = (llama_logits(default_model_path, ids, right) - base).ravel()
    change_wrong = (llama_logits(default_model_path, ids, wrong) - base).ravel()
    assert np.corrcoef(change_right, change_wrong)[0, 1] < 0.9


@pytest.fixture(scope="module")
def every_projection(
    torch_model: Any, default_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> TrainedAdapter:
    """LoRA on all seven projections of all 30 layers with random (large) lora_B: covers
    every tensor name."""
    config = TrainConfig(rank=4, target_modules=ATTENTION_MODULES + MLP_MODULES, layers=30)
    peft_model = add_lora(copy.deepcopy(torch_model), config)
    generator = torch.Generator().manual_seed(0)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.25, generator=generator)
    path = tmp_path_factory.mktemp("every") / "adapter.gguf"
    export_adapter(peft_model, path, model_path=default_model_path, name="lora-every")
    return TrainedAdapter(peft_model=peft_model, path=path, result=None, config=config)


def test_every_projection_maps_to_its_llama_cpp_tensor(
    every_projection: TrainedAdapter, tokenizer: LlamaTokenizer, default_model_path: Path
) -> None:
    reader = gguf.GGUFReader(str(every_projection.path))
    field = reader.get_field
    assert field("general.type").contents() == "adapter"  # type: ignore[union-attr]
    assert field("adapter.type").contents() == "lora"  # type: ignore[union-attr]
    assert field("general.architecture").contents() == "llama"  # type: ignore[union-attr]
    assert field("adapter.lora.alpha").contents() == pytest.approx(8.0)  # type: ignore[union-attr]
    shapes = {t.name: tuple(int(n) for n in reversed(t.shape)) for t in reader.tensors}
    assert len(shapes) == 30 * 7 * 2
    assert shapes["blk.0.attn_q.weight.lora_a"] == (4, 576)
    assert shapes["blk.0.attn_k.weight.lora_b"] == (192, 4)
    assert shapes["blk.29.ffn_down.weight.lora_a"] == (4, 1536)
    assert shapes["blk.29.ffn_up.weight.lora_b"] == (1536, 4)
    for peft_tuned, peft_base, llama_tuned, llama_base in deltas(
        every_projection, tokenizer, default_model_path, every_projection.path, PROMPTS[:2]
    ):
        peft_change = (peft_tuned - peft_base).ravel()
        llama_change = (llama_tuned - llama_base).ravel()
        assert peft_change.std() > 1.0
        assert np.corrcoef(peft_change, llama_change)[0, 1] > MIN_CHANGE_CORRELATION
