"""How a child process ended, in words (asyncio and subprocess report a signal as -N)."""

from __future__ import annotations

import signal


def signal_name(returncode: int | None) -> str | None:
    """`SIGSEGV` for a child killed by a signal; None for one that exited or still runs."""
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def exit_reason(returncode: int | None) -> str:
    """`exited with code 3`, `killed by SIGSEGV` or `still running`."""
    if returncode is None:
        return "still running"
    name = signal_name(returncode)
    return f"killed by {name}" if name else f"exited with code {returncode}"
