"""Errors the agent reports to the user when chat.db (or the AddressBook) cannot be read.

Each carries a message meant to be printed as is and a `sysexits`-style `exit_code` for the
CLI. Raising one never changes the agent's sync state: the reader fails before returning rows.
"""

from __future__ import annotations

import sys
from pathlib import Path


class AgentError(Exception):
    """A problem the agent explains to the user and exits on (non-zero)."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ChatDBError(AgentError):
    """chat.db could not be read."""


class ChatDBNotFound(ChatDBError):
    exit_code = 66  # EX_NOINPUT

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"Messages database not found at {path}. Is Messages set up on this Mac "
            "(open Messages.app once), or is the path wrong (--db, CONVASSIST_AGENT_DB_PATH)?"
        )


class ChatDBPermissionDenied(ChatDBError):
    exit_code = 77  # EX_NOPERM

    def __init__(self, path: Path, reason: str = "") -> None:
        detail = f" ({reason})" if reason else ""
        super().__init__(
            f"Permission denied reading {path}{detail}. macOS protects ~/Library/Messages: give "
            "Full Disk Access to the program that runs the agent (System Settings > Privacy & "
            f"Security > Full Disk Access): the Python interpreter {sys.executable}, or the "
            "terminal app (Terminal, iTerm) you start it from. Then quit and reopen that program."
        )


class ChatDBLocked(ChatDBError):
    exit_code = 75  # EX_TEMPFAIL

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"The Messages database {path} is locked by another program; the read was "
            "abandoned and will be retried on the next sync."
        )


class ChatDBCorrupt(ChatDBError):
    exit_code = 65  # EX_DATAERR

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"{path} is not a readable Messages database: {reason}. Check the path; if it is "
            "the real chat.db, Messages itself may need to repair it (quit and reopen Messages)."
        )
