from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from convassist.core.prompt import PROMPT_END
from convassist.core.schemas import APIModel, RequestModel
from convassist.core.training import (
    DEFAULT_BUDGET_MINUTES,
    DEFAULT_LORA_RANK,
    MAX_BUDGET_MINUTES,
    MIN_BUDGET_MINUTES,
)
from convassist.server.models import SampleSource, TrainingStatus

MAX_TEXT = 20_000


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


class SampleOut(APIModel):
    id: uuid.UUID
    input_context: str
    expected_output: str
    source: SampleSource
    quality: float
    response_id: uuid.UUID | None
    conversation_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class SamplePage(APIModel):
    items: list[SampleOut]
    next_cursor: str | None
    total: int


def _as_prompt(value: str) -> str:
    """A prompt ends with `Me:` (where the reply goes); added when left out, as the trainer
    skips prompts without it."""
    value = _not_blank(value).strip()
    return value if value.endswith(PROMPT_END) else f"{value}\n{PROMPT_END}"


class SampleCreate(RequestModel):
    """A manual sample: a conversation prompt (seed format, ending with `Me:`) and the reply."""

    input_context: str = Field(min_length=1, max_length=MAX_TEXT)
    expected_output: str = Field(min_length=1, max_length=MAX_TEXT)
    quality: float = Field(1.0, ge=0.0, le=1.0)
    conversation_id: uuid.UUID | None = None

    _check_context = field_validator("input_context")(_as_prompt)
    _check_output = field_validator("expected_output")(_not_blank)


class SampleUpdate(RequestModel):
    input_context: str | None = Field(None, min_length=1, max_length=MAX_TEXT)
    expected_output: str | None = Field(None, min_length=1, max_length=MAX_TEXT)
    quality: float | None = Field(None, ge=0.0, le=1.0)

    @field_validator("input_context")
    @classmethod
    def _prompt(cls, value: str | None) -> str | None:
        return None if value is None else _as_prompt(value)

    @field_validator("expected_output")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        return None if value is None else _not_blank(value)


class JobCreate(RequestModel):
    base_model: str | None = Field(
        None, max_length=200, description="Manifest id; default: the model being served."
    )
    budget_minutes: float = Field(
        DEFAULT_BUDGET_MINUTES,
        ge=MIN_BUDGET_MINUTES,
        le=MAX_BUDGET_MINUTES,
        description="Minutes the job may take; the trainer measures its speed and plans what "
        "fits (metrics.plan says what it chose and why).",
    )
    epochs: int | None = Field(
        None,
        ge=1,
        le=20,
        description="At most this many passes (fewer when the budget is short); null: one "
        "pass (a second one made the held-out perplexity worse).",
    )
    learning_rate: float | None = Field(
        None,
        gt=0,
        le=1e-2,
        description="Null: the model's own (0.002; 0.0003 for Gemma). The job's "
        "`learningRate` says which it used.",
    )
    lora_rank: int = Field(DEFAULT_LORA_RANK, ge=1, le=64)
    min_quality: float = Field(0.0, ge=0, le=1, description="Skip samples below this quality.")
    include_history: bool = Field(
        False, description="Also learn from your own past replies in synced conversations."
    )


class JobOut(APIModel):
    id: uuid.UUID
    base_model: str
    status: TrainingStatus
    progress: int
    budget_minutes: float | None = Field(description="Null for jobs from before budgets.")
    epochs: int | None = Field(description="As asked; null: the plan chose (metrics.epochs).")
    learning_rate: float
    lora_rank: int
    min_quality: float
    include_history: bool
    sample_count: int
    output_path: str | None
    adapter_id: str | None
    error: str | None
    metrics: dict[str, Any]
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime


class JobPage(APIModel):
    items: list[JobOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end.")
