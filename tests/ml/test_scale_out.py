"""Interchangeable instances (integration): ML services and a worker as real processes, each
with its own data dir, sharing one Redis and one token, behave as one service.

1. A training job submitted through service 1 is trained by the worker and activated once;
   both services (and the worker's generations) then answer with `<base>+<adapter>`, and an
   activation or deactivation on any instance reaches every instance within seconds.
2. A service started afterwards comes up serving the adapter.
3. The API server, given both services' URLs, keeps the owner's request working when the
   service handling it is killed mid-request.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_REDIS_URL
from tests.ml.conftest import PROMPT, clean_redis
from tests.ml.training.test_training_api import job_body
from tests.support.services import ML_AUTH, ML_TOKEN, clean_env, free_port, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(300)]

PROPAGATION_SECONDS = 6.0
"""An activation reaches every instance within this (a notification, else the 2 s poll)."""
OWNER_PASSWORD = "scale-out owner password"


@dataclass
class Cluster:
    """The processes of one shared deployment; each started process is stopped at the end."""

    root: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def _start(self, name: str, args: list[str], **env: str) -> subprocess.Popen[str]:
        environment = {**self.env, "CONVASSIST_DATA_DIR": str(self.root / name), **env}
        process = subprocess.Popen(
            [sys.executable, "-m", "convassist", *args],
            env=environment,
            stdout=self.log(name).open("w"),
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.processes[name] = process
        return process

    def start_ml(self, name: str) -> subprocess.Popen[str]:
        port = free_port()
        self.urls[name] = f"http://127.0.0.1:{port}"
        return self._start(name, ["ml", "--port", str(port)])

    def wait_ml(self, name: str) -> str:
        wait_healthy(f"{self.urls[name]}/health", self.processes[name])
        return self.urls[name]

    def start_worker(self, name: str) -> None:
        self._start(name, ["worker"])

    def wait_worker(self, name: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while "worker_started" not in self.log(name).read_text():
            assert self.processes[name].poll() is None, self.log(name).read_text()[-2000:]
            assert time.monotonic() < deadline, f"{name} did not start"
            time.sleep(0.2)

    def events(self, event: str) -> list[dict[str, Any]]:
        """The JSON log lines of every process with this event."""
        found = []
        for name in self.processes:
            for line in self.log(name).read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    record = json.loads(line)
                    if isinstance(record, dict) and record.get("event") == event:
                        found.append({**record, "process": name})
        return found

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def ml(method: str, url: str, **kwargs: Any) -> Any:
    resp = httpx.request(method, url, headers=ML_AUTH, timeout=60, **kwargs)
    assert resp.status_code in (200, 202), resp.text
    return resp.json()


def eventually(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `check()` holds (fails the test after `timeout`)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"not within {timeout} s: {what}"
        time.sleep(0.1)
    return time.monotonic() - started


def versions(cluster: Cluster, names: list[str]) -> set[str]:
    return {ml("GET", f"{cluster.urls[n]}/health")["model_version"] for n in names}


def worker_version(cluster: Cluster, via: str, seed: int) -> str:
    """The model_version of an async generation, which the worker runs."""
    base = cluster.urls[via]
    request = {"prompt": PROMPT, "maxTokens": 4, "seed": seed}
    job = ml("POST", f"{base}/generate/async", json=request)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = ml("GET", f"{base}/jobs/{job['jobId']}")
        if state["status"] in ("completed", "failed"):
            assert state["status"] == "completed", state
            return str(state["result"]["model_version"])
        time.sleep(0.1)
    raise AssertionError("the worker did not run the generation job")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Services 1 and 2 and a worker on the test Redis; the worker has trained one adapter."""
    root = tmp_path_factory.mktemp("scale-out")
    queue = f"ml-test-scale-{uuid.uuid4().hex[:8]}"
    patterns = ("conv-assistant:adapter*", "conv-assistant:job*", f"saq:*{queue}*")
    clean_redis(TEST_REDIS_URL, patterns)
    cluster = Cluster(
        root,
        clean_env(
            REDIS_URL=TEST_REDIS_URL,
            ML_SERVICE_TOKEN=ML_TOKEN,
            ML_SERVICE_MODELS_DIR=str(root / "models"),
            ML_SERVICE_QUEUE_NAME=queue,
            ML_SERVICE_TRAINING_QUEUE_NAME=f"{queue}-training",
            ML_SERVICE_JOB_HEARTBEAT="2",
            ML_SERVICE_CONTEXT_SIZE="1024",
            # One inference thread each: four llama.cpp processes share this machine's cores.
            ML_SERVICE_THREADS="1",
            ML_SERVICE_TRAIN_MAX_CONTEXT="64",
            ML_SERVICE_TRAIN_BATCH_SIZE="4",
            ML_SERVICE_TRAIN_THREADS="2",
            CONVASSIST_LOG_FORMAT="json",
        ),
    )
    try:
        for name in ("ml-1", "ml-2"):
            cluster.start_ml(name)
        cluster.start_worker("worker")
        for name in ("ml-1", "ml-2"):
            cluster.wait_ml(name)
        cluster.wait_worker("worker")
        yield cluster
    finally:
        cluster.stop()
        clean_redis(TEST_REDIS_URL, patterns)


