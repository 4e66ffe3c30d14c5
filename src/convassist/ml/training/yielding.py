"""Training yields to suggestions: a low CPU priority, and a pause between steps.

Two mechanisms, both machine-local (see docs/ARCHITECTURE.md, "Training yields to
suggestions"):

* The runner process lowers its own priority before it starts any thread
  (`lower_priority`): `idle` = Linux's SCHED_IDLE (it runs only on CPU time nothing else
  wants) and nice 19; `low` = SCHED_BATCH and nice 19; `normal` = unchanged.
* Every generation in flight on this machine (the ML service's `/generate` and async jobs,
  or a worker's) holds a mark: an empty file `<data dir>/ml/generating/<pid>-<n>`
  (`GenerationMarks.busy`). Before each optimizer step the trainer waits while a mark
  younger than `max_pause` seconds exists (`StepPause.wait`), for at most `max_pause`
  seconds in a row, and after a pause that hit that cap it runs one step before it pauses
  again: a mark left behind by a crashed process, or a generation that never ends, cannot
  stop training. The job's heartbeat comes from whoever holds the job, not from the
  runner, so a paused job is never taken for dead.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

TrainPriority = Literal["idle", "low", "normal"]
LOWEST_NICE = 19
POLL_SECONDS = 0.05


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


class StepPause:
    """The trainer side: wait between steps while a generation is in flight, capped."""

    def __init__(self, directory: Path | None, max_pause: float) -> None:
        self.directory = directory
        self.max_pause = max_pause
        self.paused_seconds = 0.0
        self.pauses = 0
        self._capped = False

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

    def wait(self) -> float:
        """Before a step: wait while `busy`, at most `max_pause` s; seconds waited."""
        if self._capped:  # the last pause hit the cap: this step runs regardless
            self._capped = False
            return 0.0
        if not self.busy():
            return 0.0
        started = time.monotonic()
        deadline = started + self.max_pause
        while self.busy() and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        self._capped = time.monotonic() >= deadline
        waited = time.monotonic() - started
        self.pauses += 1
        self.paused_seconds += waited
        return waited
