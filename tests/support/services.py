"""Real services started as subprocesses for end-to-end tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import OWNER_PASSWORD
from tests.support.cli import set_password

ML_TOKEN = "test-ml-service-token-0123456789"
"""The token of the ML services these helpers start (`ML_SERVICE_TOKEN`)."""
ML_AUTH = {"Authorization": f"Bearer {ML_TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**overrides: str) -> dict[str, str]:
    """The current environment without any Conversation Assistant settings, plus overrides."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DB_", "CONVASSIST_", "ML_SERVICE_"))
        and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(overrides)
    return env


def wait_healthy(url: str, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise RuntimeError(f"process exited ({process.returncode}): {output[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{url} did not become healthy in {timeout} s")


@contextmanager
def running(
    args: list[str], health_url: str, env: dict[str, str], log_path: Path | None = None
) -> Iterator[subprocess.Popen[str]]:
    """Run `python -m convassist <args>` until the block ends; stop it cleanly."""
    stdout = open(log_path, "w") if log_path else subprocess.PIPE  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "convassist", *args],
        env=env,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_healthy(health_url, process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log_path:
            stdout.close()  # type: ignore[union-attr]


@contextmanager
def ml_service(tmp_dir: Path, **env: str) -> Iterator[str]:
    """The real ML service with the default model and `ML_TOKEN`; yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environment = clean_env(
        CONVASSIST_DATA_DIR=str(tmp_dir / "ml-data"),
        CONVASSIST_LOG_FORMAT="json",
        ML_SERVICE_MODELS_DIR=str(tmp_dir / "models"),
        ML_SERVICE_TOKEN=ML_TOKEN,
    )
    environment.update(env)
    with running(["ml", "--port", str(port)], f"{base}/health", environment, tmp_dir / "ml.log"):
        yield base


@contextmanager
def server_with_ml(root: Path, **env: str) -> Iterator[str]:
    """The real server on SQLite (owner password `OWNER_PASSWORD`) with its own real ML
    service, both under `root`; `env` adds server settings. Yields the server's base URL."""
    with ml_service(root) as ml_url:
        port = free_port()
        environment = clean_env(
            CONVASSIST_DATA_DIR=str(root / "server"),
            CONVASSIST_LOG_FORMAT="json",
            ML_SERVICE_URL=ml_url,
            ML_SERVICE_TOKEN=ML_TOKEN,
            **env,
        )
        set_password(environment, OWNER_PASSWORD)
        base = f"http://127.0.0.1:{port}"
        with running(
            ["server", "--port", str(port)], f"{base}/api/health", environment, root / "s.log"
        ):
            yield base


def dry_run_sender(db_path: Path, sent_log: Path, *, outbox_wait: float) -> dict[str, str]:
    """`convassist agent run` settings: this chat.db, the dry-run sender writing `sent_log`,
    outbox long polls of `outbox_wait` s, syncs on chat.db changes (no periodic ones)."""
    return {
        "CONVASSIST_AGENT_DB_PATH": str(db_path),
        "CONVASSIST_AGENT_SENDER": "dry-run",
        "CONVASSIST_AGENT_SENT_LOG": str(sent_log),
        "CONVASSIST_AGENT_OUTBOX_WAIT": str(outbox_wait),
        "CONVASSIST_AGENT_POLL_INTERVAL": "300",
        "CONVASSIST_AGENT_DEBOUNCE": "0.3",
    }


def sent_lines(path: Path) -> list[dict[str, Any]]:
    """What the dry-run sender wrote: one JSON object a send."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    """Poll `check` until it returns something true, and return that; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
