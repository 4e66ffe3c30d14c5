"""Running one training job's process: start it, mirror its progress, report its end.

Whoever starts the runner (`python -m convassist.ml.training.runner <job dir>`) copies its
`progress.json` into the job's state every second, with a heartbeat. A process that exits
without a final report fails the job ("the training process died"); cancelling makes the
supervisor stop the process: SIGTERM, SIGKILL after 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from convassist.core.logging import get_logger
from convassist.core.processes import exit_reason
from convassist.ml.training.files import FINISHED, JobFiles, read_json, utcnow
from convassist.ml.training.store import PUBLIC_FIELDS, StateStore

log = get_logger("convassist.ml.training")

RUNNER_MODULE = "convassist.ml.training.runner"
POLL_SECONDS = 1.0
KILL_GRACE_SECONDS = 5.0
MISSING = (
    "The job's files are missing: the worker and the ML service must share CONVASSIST_DATA_DIR."
)


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


async def supervise(
    job_id: str,
    files: JobFiles,
    store: StateStore,
    *,
    stopped: str,
    env: dict[str, str],
    beat: Callable[[], Awaitable[Any]] | None = None,
    started: Callable[[asyncio.subprocess.Process], None] | None = None,
) -> dict[str, Any] | None:
    """Run the job's process (with `env` added to its environment: `MLSettings.runner_env`)
    to its end, mirroring its progress into `store`.

    If this coroutine is cancelled (its owner stops), the process is stopped and the job
    fails with the message `stopped`.
    """
    if not files.spec.is_file():
        await store.update(job_id, {"status": "failed", "error": MISSING, "completedAt": utcnow()})
        return await store.get(job_id)
    if await store.update(job_id, {"status": "training", "heartbeatAt": utcnow()}) is None:
        return await store.get(job_id)  # cancelled while it waited
    files.progress.unlink(missing_ok=True)
    with files.log.open("ab") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            RUNNER_MODULE,
            str(files.directory),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            env={**os.environ, **env},
            start_new_session=True,
        )
    files.pid.write_text(str(process.pid))
    if started is not None:
        started(process)
    log.info("training_started", job_id=job_id, pid=process.pid)
    try:
        await _mirror(job_id, files, store, process, beat)
    except asyncio.CancelledError:  # our owner is shutting down: the job cannot go on
        await terminate(process)
        await store.update(job_id, {"status": "failed", "error": stopped, "completedAt": utcnow()})
        raise
    final = read_json(files.progress)
    if final is not None and final.get("status") in FINISHED:
        changes = {k: v for k, v in final.items() if k in PUBLIC_FIELDS and k != "jobId"}
    else:
        changes = {
            "status": "failed",
            "error": f"The training process died ({exit_reason(process.returncode)}).",
            "completedAt": utcnow(),
        }
    await store.update(job_id, changes)
    state = await store.get(job_id)
    log.info("training_finished", job_id=job_id, status=state and state.get("status"))
    return state


async def _mirror(
    job_id: str,
    files: JobFiles,
    store: StateStore,
    process: asyncio.subprocess.Process,
    beat: Callable[[], Awaitable[Any]] | None,
) -> None:
    """Copy progress into the store every second until the process ends (or is cancelled)."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), POLL_SECONDS)
        if process.returncode is not None:
            return
        progress = read_json(files.progress) or {}
        changes: dict[str, Any] = {
            k: progress[k] for k in ("progress", "metrics", "startedAt") if k in progress
        }
        if await store.update(job_id, {**changes, "heartbeatAt": utcnow()}) is None:
            await terminate(process)  # the job was cancelled
            return
        if beat is not None:
            await beat()


def pid_is_runner(pid: int, job_dir: Path) -> bool:
    """Whether `pid` is still this job's runner process (Linux: its command line)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return RUNNER_MODULE.encode() in cmdline and str(job_dir).encode() in cmdline
