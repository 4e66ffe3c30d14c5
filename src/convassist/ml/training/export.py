"""Write a peft LoRA as a llama.cpp GGUF LoRA adapter.

The format is what llama.cpp's `convert_lora_to_gguf.py` writes: `general.type=adapter`,
`adapter.type=lora`, `adapter.lora.alpha`, and for each adapted weight two float32 tensors,
`blk.N.<name>.weight.lora_a` (peft `lora_A`, r x in) and `….lora_b` (peft `lora_B`,
out x r). llama.cpp scales the product by alpha / r, as peft does.

Each architecture's rules (`architectures.TRAINABLE`) name the llama.cpp tensor of each
module (phi3's fused `qkv_proj` is `attn_qkv`, its fused `gate_up_proj` `ffn_up`: one LoRA
pair each, as llama.cpp applies it to the fused matrix). For llama-family models llama.cpp's
converter permutes the rows of q_proj and k_proj (its rope layout), and transformers undoes
that when it loads a GGUF, so the peft model works in the unpermuted layout: the `lora_b`
rows of q and k are permuted here the same way to match the served weights.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from convassist.ml.training.architectures import gguf_architecture, rules_for_model_type

_MODULE = re.compile(r"\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)$")


def permute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's `permute` of q/k rows: within each head, interleaved halves → blocks."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def lora_tensors(peft_model: Any) -> dict[str, np.ndarray]:
    """llama.cpp tensor name → float32 array, for every LoRA-adapted linear layer."""
    config = peft_model.get_base_model().config
    rules = rules_for_model_type(str(config.model_type))
    n_head = int(config.num_attention_heads)
    n_head_kv = int(getattr(config, "num_key_value_heads", None) or n_head)
    tensors: dict[str, np.ndarray] = {}
    for name, module in peft_model.named_modules():
        match = _MODULE.search(name)
        if match is None or not hasattr(module, "lora_A") or "default" not in module.lora_A:
            continue
        layer, proj = int(match.group(1)), match.group(2)
        if proj not in rules.tensors:
            raise ValueError(f"llama.cpp has no LoRA tensor name for {proj}")
        lora_a = module.lora_A["default"].weight.detach().float().cpu().numpy()
        lora_b = module.lora_B["default"].weight.detach().float().cpu().numpy()
        if rules.permute_qk and proj == "q_proj":
            lora_b = permute_rows(lora_b, n_head)
        elif rules.permute_qk and proj == "k_proj":
            lora_b = permute_rows(lora_b, n_head_kv)
        base = f"blk.{layer}.{rules.tensors[proj]}.weight"
        tensors[f"{base}.lora_a"] = np.ascontiguousarray(lora_a, dtype=np.float32)
        tensors[f"{base}.lora_b"] = np.ascontiguousarray(lora_b, dtype=np.float32)
    if not tensors:
        raise ValueError("the model has no LoRA layers to export")
    return tensors


def write_adapter(
    path: Path, tensors: dict[str, np.ndarray], *, alpha: float, architecture: str, name: str
) -> None:
    """Write the adapter file (atomically: a temporary file renamed into place)."""
    import gguf

    tmp = path.with_name(f".{path.name}.tmp")
    writer = gguf.GGUFWriter(str(tmp), architecture)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_name(name)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    for tensor_name, array in sorted(tensors.items(), key=lambda item: _order(item[0])):
        writer.add_tensor(tensor_name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)


def _order(name: str) -> tuple[int, str]:
    layer = re.match(r"blk\.(\d+)\.", name)
    return (int(layer.group(1)) if layer else -1, name)


def export_adapter(peft_model: Any, path: Path, *, model_path: Path, name: str) -> None:
    """Export the LoRA of `peft_model` (trained on `model_path`) to `path`."""
    alpha = float(peft_model.peft_config["default"].lora_alpha)
    write_adapter(
        path,
        lora_tensors(peft_model),
        alpha=alpha,
        architecture=gguf_architecture(model_path),
        name=name,
    )
