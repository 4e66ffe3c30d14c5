"""`convassist agent …` commands in process (typer's runner) and the `run` loop.

launchctl is the fake of test_launchd (there is no launchd here); where a test needs chat.db to
be unreadable for lack of Full Disk Access, the Messages side is faked (root reads any file).
"""

from __future__ import annotations

import asyncio
import json
import os
import plistlib
import re
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from convassist import SERVER_ID, __version__
from convassist.agent.client import TokenGrant
from convassist.agent.daemon import ChangeWatcher, Daemon
from convassist.agent.errors import AgentError, ChatDBPermissionDenied
from convassist.agent.fda import full_disk_access_message
from convassist.agent.launchd import LABEL, AgentPaths
from convassist.agent.registration import save_grant
from convassist.agent.settings import AgentSettings
from convassist.agent.state import Counts, StateDB
from convassist.agent.sync import SyncReport
from convassist.cli import agent as agent_cli
from convassist.cli.main import app
from tests.agent.chatdb_factory import GeneratedChatDB
from tests.agent.faults import FaultProxy, Reply, Seen, web_page
from tests.agent.test_launchd import FakeLaunchctl
from tests.support.services import free_port

SERVER = "https://ca.example.com"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key in list(os.environ):
        if key.startswith("CONVASSIST_"):
            monkeypatch.delenv(key)
    values = {
        "CONVASSIST_AGENT_STATE_DIR": str(tmp_path / "state"),
        "CONVASSIST_AGENT_TOKEN_STORE": "file",
        "CONVASSIST_AGENT_RETRIES": "0",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return values


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["agent", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def registered(tmp_path: Path) -> None:
    settings = AgentSettings(_env_file=None)  # type: ignore[call-arg]
    grant = TokenGrant(
        "8b0c0000-0000-0000-0000-000000000001", "tok", datetime(2099, 1, 1, tzinfo=UTC)
    )
    save_grant(settings, SERVER, "Test Mac", grant)


@pytest.fixture
def macos(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeLaunchctl:
    """Pretend to be on macOS with a fake launchctl and a temporary home."""
    launchctl = FakeLaunchctl()
    monkeypatch.setattr(agent_cli, "IS_MACOS", True)
    monkeypatch.setattr(agent_cli, "_launchctl", lambda: launchctl)
    monkeypatch.setattr(agent_cli, "_paths", lambda: AgentPaths(tmp_path / "home"))
    return launchctl


def test_help_lists_the_commands(env: dict[str, str]) -> None:
    code, output = invoke("--help")
    assert code == 0
    for command in ("register", "sync", "run", "status", "install", "uninstall", "menubar"):
        assert command in output


def test_install_print_shows_the_plist(env: dict[str, str], tmp_path: Path) -> None:
    code, output = invoke("install", "--server", SERVER, "--db", "/data/chat.db", "--print")
    assert code == 0, output
    plist = plistlib.loads(output.encode())
    assert plist["Label"] == LABEL
    assert plist["EnvironmentVariables"]["CONVASSIST_AGENT_SERVER_URL"] == SERVER
    assert plist["EnvironmentVariables"]["CONVASSIST_AGENT_DB_PATH"] == "/data/chat.db"
    assert plist["EnvironmentVariables"]["CONVASSIST_AGENT_STATE_DIR"] == str(tmp_path / "state")


def test_install_is_refused_off_macos(env: dict[str, str]) -> None:
    assert not agent_cli.IS_MACOS
    code, output = invoke("install", "--server", SERVER)
    assert code == 69
    assert "LaunchAgents exist only on macOS" in output


def test_install_needs_a_registration(env: dict[str, str], macos: FakeLaunchctl) -> None:
    code, output = invoke("install", "--server", SERVER, "--wait", "0")
    assert code == 78
    assert (
        f"not registered with a server yet. Run `convassist agent register --server {SERVER}`"
        in output
    )
    assert macos.calls == []


def test_install_and_uninstall(
    env: dict[str, str], macos: FakeLaunchctl, tmp_path: Path, generated_db: GeneratedChatDB
) -> None:
    registered(tmp_path)
    code, output = invoke("install", "--db", str(generated_db.path), "--wait", "0")
    assert code == 0, output
    plist_path = tmp_path / "home/Library/LaunchAgents/io.convassist.agent.plist"
    assert f"Installed and started the LaunchAgent {plist_path}" in output
    assert f"Logs: {tmp_path / 'home/Library/Logs/convassist/agent.log'}" in output
    assert f"It runs as {Path(sys.executable).resolve()}" in output
    loaded = macos.loaded[LABEL]
    assert loaded["ProgramArguments"] == [sys.executable, "-m", "convassist", "agent", "run"]
    assert loaded["EnvironmentVariables"] == {
        "CONVASSIST_AGENT_SERVER_URL": SERVER,
        "CONVASSIST_LOG_FORMAT": "json",
        "CONVASSIST_AGENT_STATE_DIR": str(tmp_path / "state"),
        "CONVASSIST_AGENT_TOKEN_STORE": "file",
        "CONVASSIST_AGENT_RETRIES": "0",
        "CONVASSIST_AGENT_DB_PATH": str(generated_db.path),
    }

    code, output = invoke("uninstall")
    assert code == 0 and "LaunchAgent stopped and removed." in output
    assert not plist_path.exists() and LABEL not in macos.loaded
    assert (tmp_path / "state" / "token.json").exists()  # kept without --purge
    code, output = invoke("uninstall", "--purge")
    assert code == 0 and "No LaunchAgent was installed." in output
    assert not (tmp_path / "state").exists()


def test_install_reports_missing_full_disk_access(
    env: dict[str, str], macos: FakeLaunchctl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered(tmp_path)
    chat_db = tmp_path / "Library/Messages/chat.db"

    def no_access(path: Path) -> None:  # the Messages side: TCC refuses the read
        raise ChatDBPermissionDenied(path, "Operation not permitted")

    monkeypatch.setattr(agent_cli, "open_chat_db", no_access)
    agent_message = full_disk_access_message(chat_db, environ={"XPC_SERVICE_NAME": LABEL})

    def first_run(plist: Path) -> None:  # what the LaunchAgent's first sync records
        FakeLaunchctl.bootstrap(macos, plist)
        with StateDB.open(tmp_path / "state") as state:
            state.record_error(agent_message)

    monkeypatch.setattr(macos, "bootstrap", first_run)
    code, output = invoke("install", "--db", str(chat_db), "--wait", "3")
    assert code == 0, output
    python = Path(sys.executable).resolve()
    assert "Full Disk Access is missing." in output
    assert f"Grant Full Disk Access to the Python interpreter {python}" in output
    assert f"The agent's first sync failed: {agent_message}" in output


def test_status(env: dict[str, str], tmp_path: Path) -> None:
    code, output = invoke("status")
    assert code == 78 and "run `convassist agent register --server URL`" in output
    registered(tmp_path)
    with StateDB.open(tmp_path / "state") as state:
        state.record_error("Gave up after 3 attempts")
    code, output = invoke("status", "--offline")
    assert code == 0, output
    assert SERVER in output and "Test Mac (8b0c0000-0000-0000-0000-000000000001)" in output
    assert re.search(r"last sync +never", output)
    assert "Gave up after 3 attempts" in output
    code, output = invoke("status", "--offline", "--json")
    data = json.loads(output)
    assert data["registration"]["server_url"] == SERVER
    assert data["totals"] == {name: 0 for name in Counts.__dataclass_fields__}
    assert data["last_error"]["message"] == "Gave up after 3 attempts"


def test_status_reports_an_unreachable_server(env: dict[str, str], tmp_path: Path) -> None:
    settings = AgentSettings(_env_file=None)  # type: ignore[call-arg]
    url = f"http://127.0.0.1:{free_port()}"
    save_grant(settings, url, "Mac", TokenGrant("d", "t", datetime(2099, 1, 1, tzinfo=UTC)))
    code, output = invoke("status")
    assert code == 0
    assert re.search(r"on the server +unknown: Gave up after 1 attempts: cannot reach", output)


def test_register_refuses_a_bad_url_and_explains_an_unreachable_server(env: dict[str, str]) -> None:
    code, output = invoke("register", "--server", "not a url")
    assert code == 64 and "Not a server URL" in output
    code, output = invoke("register", "--server", f"http://127.0.0.1:{free_port()}")
    assert code == 69 and "Nothing answered at" in output and "Traceback" not in output


def test_register_with_a_server_that_is_down_fails_fast(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONVASSIST_AGENT_RETRIES")  # the default retries
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    code, output = invoke("register", "--server", url)
    elapsed = time.monotonic() - started
    assert code == 69, output
    assert elapsed < 2, elapsed
    assert f"Nothing answered at {url} (connection refused)" in output
    assert "convassist up" in output  # what to check
    assert "Nothing was lost" not in output and "next sync" not in output
    assert "agent.retry" not in output and "Traceback" not in output


def _server_answering(health: Reply) -> FaultProxy:
    """A server whose health answer is `health` and whose every other route answers 503."""

    def hook(_: int, seen: Seen) -> Reply:
        return health if seen.path == "/api/health" else Reply(503)

    return FaultProxy(hook=hook)


def test_register_retries_quietly_and_says_nothing_about_syncs(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVASSIST_AGENT_RETRIES", "2")
    monkeypatch.setenv("CONVASSIST_AGENT_RETRY_BACKOFF", "0.01")
    health = {"service": SERVER_ID, "status": "ok", "version": __version__}
    with _server_answering(Reply(200, health)).running() as proxy:
        code, output = invoke("register", "--server", proxy.url)
    assert code == 69, output
    assert f"Gave up after 3 attempts: {proxy.url} answered 503." in output
    assert "agent.retry" not in output and "next sync" not in output


def test_register_with_a_server_that_is_not_ready_fails_fast(env: dict[str, str]) -> None:
    health = {"service": SERVER_ID, "status": "degraded", "checks": {"database": "down"}}
    with _server_answering(Reply(503, health)).running() as proxy:
        code, output = invoke("register", "--server", proxy.url)
        assert [seen.path for seen in proxy.seen] == ["/api/health"]
    assert code == 69, output
    assert f"{proxy.url} is a Conversation Assistant server, but it is not ready" in output
    assert "database" in output


def test_register_with_a_web_page_names_it(env: dict[str, str], tmp_path: Path) -> None:
    with web_page(b"<html><head><title>NAS login</title></head><body>hi</body></html>") as url:
        code, output = invoke("register", "--server", url)
    assert code == 76, output
    assert f"{url} answered, but it is not a Conversation Assistant server" in output
    assert "a web page titled “NAS login”" in output
    assert "<" not in output
    assert not (tmp_path / "state").exists()


def test_http_to_a_remote_server_is_warned_about(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVASSIST_AGENT_HTTP_TIMEOUT", "1")
    _, output = invoke("register", "--server", f"http://192.0.2.1:{free_port()}")
    assert "plain HTTP" in output and "Use HTTPS in production" in output


def test_sync_without_registration(env: dict[str, str]) -> None:
    code, output = invoke("sync", "--once")
    assert code == 78
    assert "not registered with a server yet" in output


def test_a_missing_chat_db_names_options_that_exist(env: dict[str, str], tmp_path: Path) -> None:
    registered(tmp_path)
    missing = tmp_path / "nowhere" / "chat.db"
    code, output = invoke("sync", "--once", "--db", str(missing))
    assert code == 66, output
    named = set(re.findall(r"--[a-z][a-z-]*", output))
    assert "--db" in named
    _, sync_help = invoke("sync", "--help")
    assert named <= set(re.findall(r"--[a-z][a-z-]*", sync_help)), named


def test_menubar_needs_macos(env: dict[str, str]) -> None:
    code, output = invoke("menubar")
    assert code == 1 and "macOS only" in output


# -- the `run` loop ---------------------------------------------------------------------


def report() -> SyncReport:
    return SyncReport(Counts(), 0, 0, 0.0, interrupted=False, first_sync=False)


def touch_wal(db: Path, payload: bytes = b"x") -> None:
    with (db.with_name(db.name + "-wal")).open("ab") as handle:
        handle.write(payload)


async def test_daemon_syncs_at_start_on_changes_after_the_debounce_and_stops(
    tmp_path: Path,
) -> None:
    db = tmp_path / "chat.db"
    sqlite3.connect(db).close()
    syncs: list[float] = []
    stop = asyncio.Event()

    async def sync() -> SyncReport:
        syncs.append(time.monotonic())
        return report()

    daemon = Daemon(sync, ChangeWatcher(db), poll_interval=3600, debounce=0.3, stop=stop, tick=0.05)
    task = asyncio.create_task(daemon.run())
    await asyncio.sleep(0.2)
    assert len(syncs) == 1  # right away
    changed = time.monotonic()
    for _ in range(4):  # a burst of writes: one sync, once quiet for the debounce
        touch_wal(db)
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.6)
    assert len(syncs) == 2
    assert syncs[1] - changed >= 0.3 + 0.3
    await asyncio.sleep(0.5)
    assert len(syncs) == 2  # nothing changed since: the poll interval is the safety net
    stop.set()
    await asyncio.wait_for(task, 2)


async def test_daemon_polls_and_backs_off_after_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from convassist.agent import daemon as daemon_module

    monkeypatch.setattr(daemon_module, "ERROR_DELAY", 0.5)
    db = tmp_path / "chat.db"
    calls: list[float] = []
    errors: list[str] = []
    stop = asyncio.Event()

    async def sync() -> SyncReport:
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise AgentError("server down")
        return report()

    daemon = Daemon(
        sync,
        ChangeWatcher(db),
        poll_interval=0.3,
        debounce=0,
        stop=stop,
        tick=0.02,
        on_error=lambda exc: errors.append(exc.message),
    )
    task = asyncio.create_task(daemon.run())
    await asyncio.sleep(0.1)
    db.write_bytes(b"changed")  # a change during the back-off does not hurry the retry
    await asyncio.sleep(1.2)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert errors == ["server down", "server down"]
    assert calls[1] - calls[0] >= 0.3  # min(ERROR_DELAY, poll interval)
    assert len(calls) >= 4  # then every poll interval
    assert calls[3] - calls[2] >= 0.3


def test_change_watcher_sees_the_database_and_its_wal(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    watcher = ChangeWatcher(db)
    assert not watcher.changed()
    db.write_bytes(b"1")
    assert watcher.changed() and not watcher.changed()
    touch_wal(db)
    assert watcher.changed() and not watcher.changed()


def test_macos_scripts_check_their_arguments_and_the_platform() -> None:
    import subprocess

    macos_dir = Path(__file__).resolve().parents[2] / "macos"
    usage = subprocess.run(["bash", macos_dir / "install.sh"], capture_output=True, text=True)
    assert usage.returncode == 64 and "usage:" in usage.stderr
    if sys.platform != "darwin":
        other = subprocess.run(
            ["bash", macos_dir / "install.sh", SERVER], capture_output=True, text=True
        )
        assert other.returncode == 69 and "for macOS" in other.stderr
    bad = subprocess.run(
        ["bash", macos_dir / "uninstall.sh", "--x"], capture_output=True, text=True
    )
    assert bad.returncode == 64
