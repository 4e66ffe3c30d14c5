"""The LaunchAgent plist, install/uninstall through launchctl (a fake here: there is no
launchd on Linux), and the Full Disk Access message naming the exact program."""

from __future__ import annotations

import os
import plistlib
import stat
import sys
from pathlib import Path

import pytest

from convassist.agent.fda import (
    FullDiskAccessMissing,
    agent_programs,
    full_disk_access_message,
    terminal_app,
)
from convassist.agent.launchd import (
    LABEL,
    AgentPaths,
    LaunchctlError,
    SystemLaunchctl,
    build_plist,
    install_agent,
    uninstall_agent,
)

SERVER = "https://ca.example.com"


class FakeLaunchctl:
    """Records what would be asked of launchd; `loaded` is what launchd would have loaded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.loaded: dict[str, dict[str, object]] = {}

    def bootstrap(self, plist: Path) -> None:
        self.calls.append(("bootstrap", str(plist)))
        content = plistlib.loads(plist.read_bytes())
        self.loaded[str(content["Label"])] = content

    def bootout(self, label: str) -> bool:
        self.calls.append(("bootout", label))
        return self.loaded.pop(label, None) is not None


def test_plist_content(tmp_path: Path) -> None:
    paths = AgentPaths(tmp_path)
    plist = build_plist(SERVER, paths, environment={"CONVASSIST_AGENT_DB_PATH": "/x/chat.db"})
    assert plist == {
        "Label": "io.convassist.agent",
        "ProgramArguments": [sys.executable, "-m", "convassist", "agent", "run"],
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 30,
        "ProcessType": "Background",
        "WorkingDirectory": str(tmp_path),
        "StandardOutPath": str(tmp_path / "Library/Logs/convassist/agent.log"),
        "StandardErrorPath": str(tmp_path / "Library/Logs/convassist/agent.log"),
        "EnvironmentVariables": {
            "CONVASSIST_AGENT_SERVER_URL": SERVER,
            "CONVASSIST_LOG_FORMAT": "json",
            "CONVASSIST_AGENT_DB_PATH": "/x/chat.db",
        },
    }
    assert paths.plist == tmp_path / "Library/LaunchAgents/io.convassist.agent.plist"
    # It is a valid XML property list, as launchd reads it.
    xml = plistlib.dumps(plist, fmt=plistlib.FMT_XML)
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist')
    assert plistlib.loads(xml) == plist


def test_install_writes_and_loads_uninstall_unloads_and_removes(tmp_path: Path) -> None:
    paths = AgentPaths(tmp_path)
    launchctl = FakeLaunchctl()
    path = install_agent(SERVER, launchctl, paths, python="/opt/py/bin/python3")
    assert path == paths.plist
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert paths.log_dir.is_dir()
    assert launchctl.calls == [("bootout", LABEL), ("bootstrap", str(path))]
    assert launchctl.loaded[LABEL]["ProgramArguments"] == [
        "/opt/py/bin/python3",
        "-m",
        "convassist",
        "agent",
        "run",
    ]

    # Installing again replaces the job (unload, rewrite, load) without leftovers.
    install_agent("https://new.example.com", launchctl, paths)
    env = launchctl.loaded[LABEL]["EnvironmentVariables"]
    assert isinstance(env, dict) and env["CONVASSIST_AGENT_SERVER_URL"] == "https://new.example.com"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]

    assert uninstall_agent(launchctl, paths) is True
    assert not path.exists() and LABEL not in launchctl.loaded
    assert uninstall_agent(launchctl, paths) is False


@pytest.fixture
def launchctl_script(tmp_path: Path) -> tuple[Path, Path]:
    """An executable standing in for /bin/launchctl: logs its arguments, exits as told."""
    log = tmp_path / "calls.log"
    script = tmp_path / "launchctl"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {log}\n'
        f"code=$(head -n 1 {tmp_path}/codes 2>/dev/null || echo 0)\n"
        f"sed -i 1d {tmp_path}/codes 2>/dev/null\n"
        'if [ "$code" = 3 ]; then echo "Boot-out failed: 3: No such process" >&2; fi\n'
        'if [ "$code" = 5 ]; then echo "Bootstrap failed: 5: Input/output error" >&2; fi\n'
        'exit "$code"\n'
    )
    script.chmod(0o755)
    return script, log


def test_system_launchctl_commands(tmp_path: Path, launchctl_script: tuple[Path, Path]) -> None:
    script, log = launchctl_script
    launchctl = SystemLaunchctl(501, program=str(script), retry_delay=0)
    (tmp_path / "codes").write_text("3\n0\n5\n0\n")
    assert launchctl.bootout(LABEL) is False  # not loaded
    assert launchctl.bootout(LABEL) is True
    launchctl.bootstrap(tmp_path / "x.plist")  # fails once (job still going away), then loads
    assert log.read_text().splitlines() == [
        f"bootout gui/501/{LABEL}",
        f"bootout gui/501/{LABEL}",
        f"bootstrap gui/501 {tmp_path / 'x.plist'}",
        f"bootstrap gui/501 {tmp_path / 'x.plist'}",
    ]
    (tmp_path / "codes").write_text("5\n5\n5\n1\n")
    with pytest.raises(LaunchctlError, match=r"could not load .*Input/output error"):
        launchctl.bootstrap(tmp_path / "x.plist")
    with pytest.raises(LaunchctlError, match="could not unload"):
        launchctl.bootout(LABEL)


def test_full_disk_access_names_the_resolved_interpreter(tmp_path: Path) -> None:
    link = tmp_path / "venv-python"
    link.symlink_to(sys.executable)
    assert agent_programs(str(link))[0] == Path(sys.executable).resolve()
    message = full_disk_access_message(
        Path("/Users/a/Library/Messages/chat.db"), executable=str(link), environ={}
    )
    assert f"to the Python interpreter {Path(sys.executable).resolve()}" in message
    assert "System Settings > Privacy & Security > Full Disk Access" in message


def test_framework_python_app_is_named_too(tmp_path: Path) -> None:
    version = tmp_path / "Python.framework" / "Versions" / "3.12"
    (version / "bin").mkdir(parents=True)
    (version / "Resources" / "Python.app").mkdir(parents=True)
    exe = version / "bin" / "python3.12"
    exe.write_text("")
    assert agent_programs(str(exe)) == [exe, version / "Resources" / "Python.app"]


def test_from_a_terminal_the_terminal_app_is_named() -> None:
    assert terminal_app({"TERM_PROGRAM": "Apple_Terminal"}) == (
        "Terminal (/System/Applications/Utilities/Terminal.app)"
    )
    assert terminal_app({"TERM_PROGRAM": "iTerm.app"}) == "iTerm (/Applications/iTerm.app)"
    assert terminal_app({"TERM_PROGRAM": "Hyper", "XPC_SERVICE_NAME": LABEL}) is None
    assert terminal_app({}) is None
    message = full_disk_access_message(Path("/c.db"), environ={"TERM_PROGRAM": "iTerm.app"})
    assert "to iTerm (/Applications/iTerm.app), the terminal you run the agent from" in message


def test_full_disk_access_error_keeps_the_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "environ", {"XPC_SERVICE_NAME": LABEL})
    error = FullDiskAccessMissing(Path("/c.db"))
    assert error.exit_code == 77
    assert str(error) == error.message
    assert f"to the Python interpreter {Path(sys.executable).resolve()}" in error.message
