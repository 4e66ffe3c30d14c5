"""`convassist up` (what `make up` runs): the whole system on the embedded defaults."""

from __future__ import annotations

import os
import pty
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from convassist.core.settings import ML_TOKEN_FILE
from tests.support.cli import set_password
from tests.support.services import clean_env, free_port

pytestmark = pytest.mark.slow
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


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
        # One machine: both found the token generated into the shared data dir.
        token = (tmp_path / "data" / ML_TOKEN_FILE).read_text()
        auth = {"Authorization": f"Bearer {token}"}
        ml = httpx.get(f"http://127.0.0.1:{ml_port}/health", headers=auth).json()
        assert ml["model_loaded"] is True
        assert ml["redis"] == "disabled"
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "server | " in output
    assert "ml     | " in output
    assert (tmp_path / "data" / "convassist.sqlite3").exists()


def _terminal_output(fd: int, into: list[str]) -> threading.Thread:
    """Collect what a child writes to its pseudo-terminal, without colours, until it closes."""

    def read() -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not chunk:
                return
            into.append(ANSI.sub("", chunk.decode(errors="replace")).replace("\r", ""))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def _wait_for_text(
    output: list[str], pattern: str, process: subprocess.Popen[str]
) -> re.Match[str]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if match := re.search(pattern, "".join(output)):
            return match
        assert process.poll() is None, "".join(output)
        time.sleep(0.2)
    pytest.fail(f"{pattern!r} never appeared in: {''.join(output)[-3000:]}")


def test_up_in_a_terminal_logs_for_people_and_restarts_a_crashed_ml_service(
    tmp_path: Path,
) -> None:
    port, ml_port = free_port(), free_port()
    env = clean_env(
        CONVASSIST_DATA_DIR=str(tmp_path / "data"),
        ML_SERVICE_MODELS_DIR=str(tmp_path / "models"),
        COLUMNS="300",
    )
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "convassist", "up", "--port", str(port), "--ml-port", str(ml_port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        text=True,
    )
    os.close(terminal)
    output: list[str] = []
    reader = _terminal_output(controller, output)
    server, ml = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ml_port}"
    try:
        _wait(f"{server}/api/health", process)
        _wait(f"{ml}/health", process)
        password = "long enough password"
        set_password(env, password)
        token = httpx.post(f"{server}/api/auth/login", json={"password": password}).json()["token"]
        owner = {"Authorization": f"Bearer {token}"}
        # The server reaches the ML service on the port chosen with --ml-port.
        assert httpx.get(f"{server}/api/training/adapters", headers=owner).status_code == 200

        started = r"ml started \(pid (\d+)\)"
        first = int(_wait_for_text(output, started, process)[1])
        os.kill(first, signal.SIGSEGV)
        _wait_for_text(output, r"ml killed by SIGSEGV unexpectedly; restarting it in 1 s", process)
        _wait_for_text(output, f"{started}(.|\n)*{started}", process)
        _wait(f"{ml}/health", process)
        assert httpx.get(f"{server}/api/training/adapters", headers=owner).status_code == 200
        assert len(set(re.findall(started, "".join(output)))) == 2  # a new ML process
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        reader.join(timeout=10)
        os.close(controller)
    text = "".join(output)
    assert process.returncode == 0, text
    assert text.count("server started (pid") == 1, text  # the server kept running throughout
    server_lines = [
        line.split("| ", 1)[1] for line in text.splitlines() if line.startswith("server |")
    ]
    assert any("request" in line and "status=200" in line for line in server_lines), text
    assert not any(line.lstrip().startswith("{") for line in server_lines), text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["server", "--port", "{port}"], "`convassist server --port {next}`"),
        (["ml", "--port", "{port}"], "`convassist ml --port {next}`"),
        (["up", "--port", "{port}"], "`convassist up --port {next}`"),
        (["up", "--ml-port", "{port}"], "`convassist up --ml-port {next}`"),
    ],
)
def test_a_busy_port_is_named_with_the_way_to_change_it(
    tmp_path: Path, args: list[str], message: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        others = {"CONVASSIST_PORT": str(free_port()), "ML_SERVICE_PORT": str(free_port())}
        result = subprocess.run(
            [sys.executable, "-m", "convassist", *(a.format(port=port) for a in args)],
            env=clean_env(CONVASSIST_DATA_DIR=str(tmp_path / "data"), COLUMNS="300", **others),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on port {port} of 127.0.0.1" in result.stderr
    assert "already in use" in result.stderr
    assert message.format(next=port + 1) in result.stderr
    assert "Traceback" not in result.stderr
    assert "started (pid" not in result.stderr  # `up` checks before starting any component
