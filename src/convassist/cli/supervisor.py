"""`convassist up`: run the server, the ML service and (with Redis) a worker together.

Each component runs as a child process in its own process group (a terminal's Ctrl-C reaches
only `up`, which then stops the children itself); its output is prefixed with its name. A
component that dies unexpectedly is restarted with exponential backoff while the others keep
running; after too many quick failures in a row `up` gives up and stops everything.
Ctrl-C, SIGTERM or SIGHUP stops all of them.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.text import Text

from convassist.core.processes import exit_reason

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PREFIX_WIDTH = 7
LINE_LIMIT = 1024 * 1024

console = Console(stderr=True, highlight=False)


@dataclass(frozen=True)
class Component:
    name: str
    args: tuple[str, ...]
    style: str


@dataclass(frozen=True)
class Backoff:
    """Restart delays: `first` seconds, doubling up to `cap`.

    A run that lasted `stable` seconds resets the count; `give_up_after` quick failures in a
    row (each run shorter than `stable`) stop the whole system.
    """

    first: float = 1.0
    cap: float = 30.0
    stable: float = 60.0
    give_up_after: int = 5

    def delay(self, failures: int) -> float:
        """Seconds to wait before the restart that follows the `failures`-th quick failure."""
        return float(min(self.cap, self.first * 2 ** max(0, failures - 1)))


class Supervisor:
    """Runs components until stopped, restarting any that dies (see `Backoff`)."""

    def __init__(
        self,
        parts: Sequence[Component],
        *,
        env: Mapping[str, str] | None = None,
        backoff: Backoff | None = None,
        stop_timeout: float = 15.0,
        out: Console | None = None,
    ) -> None:
        self.parts = list(parts)
        self.env = dict(env) if env is not None else None
        self.backoff = backoff or Backoff()
        self.stop_timeout = stop_timeout
        self.out = out or console
        self.stopping = asyncio.Event()
        self.gave_up: str | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> int:
        """Run until a stop signal (0) or until a component keeps failing (1)."""
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self.stop)
        try:
            await asyncio.gather(*(self._keep_running(part) for part in self.parts))
        finally:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
            await self._drain_pumps()
        return 1 if self.gave_up else 0

    async def _keep_running(self, part: Component) -> None:
        failures = 0
        while not self.stopping.is_set():
            started = time.monotonic()
            returncode = await self._run_once(part)
            if returncode is None:
                return
            failures = 1 if time.monotonic() - started >= self.backoff.stable else failures + 1
            reason = exit_reason(returncode)
            if failures >= self.backoff.give_up_after:
                self.gave_up = part.name
                self._say(
                    f"{part.name} {reason}; it failed {failures} times in a row, each within "
                    f"{self.backoff.stable:g} s of starting. Giving up and stopping everything: "
                    f"its last lines above say why.",
                    "bold red",
                )
                self.stop()
                return
            delay = self.backoff.delay(failures)
            self._say(
                f"{part.name} {reason} unexpectedly; restarting it in {delay:g} s "
                f"(quick failure {failures} of {self.backoff.give_up_after}).",
                "bold yellow",
            )
            try:
                await asyncio.wait_for(self.stopping.wait(), delay)
            except TimeoutError:
                continue

    async def _run_once(self, part: Component) -> int | None:
        """Run one life of the component: its exit status, or None when stopped by us."""
        process = await asyncio.create_subprocess_exec(
            *part.args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            process_group=0,
            limit=LINE_LIMIT,
        )
        assert process.stdout is not None
        pump = asyncio.create_task(self._pump(part, process.stdout))
        self._pumps.add(pump)
        pump.add_done_callback(self._pumps.discard)
        self._say(f"{part.name} started (pid {process.pid}).", "dim")
        exited = asyncio.create_task(process.wait())
        stopping = asyncio.create_task(self.stopping.wait())
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not self.stopping.is_set():
            return await exited
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(asyncio.shield(exited), self.stop_timeout)
            except TimeoutError:
                self._say(
                    f"{part.name} did not stop in {self.stop_timeout:g} s; killing it.", "red"
                )
                process.kill()
        await exited
        return None

    async def _pump(self, part: Component, stream: asyncio.StreamReader) -> None:
        prefix = Text(f"{part.name:<{PREFIX_WIDTH}}| ", style=part.style)
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # longer than LINE_LIMIT: dropped by the reader, keep pumping
                self.out.print(prefix + Text(f"(a line over {LINE_LIMIT:,} bytes left out)"))
                continue
            if not line:
                return
            self.out.print(prefix + Text(line.decode(errors="replace").rstrip("\n")))

    async def _drain_pumps(self) -> None:
        """Let the output of stopped children finish (a grandchild may hold the pipe: cap it)."""
        if not self._pumps:
            return
        _, pending = await asyncio.wait(set(self._pumps), timeout=2)
        for task in pending:
            task.cancel()

    def _say(self, message: str, style: str) -> None:
        self.out.print(Text(f"{'up':<{PREFIX_WIDTH}}| ", style="bold") + Text(message, style=style))
