"""The supervisor of `convassist up`, with real child processes that really die."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from convassist.cli.supervisor import Backoff, Component, Supervisor
from convassist.core.processes import exit_reason

FAST = Backoff(first=0.05, cap=0.2, stable=5.0, give_up_after=4)


def child(name: str, code: str) -> Component:
    return Component(name, (sys.executable, "-c", code), "white")


def records_start(path: Path, then: str) -> str:
    """A child that appends its pid to `path`, then runs `then`."""
    return (
        "import os, signal, sys, time\n"
        f"open({str(path)!r}, 'a').write(f'{{os.getpid()}}\\n')\n"
        f"{then}\n"
    )


def starts(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_for(condition: Callable[[], object], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def supervisor(parts: list[Component], backoff: Backoff = FAST) -> tuple[Supervisor, io.StringIO]:
    buffer = io.StringIO()
    out = Console(file=buffer, width=300, highlight=False)
    return Supervisor(parts, backoff=backoff, stop_timeout=5, out=out), buffer


def test_backoff_doubles_to_its_cap() -> None:
    backoff = Backoff(first=1, cap=30)
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_exit_reason_names_the_code_or_the_signal() -> None:
    assert exit_reason(3) == "exited with code 3"
    assert exit_reason(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert exit_reason(-signal.SIGKILL) == "killed by SIGKILL"


@pytest.mark.parametrize(
    ("death", "reason"),
    [
        ("time.sleep(0.1); sys.exit(3)", "exited with code 3"),
        ("time.sleep(0.1); os.kill(os.getpid(), signal.SIGSEGV)", "killed by SIGSEGV"),
    ],
)
async def test_a_dying_component_is_restarted_and_the_others_keep_running(
    tmp_path: Path, death: str, reason: str
) -> None:
    dying, steady = tmp_path / "dying", tmp_path / "steady"
    sup, out = supervisor(
        [
            child("dying", records_start(dying, death)),
            child("steady", records_start(steady, "time.sleep(120)")),
        ]
    )
    task = asyncio.create_task(sup.run())
    await wait_for(lambda: len(starts(dying)) >= 3)
    sup.stop()
    assert await task == 0
    log = out.getvalue()
    assert f"dying {reason} unexpectedly; restarting it in 0.05 s (quick failure 1 of 4)" in log
    assert "restarting it in 0.1 s (quick failure 2 of 4)" in log
    assert len(set(starts(dying))) == len(starts(dying))  # a new process each time
    assert len(starts(steady)) == 1  # never restarted, never stopped until the end
    assert not alive(starts(steady)[0])


async def test_too_many_quick_failures_give_up_and_stop_everything(tmp_path: Path) -> None:
    steady = tmp_path / "steady"
    sup, out = supervisor(
        [
            child("broken", "print('cannot start: no model', flush=True); raise SystemExit(1)"),
            child("steady", records_start(steady, "time.sleep(120)")),
        ]
    )
    assert await asyncio.wait_for(sup.run(), 30) == 1
    log = out.getvalue()
    assert log.count("broken | cannot start: no model") == 4
    assert "broken exited with code 1; it failed 4 times in a row" in log
    assert "Giving up and stopping everything" in log
    assert sup.gave_up == "broken"
    assert not alive(starts(steady)[0])


async def test_a_run_that_stayed_up_resets_the_count(tmp_path: Path) -> None:
    flaky = tmp_path / "flaky"
    backoff = Backoff(first=0.05, cap=0.2, stable=0.3, give_up_after=2)
    sup, out = supervisor(
        [child("flaky", records_start(flaky, "time.sleep(0.4); sys.exit(2)"))], backoff
    )
    task = asyncio.create_task(sup.run())
    await wait_for(lambda: len(starts(flaky)) >= 4)
    sup.stop()
    assert await task == 0
    assert "Giving up" not in out.getvalue()
    assert out.getvalue().count("(quick failure 1 of 2)") >= 3


async def test_sigterm_stops_every_component(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    sup, out = supervisor(
        [
            child("a", records_start(a, "time.sleep(120)")),
            # Exits cleanly on SIGTERM only after a moment: the supervisor waits for it.
            child(
                "b",
                records_start(
                    b,
                    "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.3), sys.exit(0)))\n"
                    "time.sleep(120)",
                ),
            ),
        ]
    )
    task = asyncio.create_task(sup.run())
    await wait_for(lambda: starts(a) and starts(b))
    await asyncio.sleep(0.3)  # let b install its handler
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(task, 20) == 0
    assert not alive(starts(a)[0]) and not alive(starts(b)[0])
    assert "unexpectedly" not in out.getvalue()
    assert len(starts(a)) == len(starts(b)) == 1


async def test_a_child_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    stubborn = tmp_path / "stubborn"
    sup, out = supervisor(
        [
            child(
                "stubborn",
                records_start(
                    stubborn, "signal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(120)"
                ),
            )
        ]
    )
    sup.stop_timeout = 0.5
    task = asyncio.create_task(sup.run())
    await wait_for(lambda: starts(stubborn))
    await asyncio.sleep(0.3)
    sup.stop()
    assert await asyncio.wait_for(task, 20) == 0
    assert "stubborn did not stop in 0.5 s; killing it." in out.getvalue()
    assert not alive(starts(stubborn)[0])


async def test_a_huge_line_does_not_stall_the_output(tmp_path: Path) -> None:
    done = tmp_path / "done"
    code = (
        "import sys\n"
        "sys.stdout.write('x' * 3_000_000 + '\\n'); sys.stdout.write('after\\n')\n"
        "sys.stdout.flush()\n"
        f"open({str(done)!r}, 'w').close()\n"
        "import time; time.sleep(120)"
    )
    sup, out = supervisor([child("chatty", code)])
    task = asyncio.create_task(sup.run())
    await wait_for(lambda: done.exists() and "chatty | after" in out.getvalue())
    sup.stop()
    assert await task == 0
    assert "(a line over 1,048,576 bytes left out)" in out.getvalue()
