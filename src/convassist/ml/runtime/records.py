"""A job's record, the one thing that says what state the job is in, and when it is dead.

Every job kind (generation, training) has a pydantic record with its own status literal;
the runtime knows each kind's queued, running, completed and failed statuses through the
record's class variables. A record is only ever changed while it is not finished, so a
cancel and a final report have one winner.

Liveness: whoever holds a job (the service that runs it in process, or the worker that runs
it from Redis) records its own heartbeat period when it takes the job (`stale_after`, its
`ML_SERVICE_JOB_HEARTBEAT`) and writes `heartbeat_at` every third of it. `is_dead` is the
one rule that decides a job is dead, by the holder's own period (so instances configured
differently still agree); a job waiting in Redis for a worker has no holder yet and is
never dead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

BEATS_PER_PERIOD = 3
"""Heartbeats written per `ML_SERVICE_JOB_HEARTBEAT` period; silence for a period is death."""


def now() -> datetime:
    return datetime.now(UTC)


class JobFailed(Exception):
    """A job's failure, carrying only a message that is safe to store and show."""


class JobRecord(BaseModel):
    """What every job records; kinds add their status literal and results."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    QUEUED: ClassVar[str] = "queued"
    RUNNING: ClassVar[str] = "running"
    COMPLETED: ClassVar[str] = "completed"
    FAILED: ClassVar[str] = "failed"
    FINISHED: ClassVar[frozenset[str]] = frozenset({"completed", "failed"})

    job_id: str
    status: str
    progress: int = 0
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    heartbeat_at: datetime | None = None
    stale_after: float | None = None
    """Seconds of silence after which the holder is dead (its heartbeat period)."""

    @property
    def finished(self) -> bool:
        return self.status in self.FINISHED


def is_dead(record: JobRecord, at: datetime) -> bool:
    """The one staleness rule: a held, unfinished job silent for longer than its holder's
    heartbeat period."""
    if record.finished or record.heartbeat_at is None or record.stale_after is None:
        return False
    return (at - record.heartbeat_at).total_seconds() > record.stale_after
