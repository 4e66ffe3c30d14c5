"""Training yields to suggestions: the runner's low priority, and its pauses.

The pause mechanics on real mark files, a real child process and real time
(`GenerationMarks`, `RunnerPause`, `die_with_parent`); a real `/generate` leaving its mark;
and a real runner child: its scheduling policy and nice value from /proc, and a job held
stopped while generations run, not declared dead meanwhile, let through by the cap, going on
once they are over, and cancelled at once while stopped.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from convassist.ml.training.yielding import (
    RUN_AFTER_CAP,
    GenerationMarks,
    RunnerPause,
    lower_priority,
)
from tests.ml.conftest import PROMPT, AppFactory
from tests.ml.training.test_training_api import TINY, alive, job_body, runner_pid

SCHED_IDLE = 5
"""Linux's SCHED_IDLE, as /proc/<pid>/stat's policy field shows it."""


def thread_stats(pid: int) -> list[tuple[int, int]]:
    """(nice, policy) of every thread of `pid`, from /proc/<pid>/task/*/stat."""
    stats = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with_name_cut = (task / "stat").read_text().rsplit(")", 1)[1].split()
        # Fields after the name start at field 3 (state): nice is field 19, policy 41.
        stats.append((int(with_name_cut[19 - 3]), int(with_name_cut[41 - 3])))
    return stats


def proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(["sleep", "60"])
    yield child
    child.kill()
    child.wait()


def until_state(pid: int, states: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while proc_state(pid) not in states:
        assert time.monotonic() < deadline, proc_state(pid)
        time.sleep(0.01)


def test_the_runner_is_stopped_while_a_generation_runs_and_continued_after(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    marks = GenerationMarks(tmp_path / "generating")
    pause = RunnerPause(sleeper.pid, tmp_path / "generating", max_pause=30)
    pause.tick()
    assert not pause.stopped
    until_state(sleeper.pid, "S")
    with marks.busy():
        pause.tick()
        assert pause.stopped
        until_state(sleeper.pid, "T")
        pause.tick()
        assert pause.stopped
    pause.tick()
    assert not pause.stopped
    until_state(sleeper.pid, "S")
    assert pause.pauses == 1 and 0 < pause.paused_seconds < 5
    assert list((tmp_path / "generating").iterdir()) == []


def test_a_pause_is_capped_for_one_generation_and_for_a_stream_of_them(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    marks = GenerationMarks(tmp_path / "generating")
    pause = RunnerPause(sleeper.pid, tmp_path / "generating", max_pause=0.3)
    with marks.busy():  # a generation that never ends
        pause.tick()
        assert pause.stopped
        time.sleep(0.35)
        pause.tick()
        assert not pause.stopped  # capped
        until_state(sleeper.pid, "S")
        assert not pause.busy()  # a mark older than the cap no longer counts
        with marks.busy():  # the next generation of a stream
            pause.tick()
            assert not pause.stopped  # right after a capped pause it runs a while
            time.sleep(RUN_AFTER_CAP)
        with marks.busy():
            pause.tick()
            assert pause.stopped  # then the next generation pauses it again
    pause.release()
    until_state(sleeper.pid, "S")
    assert pause.pauses == 2


def test_a_stale_mark_never_pauses(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    """A mark left by a crashed process (older than the cap) is ignored."""
    directory = tmp_path / "generating"
    directory.mkdir()
    left = directory / "4242-0"
    left.touch()
    old = time.time() - 60
    os.utime(left, (old, old))
    for pause in (
        RunnerPause(sleeper.pid, directory, max_pause=30),
        RunnerPause(sleeper.pid, directory, max_pause=0),  # 0 = never pauses
        RunnerPause(sleeper.pid, None, max_pause=30),
    ):
        pause.tick()
        assert not pause.stopped
    left.touch()  # fresh: it counts (except with max_pause 0)
    assert [RunnerPause(sleeper.pid, directory, m).busy() for m in (30, 0)] == [True, False]


def test_following_the_marks_ends_with_the_runner_running(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    marks = GenerationMarks(tmp_path / "generating")
    pause = RunnerPause(sleeper.pid, tmp_path / "generating", max_pause=30)

    async def scenario() -> None:
        with marks.busy():
            task = asyncio.create_task(pause.run())
            await asyncio.to_thread(until_state, sleeper.pid, "T")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert not pause.stopped
            await asyncio.to_thread(until_state, sleeper.pid, "SR")

    asyncio.run(scenario())


def test_a_stopped_runner_dies_with_its_supervisor() -> None:
    """`die_with_parent`: a child stopped (as a pause stops it) still dies with its parent."""
    child = (
        "import os, signal\n"
        "from convassist.ml.training.runner import die_with_parent\n"
        "die_with_parent()\n"
        "print(os.getpid(), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGSTOP)\n"
    )
    parent = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', {child!r}], stdout=subprocess.PIPE)\n"
        "print(p.stdout.readline().decode().strip(), flush=True)\n"
        "time.sleep(0.5)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", parent], capture_output=True, text=True, timeout=60, check=True
    )
    pid = int(out.stdout.strip())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and proc_state(pid) != "Z":
        assert time.monotonic() < deadline, "the stopped child outlived its parent"
        time.sleep(0.05)


def test_lower_priority_in_a_child_sets_every_new_thread() -> None:
    code = (
        "import threading, time, os\n"
        "from convassist.ml.training.yielding import lower_priority\n"
        "print(lower_priority('low'), flush=True)\n"
        "threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n"
        "time.sleep(5)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "batch"
        for _ in range(50):
            if len(thread_stats(child.pid)) == 2:
                break
            time.sleep(0.05)
        assert thread_stats(child.pid) == [(19, 3), (19, 3)]  # SCHED_BATCH = 3
    finally:
        child.kill()
        child.wait()
    assert lower_priority("normal") == "normal"
    assert os.getpriority(os.PRIO_PROCESS, 0) == 0  # this process untouched


async def test_a_generation_holds_a_mark_while_the_model_works(
    make_client: AppFactory, tmp_path: Path
) -> None:
    directory = tmp_path / "data" / "ml" / "generating"
    async with make_client() as client:
        body = {"prompt": PROMPT, "n": 3, "maxTokens": 32, "temperature": 0.7}
        task = asyncio.create_task(client.post("/generate", json=body))
        seen: set[str] = set()
        while not task.done():
            seen.update(entry.name for entry in directory.iterdir())
            await asyncio.sleep(0.002)
        assert (await task).status_code == 200
    assert len(seen) == 1 and next(iter(seen)).startswith(f"{os.getpid()}-")
    assert list(directory.iterdir()) == []


async def test_a_real_runner_lowers_its_priority_before_its_threads_start(
    make_client: AppFactory, tmp_path: Path
) -> None:
    async with make_client(**TINY) as client:  # the default: idle
        body = job_body(epochs=20)
        await client.post("/training/jobs", json=body)
        pid = await runner_pid(tmp_path, body["jobId"])
        deadline = time.monotonic() + 60
        while os.sched_getscheduler(pid) != os.SCHED_IDLE or len(thread_stats(pid)) < 2:
            assert time.monotonic() < deadline, "the runner kept its priority"
            await asyncio.sleep(0.05)
        # The real runner child: every thread at SCHED_IDLE, nice 19.
        assert os.getpriority(os.PRIO_PROCESS, pid) == 19
        assert set(thread_stats(pid)) == {(19, SCHED_IDLE)}
        await client.post(f"/training/jobs/{body['jobId']}/cancel")


async def _generations(marks: GenerationMarks, stop: asyncio.Event) -> None:
    """Back-to-back generations (0.5 s each) on this machine until `stop` is set."""
    while not stop.is_set():
        with marks.busy():
            await asyncio.sleep(0.5)


async def _job(client: httpx.AsyncClient, job_id: str) -> tuple[str, int, float]:
    state = (await client.get(f"/training/jobs/{job_id}")).json()
    metrics = state["metrics"]
    return state["status"], int(metrics.get("step", 0)), float(metrics.get("pausedSeconds", 0))


async def test_a_real_job_pauses_while_generations_run_yet_is_neither_dead_nor_stopped(
    make_client: AppFactory, tmp_path: Path
) -> None:
    """At normal priority and one thread, so that only the pause holds it back on a busy
    machine; a heartbeat period (1 s) far shorter than the pauses (3 s)."""
    cap = 3.0
    settings = {
        **TINY,
        "train_threads": 1,
        "job_heartbeat": 1,
        "train_yield_seconds": cap,
        "train_priority": "normal",
    }
    async with make_client(**settings) as client:
        body = job_body(epochs=20)
        job_id = body["jobId"]
        assert (await client.post("/training/jobs", json=body)).status_code == 202
        deadline = time.monotonic() + 180
        while (await _job(client, job_id))[1] < 2:
            assert time.monotonic() < deadline, "the job did not step"
            await asyncio.sleep(0.1)

        stop = asyncio.Event()
        stream = asyncio.create_task(
            _generations(GenerationMarks(tmp_path / "data" / "ml" / "generating"), stop)
        )
        pid = await runner_pid(tmp_path, job_id)
        samples = [(time.monotonic(), *await _job(client, job_id))]
        states = {proc_state(pid)}
        # Generations that never stop: the runner is stopped (no step for the whole cap),
        # and the cap still lets steps through.
        while samples[-1][3] < cap - 0.5 or samples[-1][2] < samples[0][2] + 2:
            assert time.monotonic() < deadline + 120, samples
            await asyncio.sleep(0.1)
            samples.append((time.monotonic(), *await _job(client, job_id)))
            states.add(proc_state(pid))
        stop.set()
        await stream
        assert "T" in states and states - {"T"}  # stopped, and running in between
        assert {status for _, status, _, _ in samples} == {"training"}  # never taken for dead
        # Progress stood still for a whole pause (the supervisor counted it that long).
        changes = [0] + [i for i in range(1, len(samples)) if samples[i][2] != samples[i - 1][2]]
        held = [samples[j][0] - samples[i][0] for i, j in itertools.pairwise(changes)]
        assert held and max(held) >= cap - 0.5, samples

        # Generations over: it steps again, and pauses no more.
        for more in (1, 3):
            _, step, paused = await _job(client, job_id)
            while (await _job(client, job_id))[1] < step + more:
                assert time.monotonic() < deadline + 240, "the job did not resume"
                await asyncio.sleep(0.1)
        status, _, paused_after = await _job(client, job_id)
        assert status == "training" and paused_after == paused and proc_state(pid) != "T"
        state = (await client.get(f"/training/jobs/{job_id}")).json()
        assert state["metrics"]["priority"] == "normal"
        cancelled = await client.post(f"/training/jobs/{job_id}/cancel")
        assert cancelled.json()["status"] == "cancelled"


async def test_normal_priority_leaves_the_runner_as_it_was(
    make_client: AppFactory, tmp_path: Path
) -> None:
    async with make_client(**TINY, train_priority="normal", train_yield_seconds=0) as client:
        body = job_body(epochs=20)
        await client.post("/training/jobs", json=body)
        pid = await runner_pid(tmp_path, body["jobId"])
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER
        assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0)
        await client.post(f"/training/jobs/{body['jobId']}/cancel")


async def test_cancelling_a_paused_job_stops_its_runner_at_once(
    make_client: AppFactory, tmp_path: Path
) -> None:
    """SIGTERM reaches a stopped runner: it is continued first."""
    async with make_client(**TINY) as client:
        body = job_body(epochs=20)
        await client.post("/training/jobs", json=body)
        pid = await runner_pid(tmp_path, body["jobId"])
        with GenerationMarks(tmp_path / "data" / "ml" / "generating").busy():
            await asyncio.to_thread(until_state, pid, "T")
            started = time.monotonic()
            cancelled = await client.post(f"/training/jobs/{body['jobId']}/cancel")
            assert cancelled.json()["status"] == "cancelled"
            assert not alive(pid) and time.monotonic() - started < 4  # SIGTERM, not SIGKILL
