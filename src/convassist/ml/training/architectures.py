"""The model architectures training can handle, and how each one's adapter is exported.

A GGUF model declares its architecture (`general.architecture`); transformers loads it as a
model type (`config.model_type`). Only an architecture listed in `TRAINABLE` is trained: its
export rules say how a peft LoRA maps onto the tensors llama.cpp serves. Any other one is
refused when a job is requested, before it is queued (`architecture_not_trainable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from convassist.core.errors import Unprocessable


@dataclass(frozen=True)
class ExportRules:
    """How a LoRA trained on one architecture becomes a llama.cpp adapter."""

    model_types: tuple[str, ...]
    """transformers `config.model_type`s a GGUF of this architecture loads as."""
    permute_qk: bool
    """llama.cpp's converter permuted q/k rows (its rope layout): permute `lora_b` the same."""


LLAMA_RULES = ExportRules(model_types=("llama", "mistral"), permute_qk=True)

TRAINABLE: dict[str, ExportRules] = {
    "llama": LLAMA_RULES,
    "mistral": LLAMA_RULES,
}
"""GGUF `general.architecture` → its export rules. Mistral GGUFs usually say `llama`."""


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


def gguf_architecture(model_path: Path) -> str:
    """`general.architecture` of a GGUF file, read from its header (weights stay on disk);
    remembered per file version (the header of a 135M model takes over a second to parse)."""
    stat = model_path.stat()
    return _architecture(str(model_path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _architecture(path: str, _size: int, _mtime_ns: int) -> str:
    import gguf

    reader = gguf.GGUFReader(path)
    field = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    if field is None:
        raise ValueError(f"{path} has no general.architecture")
    return str(field.contents())


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


def rules_for_model_type(model_type: str) -> ExportRules:
    """The rules of a model transformers loaded (by its `config.model_type`)."""
    for rules in TRAINABLE.values():
        if model_type in rules.model_types:
            return rules
    raise ValueError(
        f"Training supports {trainable_names()} models; this one loads as {model_type}."
    )
