"""A training job's record on the job runtime, and the payload that travels with the job."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field

from convassist.ml.runtime.records import JobRecord
from convassist.ml.training.schemas import TrainingJobState, TrainingRequest, TrainingStatus


class TrainingRecord(JobRecord):
    """THE state of a training job (the runtime's record; `public()` is what the API shows)."""

    RUNNING: ClassVar[str] = "training"
    FINISHED: ClassVar[frozenset[str]] = frozenset({"completed", "failed", "cancelled"})

    status: TrainingStatus
    adapter_id: str | None = None
    output_path: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    base_model: str
    auto_activate: bool
    learning_rate: float | None = None

    def public(self) -> TrainingJobState:
        return TrainingJobState(
            job_id=self.job_id,
            status=self.status,
            progress=self.progress,
            error=self.error,
            adapter_id=self.adapter_id,
            output_path=self.output_path,
            metrics=self.metrics,
            learning_rate=self.learning_rate,
            created_at=self.created_at.isoformat(),
            started_at=self.started_at.isoformat() if self.started_at else None,
            completed_at=self.completed_at.isoformat() if self.completed_at else None,
        )


class TrainingPayload(BaseModel):
    """What travels with a job (in Redis, to whichever worker runs it): the request, samples
    included, the `model_version` of the base model it was accepted for, and the adapter
    served when it was queued (what its adapter is measured against)."""

    request: TrainingRequest
    base_version: str
    compare_adapter: str | None = None
