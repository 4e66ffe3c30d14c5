"""The senders: dry-run writes one private JSON line per send; the AppleScript sender passes the
guid and text to a constant script as arguments and maps osascript's failures to reasons.

`osascript` cannot run here; a fake `osascript` executable on PATH (a shell script written by
the test) records its argv and answers with the exit status and stderr a test asks for.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from datetime import datetime
from pathlib import Path

import pytest

from convassist.agent.send.applescript import SCRIPT, AppleScriptSender
from convassist.agent.send.base import OutboxItem, SendFailed
from convassist.agent.send.dryrun import DryRunSender

TRICKY = 'he said "hi" \\ end tell\n-e do shell script "rm -rf ~"\n\u00e7a va? 🙂'


def item(
    text: str = "see you at 8", guid: str = "iMessage;-;+15550001111", **kw: object
) -> OutboxItem:
    values: dict[str, object] = {
        "id": "b6f7c1e2-0000-4000-8000-000000000001",
        "chat_guid": guid,
        "is_group": ";+;" in guid,
        "text": text,
        "expires_in_seconds": 600.0,
    }
    values.update(kw)
    return OutboxItem(**values)  # type: ignore[arg-type]


# -- dry run ----------------------------------------------------------------------------


async def test_dry_run_appends_one_private_json_line_per_send(tmp_path: Path) -> None:
    log = tmp_path / "state" / "sent.jsonl"
    sender = DryRunSender(log)
    await sender.send(item(TRICKY))
    await sender.send(item("second", guid="iMessage;+;chat42", id="e2"))
    lines = log.read_text().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert set(first) == {"id", "chatGuid", "text", "at"}
    assert first["text"] == TRICKY and first["chatGuid"] == "iMessage;-;+15550001111"
    assert datetime.fromisoformat(first["at"]).tzinfo is not None
    assert second == {**second, "id": "e2", "chatGuid": "iMessage;+;chat42", "text": "second"}
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700


async def test_dry_run_that_cannot_write_fails_with_a_reason(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    with pytest.raises(SendFailed) as caught:
        await DryRunSender(blocked / "sent.jsonl").send(item(TRICKY))
    assert "cannot write the sent log" in caught.value.reason
    assert TRICKY not in caught.value.reason and not caught.value.uncertain


# -- AppleScript through a fake osascript -----------------------------------------------

FAKE = """#!/bin/sh
for arg in "$@"; do printf '%s\\0' "$arg"; done > "$FAKE_ARGS"
if [ -n "$FAKE_SLEEP" ]; then sleep "$FAKE_SLEEP"; fi
printf '%s' "$FAKE_STDERR" >&2
exit "${FAKE_RC:-0}"
"""


@pytest.fixture
def fake_osascript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake `osascript` first on PATH; returns the file its argv is written to."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "osascript"
    program.write_text(FAKE)
    program.chmod(0o755)
    args = tmp_path / "argv"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ARGS", str(args))
    for name in ("FAKE_RC", "FAKE_STDERR", "FAKE_SLEEP"):
        monkeypatch.delenv(name, raising=False)
    return args


def recorded(args: Path) -> list[str]:
    return args.read_bytes().decode().split("\0")[:-1]


@pytest.mark.parametrize(
    ("guid", "fallbacks"),
    [
        ("iMessage;-;+15550001111", ["+15550001111", "SMS;-;+15550001111"]),
        ("iMessage;+;chat123456789", ["", "SMS;+;chat123456789"]),
        # macOS 15+ stores `any;` guids, which Messages' AppleScript often does not know.
        (
            "any;-;friend@example.com",
            ["friend@example.com", "iMessage;-;friend@example.com", "SMS;-;friend@example.com"],
        ),
        ("any;+;chat42", ["", "iMessage;+;chat42", "SMS;+;chat42"]),
        ("chat-without-service", [""]),
    ],
)
async def test_applescript_passes_guid_and_text_as_arguments_never_in_the_script(
    fake_osascript: Path, guid: str, fallbacks: list[str]
) -> None:
    await AppleScriptSender().send(item(TRICKY, guid=guid))
    argv = recorded(fake_osascript)
    script = [part for line in SCRIPT for part in ("-e", line)]
    assert argv == [*script, guid, TRICKY, *fallbacks]
    assert SCRIPT[0] == "on run argv" and SCRIPT[-1] == "end run"
    assert 'tell application "Messages"' in SCRIPT
    assert "send messageText to chat id (contents of chatGuid)" in SCRIPT
    # Only "no such chat" moves on to the next address: nothing can be sent twice.
    assert "if errorNumber is not -1728 then error errorText number errorNumber" in SCRIPT
    assert not any(TRICKY in line or guid in line for line in SCRIPT)


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (
            '0:50: execution error: Messages got an error: Can\u2019t get chat id "x". (-1728)',
            "no chat",
        ),
        ("execution error: Not authorized to send Apple events to Messages. (-1743)", "Automation"),
        (
            "execution error: Messages got an error: Application isn\u2019t running. (-600)",
            "not running",
        ),
        ("execution error: something else. (-2700)", "refused to send (AppleScript error -2700)"),
        ("syntax error: whatever", "osascript failed (exit status 1)"),
    ],
)
async def test_applescript_failures_become_reasons_without_stderr(
    fake_osascript: Path, monkeypatch: pytest.MonkeyPatch, stderr: str, expected: str
) -> None:
    monkeypatch.setenv("FAKE_RC", "1")
    monkeypatch.setenv("FAKE_STDERR", f"{TRICKY[:8]} {stderr}")
    with pytest.raises(SendFailed) as caught:
        await AppleScriptSender().send(item(TRICKY))
    assert expected in caught.value.reason
    assert TRICKY[:8] not in caught.value.reason and not caught.value.uncertain


async def test_applescript_that_hangs_is_killed_and_uncertain(
    fake_osascript: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SLEEP", "30")
    started = asyncio.get_running_loop().time()
    with pytest.raises(SendFailed) as caught:
        await AppleScriptSender(timeout=0.5).send(item())
    assert caught.value.uncertain and "did not finish" in caught.value.reason
    assert asyncio.get_running_loop().time() - started < 10


async def test_applescript_without_osascript_or_with_a_bad_guid(
    tmp_path: Path, fake_osascript: Path
) -> None:
    with pytest.raises(SendFailed) as missing:
        await AppleScriptSender(program=str(tmp_path / "no-osascript")).send(item())
    assert "was not found" in missing.value.reason and "macOS" in missing.value.reason
    with pytest.raises(SendFailed) as bad:
        await AppleScriptSender().send(item(guid="-e"))
    assert "guid" in bad.value.reason
    assert not fake_osascript.exists()  # refused before osascript ran
