"""The dry-run sender: appends what would be sent to a JSON-lines file, sends nothing.

Each line is `{"id", "chatGuid", "text", "at"}`; the file (and its folder) are private (0600,
0700). Owners use it to try sending safely; tests use it as the stand-in for Messages.

`CONVASSIST_AGENT_DRY_RUN_KILL` = `before` | `after` is a crash switch for tests: the sender
SIGKILLs its own process just before or just after writing the line, which is how a test makes
the agent die between recording an attempt, sending, and reporting.
"""

from __future__ import annotations

import json
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

from convassist.agent.send.base import OutboxItem, SendFailed

__all__ = ["KILL_ENV", "DryRunSender"]

KILL_ENV = "CONVASSIST_AGENT_DRY_RUN_KILL"


def _maybe_die(moment: str) -> None:
    if os.environ.get(KILL_ENV) == moment:
        os.kill(os.getpid(), signal.SIGKILL)


class DryRunSender:
    """Writes one JSON line per send to `path`."""

    name = "dry-run"

    def __init__(self, path: Path) -> None:
        self.path = path

    async def send(self, item: OutboxItem) -> None:
        line = json.dumps(
            {
                "id": item.id,
                "chatGuid": item.chat_guid,
                "text": item.text,
                "at": datetime.now(UTC).isoformat(),
            },
            ensure_ascii=False,
        )
        _maybe_die("before")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise SendFailed(f"cannot write the sent log {self.path}: {exc.strerror}") from None
        _maybe_die("after")
