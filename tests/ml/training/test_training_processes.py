"""Real processes: a job outlives neither its worker nor its service, on any instance.

A worker SIGKILLed mid-training: its runner exits by itself and another service instance
reads the job `failed` (the one staleness rule). Without Redis, a service SIGKILLed
mid-training: its runner exits by itself and the restarted service fails the job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from convassist.ml.runtime.inprocess import RESTARTED
from convassist.ml.runtime.saq import WORKER_LOST
from tests.conftest import TEST_REDIS_URL
from tests.ml.conftest import AppFactory, clean_redis
from tests.ml.training.test_training_api import TINY, alive, job_body, wait_for
from tests.support.services import ML_AUTH, ML_TOKEN, clean_env, free_port, running

HEARTBEAT = 2
TINY_ENV = {
    "ML_SERVICE_TRAIN_MAX_CONTEXT": "64",
    "ML_SERVICE_TRAIN_BATCH_SIZE": "4",
    "ML_SERVICE_TRAIN_THREADS": "2",
    "ML_SERVICE_JOB_HEARTBEAT": str(HEARTBEAT),
}


def runner_pid(data_dir: Path, job_id: str, timeout: float = 120) -> int:
    pid_file = data_dir / "ml" / "training" / job_id / "pid"
    deadline = time.monotonic() + timeout
    while not pid_file.exists():
        assert time.monotonic() < deadline, "the runner was not started"
        time.sleep(0.1)
    return int(pid_file.read_text())


def until(check: Callable[[], bool], timeout: float) -> float:
    """Seconds until `check()` held (fails after `timeout`)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.mark.redis
async def test_a_killed_workers_job_reads_failed_on_another_instance(
    make_client: AppFactory, tmp_path: Path
) -> None:
    name = f"ml-test-{uuid.uuid4().hex[:8]}"
    overrides: dict[str, Any] = {
        "redis_url": TEST_REDIS_URL,
        "queue_name": name,
        "training_queue_name": f"{name}-training",
        "job_heartbeat": HEARTBEAT,
        **TINY,
    }
    worker_data = tmp_path / "worker"
    env = clean_env(
        REDIS_URL=TEST_REDIS_URL,
        ML_SERVICE_QUEUE_NAME=name,
        ML_SERVICE_TRAINING_QUEUE_NAME=f"{name}-training",
        ML_SERVICE_CONTEXT_SIZE="512",
        ML_SERVICE_MODELS_DIR=str(tmp_path / "models"),
        CONVASSIST_DATA_DIR=str(worker_data),
        CONVASSIST_LOG_FORMAT="json",
        **TINY_ENV,
    )
    with (tmp_path / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "convassist", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        async with (
            make_client(**overrides, data_dir=tmp_path / "a") as first,
            make_client(**overrides, data_dir=tmp_path / "b") as second,
        ):
            body = job_body(epochs=20)
            assert (await first.post("/training/jobs", json=body)).status_code == 202
            await wait_for(second, body["jobId"], {"training"}, 180)
            pid = runner_pid(worker_data, body["jobId"])
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            until(lambda: not alive(pid), 10)  # the runner noticed by itself
            killed = time.monotonic()
            state = await wait_for(second, body["jobId"], {"failed", "completed"}, 30)
            assert state["status"] == "failed" and state["error"] == WORKER_LOST
            assert time.monotonic() - killed < HEARTBEAT + 10
            assert (await first.get(f"/training/jobs/{body['jobId']}")).json() == state
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        clean_redis(TEST_REDIS_URL, (f"saq:*{name}*", "conv-assistant:job*:training*"))


def test_a_restarted_service_fails_the_job_its_predecessor_left(tmp_path: Path) -> None:
    data = tmp_path / "ml-data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = clean_env(
        CONVASSIST_DATA_DIR=str(data),
        CONVASSIST_LOG_FORMAT="json",
        ML_SERVICE_MODELS_DIR=str(tmp_path / "models"),
        ML_SERVICE_TOKEN=ML_TOKEN,
        **TINY_ENV,
    )
    args = ["ml", "--port", str(port)]
    body = job_body(epochs=20)
    url = f"{base}/training/jobs/{body['jobId']}"
    with running(args, f"{base}/health", env, tmp_path / "ml-1.log") as service:
        created = httpx.post(f"{base}/training/jobs", json=body, headers=ML_AUTH, timeout=30)
        assert created.status_code == 202, created.text
        pid = runner_pid(data, body["jobId"])
        until(lambda: httpx.get(url, headers=ML_AUTH).json()["status"] == "training", 60)
        os.kill(service.pid, signal.SIGKILL)
        service.wait()
        until(lambda: not alive(pid), 10)  # the runner stopped by itself
    with running(args, f"{base}/health", env, tmp_path / "ml-2.log"):
        until(lambda: httpx.get(url, headers=ML_AUTH).json()["status"] == "failed", HEARTBEAT + 10)
        state = httpx.get(url, headers=ML_AUTH).json()
        assert state["error"] == RESTARTED and state["completedAt"] is not None
