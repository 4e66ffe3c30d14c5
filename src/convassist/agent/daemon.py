"""`convassist agent run`: sync now, then on every poll interval and soon after chat.db changes.

Changes are noticed by a stat poll (every second) of `chat.db` and `chat.db-wal`, comparing
size and mtime: two `stat` calls a second, no extra thread, and it needs no more permission
than reading chat.db does. A change starts a sync once the files have been quiet for
`debounce` seconds (at most `MAX_DELAY` after the first change); the poll interval stays as
the safety net. After a failed sync the next attempt waits `ERROR_DELAY` (or the poll
interval, if shorter) whatever the files do. `poke()` (the outbox loop sent a message) counts
as a change. SIGTERM and SIGINT stop the loop; a sync in progress stops between batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from convassist.agent.errors import AgentError
from convassist.agent.sync import SyncReport
from convassist.core.logging import get_logger

__all__ = ["ChangeWatcher", "Daemon", "install_stop_signals"]

log = get_logger(__name__)

MAX_DELAY = 30.0
ERROR_DELAY = 60.0

Stamp = tuple[tuple[int, int] | None, ...]


class ChangeWatcher:
    """Notices writes to chat.db or its write-ahead log by their (size, mtime)."""

    def __init__(self, db_path: Path) -> None:
        self.paths = (db_path, db_path.with_name(db_path.name + "-wal"))
        self._last = self._stamp()

    def _stamp(self) -> Stamp:
        stamps: list[tuple[int, int] | None] = []
        for path in self.paths:
            try:
                info = os.stat(path)
            except OSError:
                stamps.append(None)
            else:
                stamps.append((info.st_size, info.st_mtime_ns))
        return tuple(stamps)

    def changed(self) -> bool:
        """Whether either file changed since the last call."""
        current = self._stamp()
        if current == self._last:
            return False
        self._last = current
        return True


class Daemon:
    """The loop of `agent run`; `sync` runs one sync and raises `AgentError` on failure."""

    def __init__(
        self,
        sync: Callable[[], Awaitable[SyncReport]],
        watcher: ChangeWatcher,
        *,
        poll_interval: float,
        debounce: float,
        stop: asyncio.Event,
        tick: float = 1.0,
        on_error: Callable[[AgentError], None] | None = None,
    ) -> None:
        self.sync = sync
        self.watcher = watcher
        self.poll_interval = poll_interval
        self.debounce = debounce
        self.stop = stop
        self.tick = tick
        self.on_error = on_error
        self.runs = 0
        self._poked = False

    def poke(self) -> None:
        """Sync soon, as after a change of chat.db (a message was just sent)."""
        self._poked = True

    async def run(self) -> None:
        next_poll = time.monotonic()  # sync once right away
        blocked_until = 0.0
        first_change: float | None = None
        last_change = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            due = now >= next_poll
            settled = (
                first_change is not None
                and now >= blocked_until
                and (now - last_change >= self.debounce or now - first_change >= MAX_DELAY)
            )
            if due or settled:
                reason = "poll" if due else "change"
                first_change = None
                try:
                    await self._sync_once(reason)
                except AgentError as exc:
                    blocked_until = time.monotonic() + min(ERROR_DELAY, self.poll_interval)
                    next_poll = blocked_until
                    if self.on_error is not None:
                        self.on_error(exc)
                else:
                    next_poll = time.monotonic() + self.poll_interval
                self.watcher.changed()  # what the sync itself saw is not a new change
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=self.tick)
            if self.watcher.changed() or self._poked:
                self._poked = False
                last_change = time.monotonic()
                first_change = first_change if first_change is not None else last_change
        log.info("agent.daemon.stopped", syncs=self.runs)

    async def _sync_once(self, reason: str) -> None:
        self.runs += 1
        log.info("agent.daemon.sync", reason=reason)
        report = await self.sync()
        log.info(
            "agent.daemon.synced",
            sent=report.counts.sent,
            inserted=report.counts.inserted,
            updated=report.counts.updated,
            seconds=round(report.duration_s, 3),
        )


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set `stop` (the running loop must be the current one)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
