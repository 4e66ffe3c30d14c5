"""A real ML service (the default model) with LoRA adapters already stored, no training.

The adapters are written directly: one zero LoRA pair on layer 0's query projection, which
llama.cpp loads and applies (it changes nothing), in the service's adapter store with the
metrics a test gives, so a test can list, switch and roll back in seconds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gguf
import httpx
import numpy as np

from convassist.core.model_version import ModelVersion
from convassist.ml.adapters.store import LocalAdapterStore
from convassist.ml.models.manifest import load_manifest
from convassist.ml.training.architectures import gguf_architecture
from convassist.ml.training.export import write_adapter
from tests.support.services import ML_AUTH, ml_service

RANK = 4


def default_model_path() -> Path:
    return load_manifest().get("smollm2-135m-instruct").local_path(Path("/nonexistent"))


def zero_adapter(path: Path, model_path: Path) -> Path:
    """A LoRA adapter for `model_path` whose update is zero."""
    reader = gguf.GGUFReader(model_path)
    weight = next(t for t in reader.tensors if t.name == "blk.0.attn_q.weight")
    inputs, outputs = (int(n) for n in weight.shape[:2])  # ggml order: columns first
    tensors = {
        "blk.0.attn_q.weight.lora_a": np.zeros((RANK, inputs), dtype=np.float32),
        "blk.0.attn_q.weight.lora_b": np.zeros((outputs, RANK), dtype=np.float32),
    }
    architecture = gguf_architecture(model_path)
    write_adapter(path, tensors, alpha=RANK, architecture=architecture, name=path.stem)
    return path


@contextmanager
def ml_service_with_adapters(
    tmp_dir: Path, metrics: Sequence[dict[str, Any]]
) -> Iterator[tuple[str, list[str]]]:
    """The ML service's URL and the ids of one stored adapter per `metrics`, oldest first;
    none is active."""
    with ml_service(tmp_dir) as url:
        health = httpx.get(f"{url}/health", headers=ML_AUTH, timeout=30).json()
        base_version = health["model_version"]
        store = LocalAdapterStore(tmp_dir / "ml-data" / "adapters")
        ids = []
        for item in metrics:
            job_id = str(uuid.uuid4())
            source = zero_adapter(tmp_dir / f"{job_id}.gguf", default_model_path())
            info = store.save(
                source,
                job_id=job_id,
                base_model=ModelVersion.parse(base_version).model_id,
                base_version=base_version,
                metrics=item,
                settings={"loraRank": RANK},
            )
            ids.append(info.id)
        yield url, ids
