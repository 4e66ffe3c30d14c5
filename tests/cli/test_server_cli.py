"""The real `convassist` commands, as a person runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.services import clean_env, free_port

CONVASSIST = [sys.executable, "-m", "convassist"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return clean_env(CONVASSIST_DATA_DIR=str(tmp_path / "data"), CONVASSIST_LOG_FORMAT="json")


def run(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CONVASSIST, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def server(env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    process = subprocess.Popen(
        [*CONVASSIST, "server", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(f"server did not start: {process.communicate()[0]}")
    yield base, process
    process.terminate()
    process.wait(timeout=15)


def test_version() -> None:
    result = subprocess.run([*CONVASSIST, "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.startswith("convassist ")


def test_db_upgrade_creates_the_embedded_sqlite_database(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = run(env, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "convassist.sqlite3").exists()
    current = run(env, "db", "current")
    assert "up to date" in current.stderr


def test_set_password_rejects_a_short_password(env: dict[str, str]) -> None:
    result = run(env, "admin", "set-password", "--password-stdin", stdin="short\n")
    assert result.returncode == 1
    assert "at least 8 characters" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_database_is_one_clear_line(env: dict[str, str]) -> None:
    env = {**env, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing"}
    result = run(env, "db", "upgrade")
    assert result.returncode == 1
    assert "Migration failed on postgresql+asyncpg://nobody@127.0.0.1:1/nothing" in result.stderr
    assert "Traceback" not in result.stderr


def test_server_first_run_then_password_then_login(
    env: dict[str, str], server: tuple[str, subprocess.Popen[str]]
) -> None:
    base, process = server
    refused = httpx.post(f"{base}/api/auth/login", json={"password": "long enough password"})
    assert refused.status_code == 409

    result = run(env, "admin", "set-password", "--password-stdin", stdin="long enough password\n")
    assert result.returncode == 0, result.stderr

    login = httpx.post(
        f"{base}/api/auth/login",
        json={"password": "long enough password"},
        headers={"X-Request-ID": "trace-me-123"},
    )
    assert login.status_code == 200
    assert login.headers["x-request-id"] == "trace-me-123"

    process.terminate()
    output, _ = process.communicate(timeout=15)
    assert "No owner password yet" in output
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    requests = [r for r in records if r.get("event") == "request"]
    assert requests, output
    assert all(r.get("request_id") for r in requests)
    assert any(r["request_id"] == "trace-me-123" and r["status"] == 200 for r in requests)
    assert "long enough password" not in output
