"""`convassist up`: run the server, the ML service and (with Redis) a worker together.

Each component runs as a child process; its output is prefixed with the component's name.
Ctrl-C (or SIGTERM) stops all of them; if one exits, the others are stopped too.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from dataclasses import dataclass

from rich.console import Console
from rich.text import Text

from convassist.core.settings import CommonSettings

console = Console(stderr=True, highlight=False)


@dataclass(frozen=True)
class Component:
    name: str
    args: tuple[str, ...]
    style: str


def components(settings: CommonSettings) -> list[Component]:
    python = sys.executable
    parts = [
        Component("ml", (python, "-m", "convassist", "ml"), "magenta"),
        Component("server", (python, "-m", "convassist", "server"), "cyan"),
    ]
    if settings.redis_url:
        parts.append(Component("worker", (python, "-m", "convassist", "worker"), "yellow"))
    return parts


async def _pump(component: Component, stream: asyncio.StreamReader) -> None:
    width = 7
    prefix = Text(f"{component.name:<{width}}| ", style=component.style)
    while line := await stream.readline():
        console.print(prefix + Text(line.decode(errors="replace").rstrip("\n")))


async def _supervise(parts: list[Component]) -> int:
    processes: dict[str, asyncio.subprocess.Process] = {}
    pumps = []
    for part in parts:
        process = await asyncio.create_subprocess_exec(
            *part.args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        assert process.stdout is not None
        processes[part.name] = process
        pumps.append(asyncio.create_task(_pump(part, process.stdout)))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    waiters = {asyncio.create_task(p.wait()): name for name, p in processes.items()}
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({*waiters, stopper}, return_when=asyncio.FIRST_COMPLETED)
    exit_code = 0
    for task in done:
        if task in waiters:
            exit_code = task.result() or 1
            console.print(f"[bold red]{waiters[task]} exited ({task.result()}); stopping.[/]")
    for process in processes.values():
        if process.returncode is None:
            process.terminate()
    try:
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes.values())), 15)
    except TimeoutError:
        for process in processes.values():
            if process.returncode is None:
                process.kill()
    await asyncio.gather(*pumps, return_exceptions=True)
    stopper.cancel()
    return exit_code if not stop.is_set() else 0


def run_system() -> int:
    settings = CommonSettings()
    parts = components(settings)
    names = ", ".join(p.name for p in parts)
    console.print(f"Starting {names}. Press Ctrl-C to stop.")
    return asyncio.run(_supervise(parts))
