"""The real `convassist` commands, as a person runs them."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from convassist.server.auth.service import MIN_PASSWORD_LENGTH
from tests.support.cli import CONVASSIST, set_password
from tests.support.services import clean_env, free_port, running


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


@contextmanager
def start_server(env: dict[str, str]) -> Iterator[tuple[str, Callable[[], str]]]:
    """`convassist server` until the block ends; yields its URL and a reader of its output
    (which still reads it after the server has stopped)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = Path(env["CONVASSIST_DATA_DIR"]).parent / f"server-{port}.log"
    with running(["server", "--port", str(port)], f"{base}/api/health", env, log):
        yield base, log.read_text


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
    result = set_password(env, "short", check=False)
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

    set_password(env, "long enough password")

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


SETUP_LINK = re.compile(r"^\s*(http://127\.0\.0\.1:(\d+)/setup\?code=([A-Za-z0-9_-]+))\s*$", re.M)


def test_first_start_prints_a_one_time_setup_link(env: dict[str, str], tmp_path: Path) -> None:
    """While no owner exists each start prints a new link; it works once, via the API too."""
    with start_server(env) as (base, first):
        pass
    with start_server(env) as (base, second):
        links = [SETUP_LINK.search(output) for output in (first(), second())]
        assert all(links), (first(), second())
        codes = [link.group(3) for link in links if link]
        assert codes[0] != codes[1] and len(codes[1]) >= 40
        assert links[1] and links[1].group(1).startswith(base)  # the configured host and port
        # The first start's code died with the second start; the new one works once.
        old = httpx.post(
            f"{base}/api/auth/setup", json={"code": codes[0], "password": "long enough password"}
        )
        assert old.status_code == 403
        made = httpx.post(
            f"{base}/api/auth/setup", json={"code": codes[1], "password": "long enough password"}
        )
        assert made.status_code == 200, made.text
        assert made.json()["token"]
        again = httpx.post(
            f"{base}/api/auth/setup", json={"code": codes[1], "password": "another password!"}
        )
        assert again.status_code == 409
    output = second()
    # The code is for the terminal only: no structured log line carries it.
    records = [line for line in output.splitlines() if line.startswith("{")]
    assert records and not any(codes[1] in line for line in records)
    assert not (tmp_path / "data" / "setup_code").exists()
    with start_server(env) as (_, third):
        pass
    assert "No owner password yet" not in third() and "/setup?code=" not in third()


def test_set_password_states_the_minimum_length_before_asking(env: dict[str, str]) -> None:
    password = "long enough password"
    result = subprocess.run(
        [*CONVASSIST, "admin", "set-password"],
        env=env,
        input=f"{password}\n{password}\n",
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,  # no terminal: the hidden prompt reads standard input
    )
    assert result.returncode == 0, result.stderr
    assert f"at least {MIN_PASSWORD_LENGTH} characters" in result.stderr
    assert result.stderr.index("at least") < result.stderr.index("Owner password set")
