"""The Messages sender: AppleScript through `osascript`, addressed to the chat's guid.

The script is a constant; the chat guid and the text reach it as `argv` of its `run` handler,
so no text is ever spliced into AppleScript source (quotes, backslashes, newlines and a
leading `-` all arrive as typed). The guid goes first: it never starts with `-`, so osascript's
option parsing stops before the text. `chat id` works for individual and group chats alike.

Newer macOS versions store chat guids as `any;-;<handle>` / `any;+;chat…`, which Messages'
AppleScript often does not know (error -1728). The script therefore tries the guid as stored,
then the same chat under the `iMessage` and `SMS` services, and for an individual chat lastly
the handle as a participant of the iMessage account. Only "no such chat" (-1728) moves on to
the next form, so nothing is ever sent twice; any other error ends the script.

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
    "set messageText to item 2 of argv",
    "set participantHandle to item 3 of argv",
    "set chatIds to {item 1 of argv}",
    "if (count of argv) > 3 then set chatIds to chatIds & (items 4 thru -1 of argv)",
    'tell application "Messages"',
    "repeat with chatGuid in chatIds",
    "try",
    "send messageText to chat id (contents of chatGuid)",
    "return",
    "on error errorText number errorNumber",
    "if errorNumber is not -1728 then error errorText number errorNumber",
    "end try",
    "end repeat",
    'if participantHandle is "" then error "no such chat" number -1728',
    "set iMessageAccount to 1st account whose service type = iMessage",
    "send messageText to participant participantHandle of iMessageAccount",
    "end tell",
    "end run",
)
_SERVICES = ("iMessage", "SMS")
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


def chat_addresses(chat_guid: str) -> tuple[list[str], str]:
    """The chat ids to try after the stored guid, and the participant handle ("" for a
    group) to fall back on: `service;-;handle` or `service;+;chat…` under each service."""
    service, separator, identifier = [*chat_guid.split(";", 2), "", ""][:3]
    if separator not in ("-", "+") or not identifier:
        return [], ""
    others = [f"{other};{separator};{identifier}" for other in _SERVICES if other != service]
    return others, identifier if separator == "-" else ""


def osascript_argv(program: str, chat_guid: str, text: str) -> list[str]:
    """The command line: the constant script, then as arguments the guid, the text, the
    participant handle and the other chat ids to try."""
    script = [part for line in SCRIPT for part in ("-e", line)]
    others, handle = chat_addresses(chat_guid)
    return [program, *script, chat_guid, text, handle, *others]


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
