"""Tiny randomly initialised models of each trainable architecture, written as float32 GGUFs.

What llama.cpp's `convert_hf_to_gguf.py` would write for a transformers model of that
architecture (its metadata keys, tensor names, llama's q/k row permutation, Gemma's +1 on norm
weights), small enough to load in well under a second: 2 layers (Gemma 3: 6, so that one is a
global-attention layer), width 64, a 288-token SentencePiece vocabulary llama.cpp accepts
(byte tokens, so every text has a tokenization).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch

from convassist.ml.training.export import permute_rows

VOCAB = 288
CONTROL = ["<unk>", "<s>", "</s>"]
SLIDING_WINDOW = 4
"""Tokens; the tests' sequences are longer, so sliding-window layers really slide."""


@dataclass(frozen=True)
class Tiny:
    """One architecture's tiny model: its transformers config and the GGUF keys that say it."""

    config_class: str
    config: dict[str, Any]
    keys: dict[str, int | float] = field(default_factory=dict)
    """`<architecture>.<key>` values beyond the common ones (which every tiny model has)."""
    tied: bool = True


HEADS, KV_HEADS = 4, 2
COMMON = {
    "vocab_size": VOCAB,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": HEADS,
    "num_key_value_heads": KV_HEADS,
    "max_position_embeddings": 128,
    "rms_norm_eps": 1e-6,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
}
GEMMA = {"head_dim": 32, "query_pre_attn_scalar": 32, "sliding_window": SLIDING_WINDOW}

TINY: dict[str, Tiny] = {
    "llama": Tiny(
        "LlamaConfig",
        {"rope_theta": 50000.0, "tie_word_embeddings": False},
        {"rope.dimension_count": 16},
        tied=False,
    ),
    "qwen2": Tiny("Qwen2Config", {"rope_theta": 50000.0, "tie_word_embeddings": True}),
    "qwen3": Tiny(  # head_dim is not hidden_size / heads, as in Qwen3 0.6B
        "Qwen3Config",
        {"rope_theta": 50000.0, "head_dim": 32, "tie_word_embeddings": True},
        {"attention.key_length": 32, "attention.value_length": 32},
    ),
    "gemma2": Tiny(  # soft-capping values far from the config class's defaults (50, 30)
        "Gemma2Config",
        {
            **GEMMA,
            "rope_theta": 50000.0,
            "attn_logit_softcapping": 4.0,
            "final_logit_softcapping": 3.0,
        },
        {
            "attention.key_length": 32,
            "attention.value_length": 32,
            "attention.sliding_window": SLIDING_WINDOW,
            "attn_logit_softcapping": 4.0,
            "final_logit_softcapping": 3.0,
        },
    ),
    "gemma3": Tiny(  # layers 0-4 slide (rope base 10000), layer 5 is global (rope base 1e6)
        "Gemma3TextConfig",
        {**GEMMA, "num_hidden_layers": 6, "rope_theta": 1e6, "final_logit_softcapping": 3.0},
        {
            "attention.key_length": 32,
            "attention.value_length": 32,
            "attention.sliding_window": SLIDING_WINDOW,
            "final_logit_softcapping": 3.0,
        },
    ),
    "phi3": Tiny(
        "Phi3Config",
        {"rope_theta": 50000.0, "original_max_position_embeddings": 128},
        tied=False,
    ),
}


def tiny_model(architecture: str, seed: int = 0) -> Any:
    """A transformers model of `architecture` with random weights of a useful size (norm
    weights away from 1, biases non-zero: a mistake in either shows in the logits)."""
    import transformers

    spec = TINY[architecture]
    config = getattr(transformers, spec.config_class)(**{**COMMON, **spec.config})
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
        config, dtype=torch.float32
    )
    gemma = architecture.startswith("gemma")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:  # Gemma's norms scale by 1 + weight
                param.copy_(0.3 * torch.randn_like(param) + (0.0 if gemma else 1.0))
            elif param.dim() == 1:
                param.copy_(0.3 * torch.randn_like(param))
            elif "embed_tokens" in name:
                param.copy_(torch.randn_like(param))
            else:
                param.copy_(torch.randn_like(param) / param.shape[1] ** 0.5)
    return model.eval()


def write_tiny_gguf(path: Path, architecture: str, seed: int = 0) -> Path:
    """`tiny_model(architecture, seed)` as llama.cpp's converter would write it, in float32."""
    spec = TINY[architecture]
    model = tiny_model(architecture, seed)
    config = {**COMMON, **spec.config}
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny")  # llama.cpp edits the vocabularies of files named like phi3's
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(config["rope_theta"])
    writer.add_vocab_size(VOCAB)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for key, value in spec.keys.items():
        if isinstance(value, int):
            writer.add_uint32(f"{architecture}.{key}", value)
        else:
            writer.add_float32(f"{architecture}.{key}", value)
    _add_vocab(writer)
    arch = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == architecture)
    names = gguf.get_tensor_name_map(arch, config["num_hidden_layers"])
    for name, tensor in model.state_dict().items():
        if spec.tied and name == "lm_head.weight":
            continue
        stem, suffix = name.rsplit(".", 1)
        gguf_name = names.get_name(stem)
        if gguf_name is None:
            raise ValueError(f"no GGUF name for {name}")
        writer.add_tensor(f"{gguf_name}.{suffix}", _converted(architecture, name, tensor))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _converted(architecture: str, name: str, tensor: torch.Tensor) -> np.ndarray:
    weights = tensor.detach().numpy().astype(np.float32)
    if architecture == "llama" and name.endswith("q_proj.weight"):
        weights = permute_rows(weights, HEADS)
    elif architecture == "llama" and name.endswith("k_proj.weight"):
        weights = permute_rows(weights, KV_HEADS)
    elif architecture.startswith("gemma") and name.endswith("norm.weight"):
        weights = weights + 1
    return np.ascontiguousarray(weights)


def _add_vocab(writer: gguf.GGUFWriter) -> None:
    pieces = [f"<0x{b:02X}>" for b in range(256)]
    words = [f"\u2581w{i}" for i in range(VOCAB - len(CONTROL) - len(pieces))]
    types = gguf.TokenType
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(CONTROL + pieces + words)
    writer.add_token_scores([0.0] * len(CONTROL + pieces) + [-float(i) for i in range(len(words))])
    writer.add_token_types(
        [types.UNKNOWN, types.CONTROL, types.CONTROL]
        + [types.BYTE] * len(pieces)
        + [types.NORMAL] * len(words)
    )
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(False)
