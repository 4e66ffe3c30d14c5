"""`convassist up` (what `make up` runs): the whole system on the embedded defaults."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.services import clean_env, free_port

pytestmark = pytest.mark.slow


def _wait(url: str, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)
    pytest.fail(f"{url} never became healthy")


def test_up_runs_server_and_ml_service_and_stops_cleanly(tmp_path: Path) -> None:
    server_port, ml_port = free_port(), free_port()
    env = clean_env(
        CONVASSIST_DATA_DIR=str(tmp_path / "data"),
        CONVASSIST_PORT=str(server_port),
        ML_SERVICE_PORT=str(ml_port),
        ML_SERVICE_URL=f"http://127.0.0.1:{ml_port}",
        ML_SERVICE_MODELS_DIR=str(tmp_path / "models"),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "convassist", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait(f"http://127.0.0.1:{server_port}/api/health", process)
        _wait(f"http://127.0.0.1:{ml_port}/health", process)
        health = httpx.get(f"http://127.0.0.1:{server_port}/api/health").json()
        assert health["database"] == "sqlite"
        ml = httpx.get(f"http://127.0.0.1:{ml_port}/health").json()
        assert ml["model_loaded"] is True
        assert ml["redis"] == "disabled"
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "server | " in output
    assert "ml     | " in output
    assert (tmp_path / "data" / "convassist.sqlite3").exists()
