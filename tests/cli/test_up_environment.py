"""What `convassist up` gives its children: log format, the ML service's URL, the components."""

from __future__ import annotations

from typing import Any

import pytest

from convassist.cli.up import child_environment, components, url_host
from convassist.core.settings import ServerSettings
from convassist.ml.settings import MLSettings

BASE = {"PATH": "/usr/bin"}


@pytest.fixture(autouse=True)
def _no_user_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONVASSIST_LOG_FORMAT", "ML_SERVICE_URL", "ML_SERVICE_HOST", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)


def settings(**server: Any) -> tuple[ServerSettings, MLSettings]:
    return ServerSettings(_env_file=None, **server), MLSettings(_env_file=None)


def test_a_terminal_gets_console_logs_from_the_children() -> None:
    server, ml = settings()
    env = child_environment(BASE, server, ml, ml_port=8100, terminal=True)
    assert env["CONVASSIST_LOG_FORMAT"] == "console"
    assert env["PATH"] == "/usr/bin"


def test_a_pipe_leaves_the_children_on_auto() -> None:
    server, ml = settings()
    env = child_environment(BASE, server, ml, ml_port=8100, terminal=False)
    assert "CONVASSIST_LOG_FORMAT" not in env


def test_the_persons_log_format_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVASSIST_LOG_FORMAT", "json")
    server, ml = settings()
    env = child_environment(
        {**BASE, "CONVASSIST_LOG_FORMAT": "json"}, server, ml, ml_port=8100, terminal=True
    )
    assert env["CONVASSIST_LOG_FORMAT"] == "json"


def test_the_server_is_pointed_at_the_chosen_ml_port() -> None:
    server, ml = settings()
    env = child_environment(BASE, server, ml, ml_port=8123, terminal=False)
    assert env["ML_SERVICE_URL"] == "http://127.0.0.1:8123"


def test_a_configured_ml_service_url_wins() -> None:
    server, ml = settings(ml_service_url="http://gpu-box:8100")
    env = child_environment(
        {**BASE, "ML_SERVICE_URL": "http://gpu-box:8100"}, server, ml, ml_port=8123, terminal=False
    )
    assert env["ML_SERVICE_URL"] == "http://gpu-box:8100"


def test_wildcard_and_ipv6_hosts_become_reachable_urls() -> None:
    assert url_host("0.0.0.0") == "127.0.0.1"
    assert url_host("::") == "[::1]"
    assert url_host("::1") == "[::1]"
    assert url_host("localhost") == "localhost"


def test_the_worker_runs_only_with_redis() -> None:
    server, ml = settings()
    names = [part.name for part in components(server, ml, port=3100, ml_port=8100)]
    assert names == ["ml", "server"]
    with_redis = MLSettings(_env_file=None, redis_url="redis://127.0.0.1:6379/0")
    parts = components(server, with_redis, port=3101, ml_port=8101)
    assert [part.name for part in parts] == ["ml", "server", "worker"]
    assert parts[0].args[-2:] == ("--port", "8101")
    assert parts[1].args[-2:] == ("--port", "3101")
