"""Full Disk Access: which program macOS wants it granted to, named exactly.

macOS (TCC) checks the program that opens `~/Library/Messages/chat.db`. Run from a terminal,
that is the terminal app (access granted to it covers what it starts); run by launchd (the
LaunchAgent), it is the Python interpreter itself, resolved through the virtualenv's symlinks
(framework builds of Python run `Python.app` inside the framework, so that app is named too).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from convassist.agent.errors import ChatDBPermissionDenied

__all__ = [
    "FullDiskAccessMissing",
    "agent_programs",
    "full_disk_access_message",
    "terminal_app",
]

LAUNCHD_LABEL_ENV = "XPC_SERVICE_NAME"  # set by launchd for the jobs it starts
SETTINGS_PATH = "System Settings > Privacy & Security > Full Disk Access"
_TERMINALS = {
    "Apple_Terminal": "Terminal (/System/Applications/Utilities/Terminal.app)",
    "iTerm.app": "iTerm (/Applications/iTerm.app)",
    "vscode": "Visual Studio Code (/Applications/Visual Studio Code.app)",
    "WarpTerminal": "Warp (/Applications/Warp.app)",
    "WezTerm": "WezTerm (/Applications/WezTerm.app)",
    "ghostty": "Ghostty (/Applications/Ghostty.app)",
    "Hyper": "Hyper (/Applications/Hyper.app)",
    "Tabby": "Tabby (/Applications/Tabby.app)",
}


def agent_programs(executable: str | None = None) -> list[Path]:
    """The interpreter running the agent, resolved; plus its framework `Python.app` if any."""
    exe = Path(executable or sys.executable).resolve()
    programs = [exe]
    # <framework>/Versions/3.X/bin/python3.X runs <framework>/Versions/3.X/Resources/Python.app
    app = exe.parent.parent / "Resources" / "Python.app"
    if app.is_dir():
        programs.append(app)
    return programs


def terminal_app(environ: dict[str, str] | None = None) -> str | None:
    """The terminal application this process was started from, if it is one we know."""
    env = os.environ if environ is None else environ
    if env.get(LAUNCHD_LABEL_ENV, "").startswith("io.convassist."):
        return None
    program = env.get("TERM_PROGRAM")
    if not program:
        return None
    return _TERMINALS.get(program, program)


def full_disk_access_message(
    path: Path, *, executable: str | None = None, environ: dict[str, str] | None = None
) -> str:
    """What to grant Full Disk Access to, for the way the agent is running now."""
    programs = " and ".join(str(p) for p in agent_programs(executable))
    terminal = terminal_app(environ)
    if terminal:
        target = (
            f"to {terminal}, the terminal you run the agent from (the background agent needs it "
            f"for the Python interpreter {programs})"
        )
    else:
        target = f"to the Python interpreter {programs}"
    return (
        f"Permission denied reading {path}: macOS protects the Messages database. Grant Full Disk "
        f"Access {target} in {SETTINGS_PATH} (use + and press Cmd-Shift-G to type the path), then "
        "quit and reopen it."
    )


class FullDiskAccessMissing(ChatDBPermissionDenied):
    """chat.db is unreadable for lack of Full Disk Access; names the program to grant it to."""

    def __init__(self, path: Path, *, executable: str | None = None) -> None:
        super().__init__(path)
        self.message = full_disk_access_message(path, executable=executable)
        self.args = (self.message,)
