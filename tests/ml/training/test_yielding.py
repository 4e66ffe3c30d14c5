"""Training yields to suggestions: the runner's low priority, and its pause between steps.

The pause mechanics on real mark files and real time (`StepPause`, `GenerationMarks`); a
real `/generate` leaving its mark; and a real runner child: its scheduling policy and nice
value from /proc, and a job that stops stepping while a generation's mark is held, is not
declared dead meanwhile, takes a step anyway when the mark outlives the cap, and goes on
once the mark is gone.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from pathlib import Path

import httpx

from convassist.ml.training.yielding import GenerationMarks, StepPause, lower_priority
from tests.ml.conftest import PROMPT, AppFactory
from tests.ml.training.test_training_api import TINY, job_body, runner_pid

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


def test_a_pause_is_capped_for_one_generation_and_for_a_stream_of_them(tmp_path: Path) -> None:
    marks = GenerationMarks(tmp_path / "generating")
    pause = StepPause(tmp_path / "generating", max_pause=0.4)
    assert pause.wait() == 0.0  # nothing in flight
    with marks.busy():
        assert pause.busy()
        assert 0.4 <= pause.wait() < 1.0  # capped
        assert not pause.busy()  # a generation older than the cap no longer counts
        with marks.busy():  # the next generation of a stream
            assert pause.wait() == 0.0  # right after a capped pause, a step runs regardless
            assert 0.3 <= pause.wait() < 1.0
    assert not pause.busy() and pause.wait() == 0.0
    assert pause.pauses == 2 and pause.paused_seconds >= 0.7
    assert list((tmp_path / "generating").iterdir()) == []


def test_a_pause_ends_when_the_generation_ends(tmp_path: Path) -> None:
    marks = GenerationMarks(tmp_path / "generating")
    pause = StepPause(tmp_path / "generating", max_pause=30)

    async def scenario() -> float:
        async def generation() -> None:
            with marks.busy():
                await asyncio.sleep(0.3)

        task = asyncio.create_task(generation())
        await asyncio.sleep(0.05)
        waited = await asyncio.to_thread(pause.wait)
        await task
        return waited

    assert 0.2 <= asyncio.run(scenario()) < 1.0


def test_a_stale_mark_never_pauses(tmp_path: Path) -> None:
    """A mark left by a crashed process (older than the cap) is ignored."""
    directory = tmp_path / "generating"
    directory.mkdir()
    left = directory / "4242-0"
    left.touch()
    old = time.time() - 60
    os.utime(left, (old, old))
    pause = StepPause(directory, max_pause=30)
    assert not pause.busy()
    assert pause.wait() == 0.0
    assert StepPause(directory, max_pause=0).wait() == 0.0  # 0 = never pauses
    assert StepPause(None, max_pause=30).wait() == 0.0


def test_lower_priority_in_a_child_sets_every_new_thread(tmp_path: Path) -> None:
    import subprocess
    import sys

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
        samples = [(time.monotonic(), *await _job(client, job_id))]
        # Generations that never stop: the job pauses (no step for the whole cap), and the
        # cap still lets steps through.
        while samples[-1][3] < cap - 0.5 or samples[-1][2] < samples[0][2] + 2:
            assert time.monotonic() < deadline + 120, samples
            await asyncio.sleep(0.1)
            samples.append((time.monotonic(), *await _job(client, job_id)))
        stop.set()
        await stream
        assert {status for _, status, _, _ in samples} == {"training"}  # never taken for dead
        # Progress stood still for a whole pause (the runner reported it paused that long).
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
        assert status == "training" and paused_after == paused
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
