"""The Messages sender: AppleScript through `osascript`, addressed to the chat's guid.

The script is a constant; the chat guid and the text reach it as `argv` of its `run` handler,
so no text is ever spliced into AppleScript source (quotes, backslashes, newlines and a
leading `-` all arrive as typed). The guid goes first: it never starts with `-`, so osascript's
option parsing stops before the text. `chat id` works for individual and group chats alike.

osascript's failures are mapped to reasons from the last AppleScript error number in its
stderr; stderr itself is never passed on (it can quote the script's arguments).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal

from convassist.agent.send.base import OutboxItem, SendFailed

__all__ = ["SCRIPT", "AppleScriptSender", "osascript_argv"]

SCRIPT = (
    "on run argv",
    "set chatGuid to item 1 of argv",
    "set messageText to item 2 of argv",
    'tell application "Messages"',
    "send messageText to chat id chatGuid",
    "end tell",
    "end run",
)
_ERROR_NUMBER = re.compile(r"\((-\d+)\)")
_REASONS = {
    -1728: "Messages has no chat with this guid",
    -1743: (
        "not allowed to control Messages: allow the agent under System Settings > Privacy & "
        "Security > Automation"
    ),
    -600: "Messages is not running and could not be started",
    -1712: "Messages did not answer in time",
}


def osascript_argv(program: str, chat_guid: str, text: str) -> list[str]:
    """The command line: the constant script, then the guid and the text as arguments."""
    script = [part for line in SCRIPT for part in ("-e", line)]
    return [program, *script, chat_guid, text]


def _reason(returncode: int, stderr: bytes) -> str:
    numbers = _ERROR_NUMBER.findall(stderr.decode(errors="replace"))
    if not numbers:
        return f"osascript failed (exit status {returncode})"
    number = int(numbers[-1])
    return f"{_REASONS.get(number, 'Messages refused to send')} (AppleScript error {number})"


class AppleScriptSender:
    """Sends through the Messages app of the logged-in user (macOS only)."""

    name = "messages"

    def __init__(self, program: str = "osascript", timeout: float = 30.0) -> None:
        self.program = program
        self.timeout = timeout

    async def send(self, item: OutboxItem) -> None:
        if not item.chat_guid or item.chat_guid.startswith("-"):
            raise SendFailed("the chat guid is not one Messages can address")
        try:
            process = await asyncio.create_subprocess_exec(
                *osascript_argv(self.program, item.chat_guid, item.text),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group, killed whole on a timeout
            )
        except FileNotFoundError:
            raise SendFailed(
                f"{self.program} was not found: sending through Messages needs macOS"
            ) from None
        except OSError as exc:
            raise SendFailed(f"cannot start {self.program}: {exc.strerror or exc}") from None
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), self.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            raise SendFailed(
                f"osascript did not finish within {self.timeout:.0f} s", uncertain=True
            ) from None
        if process.returncode != 0:
            raise SendFailed(_reason(process.returncode or 0, stderr))