@pytest.fixture(scope="module")
def adapter(cluster: Cluster) -> str:
    """The adapter of a job submitted through service 1 and trained by the worker."""
    one, two = cluster.urls["ml-1"], cluster.urls["ml-2"]
    body = job_body(autoActivate=True)
    ml("POST", f"{one}/training/jobs", json=body)
    deadline = time.monotonic() + 180
    while True:  # its progress is visible from the other service
        state = ml("GET", f"{two}/training/jobs/{body['jobId']}")
        if state["status"] in ("completed", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    assert state["status"] == "completed", state
    [trained] = cluster.events("training_started")
    assert trained["process"] == "worker"
    return str(state["adapterId"])


def test_a_job_trained_by_the_worker_is_served_by_every_instance(
    cluster: Cluster, adapter: str
) -> None:
    names = ["ml-1", "ml-2"]
    base = ml("GET", f"{cluster.urls['ml-1']}/adapters")["modelVersion"].split("+")[0]
    tuned = f"{base}+{adapter}"
    eventually(lambda: versions(cluster, names) == {tuned}, PROPAGATION_SECONDS, "activation")
    assert [e["process"] for e in cluster.events("adapter_activated")] == ["worker"]  # once
    for name in names:
        url = cluster.urls[name]
        generated = ml("POST", f"{url}/generate", json={"prompt": PROMPT, "maxTokens": 8})
        assert generated["model_version"] == tuned
        [listed] = ml("GET", f"{url}/adapters")["adapters"]
        assert listed["id"] == adapter and listed["active"] is True
        assert len(listed["sha256"]) == 64
        # Fetched from Redis into this service's own data dir, checked.
        assert Path(listed["path"]).is_relative_to(cluster.root / name)
        assert Path(listed["path"]).stat().st_size == listed["sizeBytes"]
    assert worker_version(cluster, "ml-2", seed=1) == tuned

    # Deactivating on one instance reaches the others (and the worker); so does activating.
    ml("POST", f"{cluster.urls['ml-2']}/adapters/deactivate")
    took = eventually(lambda: versions(cluster, names) == {base}, PROPAGATION_SECONDS, "off")
    assert worker_version(cluster, "ml-1", seed=2) == base
    ml("POST", f"{cluster.urls['ml-1']}/adapters/{adapter}/activate")
    took = max(took, eventually(lambda: versions(cluster, names) == {tuned}, 6, "on"))
    assert worker_version(cluster, "ml-2", seed=3) == tuned
    assert took < PROPAGATION_SECONDS


def test_a_service_started_later_serves_the_active_adapter(cluster: Cluster, adapter: str) -> None:
    cluster.start_ml("ml-3")
    url = cluster.wait_ml("ml-3")
    # Serving it from its first answer on: the adapter was fetched before it listened.
    assert ml("GET", f"{url}/health")["model_version"].endswith(f"+{adapter}")
    assert ml("GET", f"{url}/adapters")["active"] == adapter
    assert (cluster.root / "ml-3" / "adapters" / adapter / "adapter.gguf").is_file()


def _server(cluster: Cluster) -> str:
    """The API server on SQLite, with the owner's password, over services 1 and 2."""
    port = free_port()
    env = {
        **cluster.env,
        "CONVASSIST_DATA_DIR": str(cluster.root / "server"),
        "ML_SERVICE_URL": f"{cluster.urls['ml-1']},{cluster.urls['ml-2']}",
        "CONVASSIST_DEVICE_POLL_INTERVAL": "0",
    }
    env.pop("REDIS_URL")
    subprocess.run(
        [sys.executable, "-m", "convassist", "admin", "set-password", "--password-stdin"],
        input=OWNER_PASSWORD + "\n",
        text=True,
        env=env,
        check=True,
        capture_output=True,
    )
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "convassist", "server", "--port", str(port)],
        env=env,
        stdout=cluster.log("server").open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    cluster.processes["server"] = process
    wait_healthy(f"{url}/api/health", process)
    return url


