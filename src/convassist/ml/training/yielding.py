"""Training yields to suggestions: a low CPU priority, and pausing while one is generated.

Two mechanisms, both machine-local (see docs/ARCHITECTURE.md, "Training yields to
suggestions"):

* The runner process lowers its own priority before it starts any thread
  (`lower_priority`): `idle` = Linux's SCHED_IDLE (it runs only on CPU time nothing else
  wants) and nice 19; `low` = SCHED_BATCH and nice 19; `normal` = unchanged.
* Every generation in flight on this machine (the ML service's `/generate` and async jobs,
  or a worker's) holds a mark: an empty file `<data dir>/ml/generating/<pid>-<n>`
  (`GenerationMarks.busy`). The runner's supervisor keeps the runner stopped (SIGSTOP,
  then SIGCONT) while a mark younger than `max_pause` seconds exists, for at most
  `max_pause` seconds in a row, then lets it run `RUN_AFTER_CAP` seconds before the next
  pause (`RunnerPause`): a mark left behind by a crashed process, a generation that never
  ends, or a stream of them cannot stop training. The job's heartbeat comes from the
  supervisor, not from the runner, so a paused job is never taken for dead; and a runner
  dies with its supervisor even while stopped (`runner.die_with_parent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

TrainPriority = Literal["idle", "low", "normal"]
LOWEST_NICE = 19
POLL_SECONDS = 0.02
CAN_PAUSE = sys.platform == "linux"
"""Pauses only where a stopped runner still dies with its supervisor (`PR_SET_PDEATHSIG`)."""
RUN_AFTER_CAP = 1.0
"""Seconds the runner runs after a pause that lasted the whole cap, before the next one."""


def lower_priority(priority: TrainPriority) -> str:
    """Lower this process's CPU priority (call before starting threads: on Linux both are
    per thread, inherited by new ones); answers the scheduling policy now in force."""
    if priority == "normal":
        return "normal"
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, LOWEST_NICE)
    policy = "SCHED_IDLE" if priority == "idle" else "SCHED_BATCH"
    if hasattr(os, policy):  # Linux; elsewhere the nice value alone
        try:
            os.sched_setscheduler(0, getattr(os, policy), os.sched_param(0))
            return policy.removeprefix("SCHED_").lower()
        except OSError:
            pass
    return "nice"


class GenerationMarks:
    """The generation side: one mark file per generation in flight in `directory`."""

    def __init__(self, directory: Path | None) -> None:
        """`directory` None: generations leave no mark (training never pauses for them)."""
        self.directory = directory
        self._numbers = itertools.count()
        if directory is not None:
            with contextlib.suppress(OSError):
                directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Mark a generation in flight until the block ends (a failing disk never fails it)."""
        mark = None
        if self.directory is not None:
            mark = self.directory / f"{os.getpid()}-{next(self._numbers)}"
            try:
                mark.touch()
            except OSError:
                mark = None
        try:
            yield
        finally:
            if mark is not None:
                with contextlib.suppress(OSError):
                    mark.unlink()


class RunnerPause:
    """The supervisor side: keep the runner stopped (SIGSTOP) while a generation is in
    flight on this machine, at most `max_pause` seconds in a row; after a pause that hit
    the cap it runs at least `RUN_AFTER_CAP` seconds before the next one."""

    def __init__(self, pid: int, directory: Path | None, max_pause: float) -> None:
        self.pid = pid
        self.directory = directory
        self.max_pause = max_pause
        self.pauses = 0
        self.paused_seconds = 0.0
        self._stopped_at: float | None = None
        self._runs_until = 0.0

    @property
    def stopped(self) -> bool:
        return self._stopped_at is not None

    def busy(self) -> bool:
        """Whether a mark younger than `max_pause` exists (older ones are ignored)."""
        if self.directory is None or self.max_pause <= 0:
            return False
        oldest = time.time() - self.max_pause
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    with contextlib.suppress(OSError):
                        if entry.stat().st_mtime >= oldest:
                            return True
        except OSError:
            return False
        return False

    def tick(self) -> None:
        """Stop or continue the runner as the marks say (called every `POLL_SECONDS`)."""
        at = time.monotonic()
        if self._stopped_at is None:
            if at >= self._runs_until and self.busy() and self._signal(signal.SIGSTOP):
                self._stopped_at = at
                self.pauses += 1
            return
        capped = at - self._stopped_at >= self.max_pause
        if capped or not self.busy():
            self.release()
            if capped:
                self._runs_until = at + RUN_AFTER_CAP

    def release(self) -> None:
        """Let the runner go on (before it is told to stop, and when the job ends)."""
        if self._stopped_at is not None:
            self.paused_seconds += time.monotonic() - self._stopped_at
            self._stopped_at = None
            self._signal(signal.SIGCONT)

    def metrics(self) -> dict[str, float]:
        return {"pauses": self.pauses, "pausedSeconds": round(self.paused_seconds, 2)}

    def _signal(self, signum: int) -> bool:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            return False
        return True

    async def run(self) -> None:
        """Follow the marks until cancelled; the runner is left running."""
        try:
            while True:
                self.tick()
                await asyncio.sleep(POLL_SECONDS)
        finally:
            self.release()
