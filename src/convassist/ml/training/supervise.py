"""Running one training job's process, on whichever machine took the job.

`train` is the training job's work on the job runtime (`ml/runtime`): it materialises the
job (spec and samples, from its payload) in this machine's job folder, starts the runner
(`python -m convassist.ml.training.runner <job dir>`), and writes what the runner reports on
its stdout (JSON lines, `files.RunnerReport`) into the job's record. The runner's last line
is the job's end; a process that exits without one fails the job ("the training process
died"). Cancelling (the runtime cancels this coroutine) stops the process: SIGTERM, SIGKILL
after 5 s. The runner also stops by itself when this process dies. Meanwhile the runner is
held stopped while a generation runs on this machine (`yielding.RunnerPause`); the pauses
are in the job's metrics (`pauses`, `pausedSeconds`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from convassist.core.logging import get_logger
from convassist.core.processes import exit_reason
from convassist.core.training import DEFAULT_LEARNING_RATE
from convassist.ml.models.native import NativeStatus
from convassist.ml.runtime.records import JobFailed
from convassist.ml.runtime.runtime import JobContext
from convassist.ml.settings import MLSettings
from convassist.ml.training.dataset import Sample, write_samples
from convassist.ml.training.files import JobFiles, JobSpec, RunnerReport, write_json
from convassist.ml.training.record import TrainingPayload, TrainingRecord
from convassist.ml.training.yielding import CAN_PAUSE, RunnerPause

log = get_logger("convassist.ml.training")

RUNNER_MODULE = "convassist.ml.training.runner"
KILL_GRACE_SECONDS = 5.0
REPORT_LINE_LIMIT = 1 << 20


class ServedModel(Protocol):
    """What training needs to know about the model this process serves."""

    model_id: str
    base_version: str
    path: Path
    native: NativeStatus
    adapter_id: str | None
    """The adapter it serves now (None: the base model)."""


async def terminate(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (the runner reports `cancelled` and exits), SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), KILL_GRACE_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def job_spec(
    job_id: str, payload: TrainingPayload, served: ServedModel, settings: MLSettings
) -> JobSpec:
    """The runner's spec: the job's settings on this machine's model, threads and limits."""
    request = payload.request
    return JobSpec(
        job_id=job_id,
        base_model=served.model_id,
        base_version=served.base_version,
        model_path=str(served.path),
        epochs=request.epochs,
        budget_minutes=request.budget_minutes,
        learning_rate=request.learning_rate or DEFAULT_LEARNING_RATE,  # set on submission
        lora_rank=request.lora_rank,
        lora_alpha=request.lora_alpha,
        seed=request.seed,
        holdout_fraction=request.holdout_fraction,
        max_length=settings.train_max_context,
        batch_size=settings.train_batch_size,
        threads=settings.train_threads,
        lora_layers=settings.train_lora_layers,
        llama_config=served.native.config.name,
        priority=settings.train_priority,
        device=settings.train_device,
        compare_adapter=payload.compare_adapter,
    )


def _materialise(files: JobFiles, spec: JobSpec, payload: TrainingPayload) -> None:
    files.directory.mkdir(parents=True, exist_ok=True)
    samples = [
        Sample(s.prompt, s.completion, s.quality, s.conversation_id)
        for s in payload.request.samples
    ]
    write_samples(files.samples, samples)
    write_json(files.spec, spec.to_json())


async def train(
    ctx: JobContext[TrainingRecord, TrainingPayload],
    settings: MLSettings,
    served: ServedModel | None,
) -> dict[str, Any]:
    """Run the job's process to its end; answers the record's final changes."""
    job_id, payload = ctx.record.job_id, ctx.payload
    if served is None or served.base_version != payload.base_version:
        serving = served.base_version if served is not None else "no GGUF model"
        raise JobFailed(
            f"This worker serves {serving}; the job was accepted for {payload.base_version}."
        )
    files = JobFiles(settings.training_dir / job_id)
    await asyncio.to_thread(
        _materialise, files, job_spec(job_id, payload, served, settings), payload
    )
    with files.log.open("ab") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            RUNNER_MODULE,
            str(files.directory),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log_file,
            env={**os.environ, **settings.runner_env()},
            start_new_session=True,
            limit=REPORT_LINE_LIMIT,
        )
    files.pid.write_text(str(process.pid))
    log.info("training_started", job_id=job_id, pid=process.pid)
    marks = settings.generation_marks_dir if CAN_PAUSE else None
    pause = RunnerPause(process.pid, marks, settings.train_yield_seconds)
    pausing = asyncio.create_task(pause.run())
    try:
        final = await _follow(ctx, process, pause)
    except BaseException:  # cancelled (or this process stops): the job cannot go on
        await _stop_pausing(pausing)
        await terminate(process)
        raise
    await _stop_pausing(pausing)
    await process.wait()
    log.info("training_process_ended", job_id=job_id, status=final and final.status)
    if final is None:
        raise JobFailed(f"The training process died ({exit_reason(process.returncode)}).")
    changes = final.model_dump(exclude={"status"})
    changes["metrics"] = {**final.metrics, **pause.metrics()}
    if final.status == "failed":
        await ctx.report(**{k: v for k, v in changes.items() if k != "error"})
        raise JobFailed(final.error or "Training failed.")
    return {**changes, "status": final.status}


async def _stop_pausing(pausing: asyncio.Task[None]) -> None:
    """Stop following the marks; the runner is running again when this returns."""
    pausing.cancel()
    await asyncio.gather(pausing, return_exceptions=True)


async def _follow(
    ctx: JobContext[TrainingRecord, TrainingPayload],
    process: asyncio.subprocess.Process,
    pause: RunnerPause,
) -> RunnerReport | None:
    """Write each progress report into the record; the final report, or None at EOF."""
    assert process.stdout is not None
    async for line in process.stdout:
        try:
            report = RunnerReport.model_validate_json(line)
        except ValidationError:
            log.warning("training_report_unreadable", job_id=ctx.record.job_id)
            continue
        if report.status is not None and report.status != "training":
            return report
        metrics = {**report.metrics, **pause.metrics()}
        if not await ctx.report(progress=report.progress, metrics=metrics):
            raise asyncio.CancelledError  # the job was cancelled meanwhile
    return None
