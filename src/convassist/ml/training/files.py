"""A training job's files, and the reports its runner process sends its supervisor.

Whoever runs the job (the service without Redis, else a worker) materialises it in its own
`<data dir>/ml/training/<job id>/`: `spec.json` (what to train, on this machine's model),
`samples.jsonl`, `pid` (the runner's process id) and `runner.log` (the runner's log lines:
ids, counts and timings, never sample text); and `job.json`, the job's record, without Redis.
The runner reports on its stdout, one JSON object a line (`RunnerReport`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from convassist.core.schemas import APIModel
from convassist.core.training import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BUDGET_MINUTES,
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_LEARNING_RATE,
    DEFAULT_LORA_RANK,
    DEFAULT_MAX_CONTEXT,
    DEFAULT_TARGET_MODULES,
)
from convassist.ml.training.device import TrainDeviceSetting
from convassist.ml.training.schemas import TrainingStatus
from convassist.ml.training.yielding import TrainPriority


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
    epochs: int | None = None
    """At most this many passes; None: `DEFAULT_EPOCHS` (one) when the budget allows."""
    budget_minutes: float = DEFAULT_BUDGET_MINUTES
    """The job's time, from the runner's start to its adapter stored (`budget.py`)."""
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
    priority: TrainPriority = "normal"
    device: TrainDeviceSetting = "auto"
    compare_adapter: str | None = None
    """The id of the adapter active when the job was queued (None: the base model was): the
    runner resolves it through the adapter store and measures the new adapter against it."""

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
    def pid(self) -> Path:
        return self.directory / "pid"

    @property
    def log(self) -> Path:
        return self.directory / "runner.log"

    @property
    def adapter(self) -> Path:
        return self.directory / "adapter.gguf"


class RunnerReport(APIModel):
    """One line of the runner's stdout: progress, or (with `status`) its end."""

    status: TrainingStatus | None = None
    progress: int = Field(0, ge=0, le=100)
    error: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    adapter_id: str | None = None
    output_path: str | None = None
