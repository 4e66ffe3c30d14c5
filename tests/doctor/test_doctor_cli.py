"""`convassist doctor` as a person (the table) and a script (`--json`) run it, against a real
ML service."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from convassist.agent.client import TokenGrant
from convassist.agent.registration import save_grant
from convassist.core.settings import ServerSettings
from convassist.doctor.agent import check_agent_server, check_agent_token
from convassist.doctor.result import Context, Status
from convassist.doctor.services import check_ml_service
from convassist.ml.settings import MLSettings
from tests.support.services import ML_TOKEN, clean_env, free_port, ml_service, running

pytestmark = pytest.mark.slow
WRONG_TOKEN = "not-the-ml-service-token-at-all"


@pytest.fixture(scope="module")
def ml_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with ml_service(tmp_path_factory.mktemp("ml")) as base:
        yield base


def server_context(tmp_path: Path, url: str, token: str) -> Context:
    server = ServerSettings(
        _env_file=None, data_dir=tmp_path, ml_service_url=url, ml_service_token=token
    )
    return Context(server=server, ml=MLSettings(_env_file=None, data_dir=tmp_path))


def test_the_ml_service_check_accepts_the_servers_token(tmp_path: Path, ml_url: str) -> None:
    outcome = check_ml_service(server_context(tmp_path, ml_url, ML_TOKEN))
    assert outcome.status is Status.OK, outcome
    assert "serving smollm2-135m-instruct" in outcome.summary


def test_a_wrong_ml_token_fails_with_the_fix(tmp_path: Path, ml_url: str) -> None:
    outcome = check_ml_service(server_context(tmp_path, ml_url, WRONG_TOKEN))
    assert outcome.status is Status.FAIL
    assert "refused the server's token" in outcome.summary
    assert outcome.fix is not None and "same ML_SERVICE_TOKEN" in outcome.fix


def test_an_unreachable_ml_service_fails_with_how_to_start_it(tmp_path: Path) -> None:
    outcome = check_ml_service(
        server_context(tmp_path, f"http://127.0.0.1:{free_port()}", ML_TOKEN)
    )
    assert outcome.status is Status.FAIL
    assert "not reachable" in outcome.summary
    assert outcome.fix is not None and "convassist up" in outcome.fix


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "convassist", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        input="long enough password\n",
    )


@pytest.fixture
def installed(tmp_path: Path, ml_url: str) -> dict[str, str]:
    """A set-up installation: migrated database, owner password, the ML service's token."""
    env = clean_env(
        CONVASSIST_DATA_DIR=str(tmp_path / "data"),
        ML_SERVICE_URL=ml_url,
        ML_SERVICE_TOKEN=ML_TOKEN,
        ML_SERVICE_THREADS="2",
        COLUMNS="200",
    )
    assert doctor(env, "db", "upgrade").returncode == 0
    assert doctor(env, "admin", "set-password", "--password-stdin").returncode == 0
    return env


def test_doctor_json_is_green_on_a_set_up_installation(installed: dict[str, str]) -> None:
    result = doctor(installed, "doctor", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0, report
    assert report["ok"] is True
    statuses = {check["id"]: check["status"] for check in report["checks"]}
    for check in ("python", "cpu", "model", "generation", "database", "owner", "ml_service"):
        assert statuses[check] == "ok", report
    assert statuses["permissions"] == "ok", report
    assert statuses["redis"] == statuses["agent_chat_db"] == "skip"


def test_doctor_fails_with_exit_1_and_says_how_to_fix(installed: dict[str, str]) -> None:
    env = {**installed, "ML_SERVICE_TOKEN": WRONG_TOKEN}
    result = doctor(env, "doctor", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    (ml,) = [check for check in report["checks"] if check["id"] == "ml_service"]
    assert ml["status"] == "fail" and "ML_SERVICE_TOKEN" in ml["fix"]

    table = doctor(env, "doctor")
    assert table.returncode == 1
    assert "ML service" in table.stdout and "✗ fail" in table.stdout
    assert "Fix: Give the server and the ML service the same ML_SERVICE_TOKEN" in table.stdout
    assert "Traceback" not in table.stderr


def test_a_mac_registered_with_the_real_server_passes_the_agent_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = clean_env(
        CONVASSIST_DATA_DIR=str(tmp_path / "server"),
        CONVASSIST_DEVICE_POLL_INTERVAL="0",
        CONVASSIST_LOG_FORMAT="json",
    )
    assert doctor(env, "admin", "set-password", "--password-stdin").returncode == 0
    with running(["server", "--port", str(port)], f"{base}/api/health", env):
        device = {"name": "Test Mac", "hardwareId": "hw-1", "platform": "macos", "osVersion": "15"}
        reg = httpx.post(f"{base}/api/devices/register", json=device).json()
        login = httpx.post(f"{base}/api/auth/login", json={"password": "long enough password"})
        owner = {"Authorization": f"Bearer {login.json()['token']}"}
        approved = httpx.post(
            f"{base}/api/devices/approve", json={"code": reg["code"]}, headers=owner
        )
        assert approved.status_code == 200, approved.text
        grant = httpx.post(
            f"{base}/api/devices/verify", json={"deviceId": reg["deviceId"], "code": reg["code"]}
        ).json()

        monkeypatch.setenv("CONVASSIST_DATA_DIR", str(tmp_path / "mac"))
        monkeypatch.setenv("CONVASSIST_AGENT_TOKEN_STORE", "file")
        context = server_context(tmp_path, base, ML_TOKEN)
        context.platform = "darwin"
        expires = datetime.fromisoformat(grant["expiresAt"].replace("Z", "+00:00"))
        token = TokenGrant(grant["deviceId"], grant["token"], expires)
        save_grant(context.agent, base, "Test Mac", token)

        assert check_agent_token(context).status is Status.OK
        outcome = check_agent_server(context)
        assert outcome.status is Status.OK, outcome
        assert f"{base} is a Conversation Assistant server" in outcome.summary
        assert "knows this Mac" in outcome.summary


def test_each_configured_ml_instance_is_checked(tmp_path: Path, ml_url: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    both = check_ml_service(server_context(tmp_path, f"{ml_url},{dead}", ML_TOKEN))
    assert both.status is Status.FAIL
    assert "1 of 2 ML instances failing" in both.summary
    assert f"{ml_url}: serving smollm2-135m-instruct" in both.summary
    assert f"not reachable at {dead}" in both.summary
    assert both.fix is not None and "ML_SERVICE_URL" in both.fix
