"""Request and response bodies of `/training/jobs`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from convassist.core.limits import SEED_SPACE
from convassist.core.schemas import APIModel, RequestModel
from convassist.core.training import (
    DEFAULT_BUDGET_MINUTES,
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_LEARNING_RATE,
    DEFAULT_LORA_RANK,
    MAX_BUDGET_MINUTES,
    MIN_BUDGET_MINUTES,
)

TrainingStatus = Literal["queued", "training", "completed", "failed", "cancelled"]
MAX_TRAINING_SAMPLES = 50_000
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


class TrainingSampleIn(RequestModel):
    prompt: str = Field(
        min_length=1, description="Seed-format context ending with `Me:` (the server's)."
    )
    completion: str = Field(description="The reply, without a leading space.")
    quality: float = Field(1.0, ge=0, le=1, description="Loss weight of this sample.")
    conversation_id: str | None = Field(
        None, max_length=200, description="Held-out data is chosen by conversation."
    )


class TrainingRequest(RequestModel):
    """`POST /training/jobs`."""

    job_id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=JOB_ID_PATTERN,
        description="The caller's id for the job (the server's job id); generated if absent.",
    )
    base_model: str | None = Field(
        None, description="Manifest id of the model to train; must be the one being served."
    )
    budget_minutes: float = Field(
        DEFAULT_BUDGET_MINUTES,
        ge=MIN_BUDGET_MINUTES,
        le=MAX_BUDGET_MINUTES,
        description="The job's time: the trainer measures its speed and plans what fits.",
    )
    epochs: int | None = Field(
        None, ge=1, le=20, description="At most this many passes; null: one, when it fits."
    )
    learning_rate: float | None = Field(
        None,
        gt=0,
        le=1e-2,
        description=f"Default: the architecture's ({DEFAULT_LEARNING_RATE:g}; Gemma 3e-4).",
    )
    lora_rank: int = Field(DEFAULT_LORA_RANK, ge=1, le=64)
    lora_alpha: float | None = Field(None, gt=0, le=1024, description="Default: twice loraRank.")
    seed: int = Field(0, ge=0, lt=SEED_SPACE)
    holdout_fraction: float = Field(DEFAULT_HOLDOUT_FRACTION, ge=0, le=0.5)
    auto_activate: bool | None = Field(
        None, description="Serve the adapter when the job completes (default: the setting)."
    )
    samples: list[TrainingSampleIn] = Field(min_length=1, max_length=MAX_TRAINING_SAMPLES)


class TrainingJobState(APIModel):
    """A training job as `GET /training/jobs/{jobId}` reports it."""

    job_id: str
    status: TrainingStatus
    progress: int = Field(ge=0, le=100)
    error: str | None = None
    adapter_id: str | None = None
    output_path: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    learning_rate: float | None = Field(
        None, description="The job's learning rate (null for jobs from before it was recorded)."
    )
    created_at: str
    started_at: str | None = None
    completed_at: str | None = None
