"""The one staleness rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from convassist.ml.generation.queue import GenerationRecord
from convassist.ml.runtime.records import is_dead
from convassist.ml.training.record import TrainingRecord

AT = datetime(2026, 6, 1, 12, tzinfo=UTC)


def training(status: str, beat: datetime | None, every: float | None = 10) -> TrainingRecord:
    return TrainingRecord.model_validate(
        {
            "job_id": "j1",
            "status": status,
            "created_at": AT - timedelta(hours=1),
            "heartbeat_at": beat,
            "stale_after": every,
            "base_model": "m",
            "auto_activate": False,
        }
    )


def test_a_held_job_is_dead_once_silent_for_longer_than_the_limit() -> None:
    assert not is_dead(training("training", AT - timedelta(seconds=10)), AT)
    assert is_dead(training("training", AT - timedelta(seconds=10.5)), AT)
    assert is_dead(training("queued", AT - timedelta(seconds=11)), AT)  # held in process
    # By the holder's own period, whatever the reader's settings.
    assert not is_dead(training("training", AT - timedelta(seconds=50), every=60), AT)
    beat = AT - timedelta(seconds=3)
    for every, dead in ((2, True), (5, False)):
        generation = GenerationRecord(
            job_id="g1", status="running", created_at=AT, heartbeat_at=beat, stale_after=every
        )
        assert is_dead(generation, AT) is dead


def test_finished_jobs_and_jobs_waiting_in_redis_are_never_dead() -> None:
    long_ago = AT - timedelta(days=30)
    for status in ("completed", "failed", "cancelled"):
        assert not is_dead(training(status, long_ago), AT)
    assert not is_dead(training("queued", None, None), AT)  # no holder yet: waits for a worker
    assert training("cancelled", None).finished and not training("training", None).finished
    assert TrainingRecord.RUNNING == "training" and GenerationRecord.RUNNING == "running"
