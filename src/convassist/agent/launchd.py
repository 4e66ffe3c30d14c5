"""The LaunchAgent that runs `convassist agent run` at login, and `launchctl` behind an interface.

The plist lives at `~/Library/LaunchAgents/io.convassist.agent.plist`; it starts the current
Python interpreter with `-m convassist agent run`, restarts it if it crashes, and sends its
output to `~/Library/Logs/convassist/agent.log`. `SystemLaunchctl` loads it into the user's
GUI session (`launchctl bootstrap gui/<uid>`) and unloads it (`launchctl bootout`). The plist
keeps this shell's agent settings (`plist_environment`); `wait_for_first_sync` reports how the
LaunchAgent's first sync went (a missing Full Disk Access shows up there).
"""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from convassist.agent.errors import AgentError
from convassist.agent.state import StateDB

__all__ = [
    "LABEL",
    "AgentPaths",
    "Launchctl",
    "LaunchctlError",
    "SystemLaunchctl",
    "build_plist",
    "install_agent",
    "plist_environment",
    "uninstall_agent",
    "wait_for_first_sync",
]

LABEL = "io.convassist.agent"
THROTTLE_SECONDS = 30
BOOTSTRAP_ATTEMPTS = 3


class LaunchctlError(AgentError):
    """`launchctl` refused to load or unload the agent."""

    exit_code = 71  # EX_OSERR


@dataclass(frozen=True, slots=True)
class AgentPaths:
    """Where the LaunchAgent's files go for a home directory."""

    home: Path

    @property
    def plist(self) -> Path:
        return self.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"

    @property
    def log_dir(self) -> Path:
        return self.home / "Library" / "Logs" / "convassist"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "agent.log"


class Launchctl(Protocol):
    """The two `launchctl` operations the agent needs."""

    def bootstrap(self, plist: Path) -> None: ...
    def bootout(self, label: str) -> bool: ...


class SystemLaunchctl:
    """The real `/bin/launchctl`, in the current user's GUI domain."""

    def __init__(
        self, uid: int | None = None, *, program: str = "/bin/launchctl", retry_delay: float = 1.0
    ) -> None:
        self.domain = f"gui/{os.getuid() if uid is None else uid}"
        self.program = program
        self.retry_delay = retry_delay

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - fixed program, arguments built here
            [self.program, *args], capture_output=True, text=True, timeout=30, check=False
        )

    def bootstrap(self, plist: Path) -> None:
        # Right after a bootout the old job may still be going away ("5: Input/output error").
        for attempt in range(1, BOOTSTRAP_ATTEMPTS + 1):
            result = self._run("bootstrap", self.domain, str(plist))
            if result.returncode == 0:
                return
            if attempt < BOOTSTRAP_ATTEMPTS:
                time.sleep(attempt * self.retry_delay)
        detail = (result.stderr or result.stdout).strip()
        raise LaunchctlError(
            f"launchctl could not load {plist} (exit {result.returncode}): {detail}"
        )

    def bootout(self, label: str) -> bool:
        """Unload the job; False if it was not loaded."""
        result = self._run("bootout", f"{self.domain}/{label}")
        if result.returncode in (0, 36):  # 36: "Operation now in progress" (going away)
            return True
        if result.returncode in (3, 113) or "No such process" in result.stderr:
            return False  # not loaded
        detail = (result.stderr or result.stdout).strip()
        raise LaunchctlError(
            f"launchctl could not unload {label} (exit {result.returncode}): {detail}"
        )


def build_plist(
    server_url: str,
    paths: AgentPaths,
    *,
    python: str | None = None,
    environment: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The LaunchAgent property list."""
    env = {
        "CONVASSIST_LOG_FORMAT": "json",
        **(environment or {}),
        "CONVASSIST_AGENT_SERVER_URL": server_url,
    }
    return {
        "Label": LABEL,
        "ProgramArguments": [python or sys.executable, "-m", "convassist", "agent", "run"],
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": THROTTLE_SECONDS,
        "ProcessType": "Background",
        "WorkingDirectory": str(paths.home),
        "StandardOutPath": str(paths.log_file),
        "StandardErrorPath": str(paths.log_file),
        "EnvironmentVariables": env,
    }


def plist_environment(
    state_dir: Path, db: Path | None, environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """The agent settings of this shell that the LaunchAgent must keep."""
    keep = {
        key: value
        for key, value in environ.items()
        if value
        and (
            key.startswith("CONVASSIST_AGENT_")
            or key in ("CONVASSIST_DATA_DIR", "CONVASSIST_LOG_LEVEL")
        )
    }
    keep["CONVASSIST_AGENT_STATE_DIR"] = str(state_dir)
    if db is not None:
        keep["CONVASSIST_AGENT_DB_PATH"] = str(db.expanduser().absolute())
    return keep


def wait_for_first_sync(state_dir: Path, since: datetime, seconds: float) -> tuple[bool, str]:
    """(failed, what to tell the user) about the LaunchAgent's first sync after `since`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(1)
        state = StateDB.open_existing(state_dir)
        if state is None:
            continue
        with state:
            error, synced = state.last_error(), state.last_sync_at()
        if error is not None and error[0] >= since:
            return True, error[1]
        if synced is not None and synced >= since:
            return False, "The agent's first sync succeeded."
    return False, "The agent is starting; see `convassist agent status`."


def install_agent(
    server_url: str,
    launchctl: Launchctl,
    paths: AgentPaths,
    *,
    python: str | None = None,
    environment: dict[str, str] | None = None,
) -> Path:
    """Write the plist (replacing an older one) and load it; returns the plist path."""
    paths.plist.parent.mkdir(parents=True, exist_ok=True)
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    plist = build_plist(server_url, paths, python=python, environment=environment)
    launchctl.bootout(LABEL)
    tmp = paths.plist.with_suffix(".plist.tmp")
    with tmp.open("wb") as handle:
        plistlib.dump(plist, handle)
    tmp.chmod(0o644)
    os.replace(tmp, paths.plist)
    launchctl.bootstrap(paths.plist)
    return paths.plist


def uninstall_agent(launchctl: Launchctl, paths: AgentPaths) -> bool:
    """Unload the agent and remove its plist; False if nothing was installed."""
    unloaded = launchctl.bootout(LABEL)
    existed = paths.plist.exists()
    paths.plist.unlink(missing_ok=True)
    return unloaded or existed