def _message(client: httpx.Client) -> str:
    """Sign in, register a device, sync one chat; the id of its last (incoming) message."""
    token = client.post("/api/auth/login", json={"password": OWNER_PASSWORD}).json()["token"]
    owner = {"Authorization": f"Bearer {token}"}
    registered = client.post(
        "/api/devices/register",
        json={"name": "Mac", "hardwareId": "HW-scale", "platform": "macOS", "osVersion": "15.1"},
    ).json()
    client.post("/api/devices/approve", json={"code": registered["code"]}, headers=owner)
    verified = client.post(
        "/api/devices/verify",
        json={"deviceId": registered["deviceId"], "code": registered["code"]},
    ).json()
    start = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
    lines = [
        ("incoming", "hey are you coming to the game tonight?"),
        ("outgoing", "yes! what time does it start"),
        ("incoming", "7pm, want to grab food before?"),
    ]
    synced = client.post(
        "/api/sync/messages",
        headers={"Authorization": f"Bearer {verified['token']}"},
        json={
            "conversationId": "iMessage;-;+15551230000",
            "displayName": "Sam",
            "participants": ["+15551230000"],
            "messages": [
                {
                    "imessageGuid": f"guid-{i}",
                    "senderId": None if direction == "outgoing" else "+15551230000",
                    "direction": direction,
                    "text": text,
                    "sentAt": (start + timedelta(minutes=i)).isoformat(),
                }
                for i, (direction, text) in enumerate(lines)
            ],
        },
    )
    assert synced.status_code == 200, synced.text
    conversation = synced.json()["conversationId"]
    page = client.get(f"/api/conversations/{conversation}/messages", headers=owner).json()
    client.headers.update(owner)
    return str(page["items"][-1]["id"])


def test_a_service_killed_mid_request_does_not_fail_the_owners_request(
    cluster: Cluster, adapter: str
) -> None:
    with httpx.Client(base_url=_server(cluster), timeout=120) as client:
        message_id = _message(client)
        answers: list[httpx.Response] = []
        request = threading.Thread(
            target=lambda: answers.append(
                client.post(
                    "/api/responses/generate",
                    json={"messageId": message_id, "candidates": 2, "maxTokens": 48, "seed": 5},
                )
            )
        )
        request.start()
        busy: list[str] = []

        def serving() -> bool:
            for name in ("ml-1", "ml-2"):
                with contextlib.suppress(httpx.TransportError):
                    if ml("GET", f"{cluster.urls[name]}/health")["in_flight"] > 0:
                        busy.append(name)
                        return True
            return False

        eventually(serving, 30, "the generation reaching a service")
        os.kill(cluster.processes[busy[0]].pid, signal.SIGKILL)
        request.join(120)
        [answer] = answers
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "completed"
        assert answer.json()["modelVersion"].endswith(f"+{adapter}")
        assert cluster.processes[busy[0]].wait(5) == -signal.SIGKILL
