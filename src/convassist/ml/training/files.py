"""A training job's files and the JSON records that pass between its processes.

A job lives in `<data dir>/ml/training/<job id>/`: `spec.json` (what to train, written by the
ML service), `samples.jsonl`, `progress.json` (written only by the runner process, atomically),
`pid` (the runner's process id, written by whoever started it) and `runner.log` (the runner's
log lines: ids, counts and timings, never sample text).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from convassist.core.training import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_LEARNING_RATE,
    DEFAULT_LORA_RANK,
    DEFAULT_MAX_CONTEXT,
    DEFAULT_TARGET_MODULES,
)
from convassist.ml.training.schemas import TrainingStatus

FINISHED: tuple[TrainingStatus, ...] = ("completed", "failed", "cancelled")


def utcnow() -> str:
    return datetime.now(UTC).isoformat()


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically: readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


@dataclass(frozen=True)
class JobSpec:
    """What the runner trains: the settings of `POST /training/jobs` and where things are."""

    job_id: str
    base_model: str
    base_version: str
    model_path: str
    epochs: int = DEFAULT_EPOCHS
    learning_rate: float = DEFAULT_LEARNING_RATE
    lora_rank: int = DEFAULT_LORA_RANK
    lora_alpha: float | None = None
    """None = twice the rank (`TrainConfig.lora_alpha`)."""
    seed: int = 0
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION
    max_length: int = DEFAULT_MAX_CONTEXT
    batch_size: int = DEFAULT_BATCH_SIZE
    threads: int | None = None
    lora_layers: int | None = None
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))
    llama_config: Literal["default", "safe"] | None = None
    """The service's llama.cpp configuration (`ml/models/native.py`); None: chosen for this CPU."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        return cls(**data)


@dataclass(frozen=True)
class JobFiles:
    directory: Path

    @property
    def spec(self) -> Path:
        return self.directory / "spec.json"

    @property
    def samples(self) -> Path:
        return self.directory / "samples.jsonl"

    @property
    def progress(self) -> Path:
        return self.directory / "progress.json"

    @property
    def pid(self) -> Path:
        return self.directory / "pid"

    @property
    def log(self) -> Path:
        return self.directory / "runner.log"

    @property
    def adapter(self) -> Path:
        return self.directory / "adapter.gguf"
