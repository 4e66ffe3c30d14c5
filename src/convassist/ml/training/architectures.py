"""The model architectures training can handle, and how each one's adapter is exported.

A GGUF model declares its architecture (`general.architecture`); transformers loads it as a
model type (`config.model_type`). Only an architecture listed in `TRAINABLE` is trained: its
rules say which modules the LoRA adapts, what transformers' GGUF loader leaves out of the
config, and how the peft LoRA maps onto the tensors llama.cpp serves. Any other one is
refused when a job is requested, before it is queued (`architecture_not_trainable`).

What the rules need not say, because transformers' GGUF loader undoes it on load: the +1
llama.cpp's converter adds to Gemma's norm weights, and which q/k layout the file has (the
LoRA only sees the layout through `permute_qk`); biases (qwen2's q/k/v) and norms (qwen3's
q/k norms) are never adapted; tied embeddings are never adapted either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from convassist.core.errors import Unprocessable
from convassist.core.training import DEFAULT_LEARNING_RATE
from convassist.ml.training.gguf_header import read_scalars

LLAMA_TENSORS: Mapping[str, str] = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
"""Module name → llama.cpp tensor name, for the architectures with llama's module names."""


@dataclass(frozen=True)
class ExportRules:
    """How a LoRA is trained on one architecture and becomes a llama.cpp adapter."""

    model_types: tuple[str, ...]
    """transformers `config.model_type`s a GGUF of this architecture loads as."""
    permute_qk: bool = False
    """llama.cpp's converter permuted q/k rows (llama's rope layout): permute `lora_b` too."""
    tensors: Mapping[str, str] = field(default_factory=lambda: LLAMA_TENSORS)
    """This architecture's module name → its llama.cpp tensor name (`blk.N.<name>.weight`)."""
    modules: Mapping[str, str] = field(default_factory=dict)
    """Llama module name (the job's `target_modules`) → this architecture's module, where it
    differs (phi3's fused q/k/v and gate/up)."""
    config_keys: Mapping[str, str] = field(default_factory=dict)
    """GGUF key (after `<architecture>.`) → the transformers config attribute it sets, for
    what transformers' GGUF loader leaves at the config class's default."""
    learning_rate: float = DEFAULT_LEARNING_RATE
    """A job's learning rate when it asks for none (docs/ml-service.md, "Gemma 3 270M")."""

    def target_modules(self, names: Sequence[str]) -> list[str]:
        """The modules to adapt for a job's `target_modules` (llama names), in order, once."""
        return list(dict.fromkeys(self.modules.get(name, name) for name in names))


LLAMA_RULES = ExportRules(model_types=("llama", "mistral"), permute_qk=True)
GEMMA_LEARNING_RATE = 3e-4
"""Gemma 3 270M at the default 2e-3 learnt its training replies (perplexity -84 %) and got
worse on conversations it never saw (+20 %); at 3e-4 those improved (-12 %)."""
GEMMA_KEYS: Mapping[str, str] = {
    # llama.cpp scales queries by 1/sqrt(head size) (Gemma 27B excepted).
    "attention.key_length": "query_pre_attn_scalar",
    "final_logit_softcapping": "final_logit_softcapping",
}

TRAINABLE: dict[str, ExportRules] = {
    "llama": LLAMA_RULES,
    "mistral": LLAMA_RULES,
    "qwen2": ExportRules(model_types=("qwen2",)),
    "qwen3": ExportRules(model_types=("qwen3",), config_keys={"attention.key_length": "head_dim"}),
    "gemma2": ExportRules(
        model_types=("gemma2",),
        config_keys={**GEMMA_KEYS, "attn_logit_softcapping": "attn_logit_softcapping"},
        learning_rate=GEMMA_LEARNING_RATE,
    ),
    "gemma3": ExportRules(
        model_types=("gemma3_text",), config_keys=GEMMA_KEYS, learning_rate=GEMMA_LEARNING_RATE
    ),
    "phi3": ExportRules(
        model_types=("phi3",),
        tensors={
            "qkv_proj": "attn_qkv",
            "o_proj": "attn_output",
            "gate_up_proj": "ffn_up",
            "down_proj": "ffn_down",
        },
        modules={
            "q_proj": "qkv_proj",
            "k_proj": "qkv_proj",
            "v_proj": "qkv_proj",
            "gate_proj": "gate_up_proj",
            "up_proj": "gate_up_proj",
        },
    ),
}
"""GGUF `general.architecture` → its rules. Mistral GGUFs usually say `llama`."""


class ArchitectureNotTrainable(Unprocessable):
    """The served model's architecture has no export rules (`TRAINABLE`)."""

    code = "architecture_not_trainable"


def trainable_names() -> str:
    return ", ".join(sorted(TRAINABLE))


def trainable_label(architecture: str | None) -> str:
    """Whether a model of `architecture` can be trained, for people (`convassist models list`)."""
    if architecture is None:
        return "unknown until downloaded"
    return "yes" if architecture in TRAINABLE else f"no (architecture {architecture})"


@dataclass(frozen=True)
class Header:
    """What training reads from a GGUF's metadata."""

    architecture: str
    values: Mapping[str, Any]
    """The `<architecture>.*` scalars (numbers, strings), by key after the prefix."""


def gguf_architecture(model_path: Path) -> str:
    """`general.architecture` of a GGUF file, read from its header (weights stay on disk)."""
    return gguf_header(model_path).architecture


def gguf_header(model_path: Path) -> Header:
    """The file's `Header`, remembered per file version (`gguf_header.read_scalars`)."""
    stat = model_path.stat()
    return _header(str(model_path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _header(path: str, _size: int, _mtime_ns: int) -> Header:
    scalars = read_scalars(Path(path))
    architecture = scalars.get("general.architecture")
    if not isinstance(architecture, str):
        raise ValueError(f"{path} has no general.architecture")
    prefix = f"{architecture}."
    values = {
        name.removeprefix(prefix): value
        for name, value in scalars.items()
        if name.startswith(prefix)
    }
    return Header(architecture, values)


def export_rules(architecture: str) -> ExportRules:
    """The rules for `architecture`; ArchitectureNotTrainable (422) if there are none."""
    rules = TRAINABLE.get(architecture)
    if rules is None:
        raise ArchitectureNotTrainable(
            f"Models of architecture {architecture!r} cannot be trained yet; training "
            f"supports {trainable_names()}.",
            architecture=architecture,
            trainable=sorted(TRAINABLE),
        )
    return rules


def config_overrides(model_path: Path) -> dict[str, Any]:
    """The config attributes the rules' `config_keys` take from the GGUF's metadata (those
    the file has), for `from_pretrained`: so transformers computes what llama.cpp serves."""
    header = gguf_header(model_path)
    keys = export_rules(header.architecture).config_keys
    return {
        attribute: header.values[key] for key, attribute in keys.items() if key in header.values
    }


def rules_for_model_type(model_type: str) -> ExportRules:
    """The rules of a model transformers loaded (by its `config.model_type`)."""
    for rules in TRAINABLE.values():
        if model_type in rules.model_types:
            return rules
    raise ValueError(
        f"Training supports {trainable_names()} models; this one loads as {model_type}."
    )
