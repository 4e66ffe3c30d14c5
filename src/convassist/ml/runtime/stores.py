"""Where job records live: `LocalStore` (this process; optionally one file per job) or Redis.

`update` applies changes only to a job that is not finished (and, with `only_if`, only in
one of those statuses) and answers the new record, or None when it changed nothing: that is
how a claim, a cancel and a final report each have one winner.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from convassist.ml.runtime.records import JobRecord, now

R = TypeVar("R", bound=JobRecord)
RECORD_FILE = "job.json"


class RecordStore(Protocol[R]):
    async def create(self, record: R, ttl: int) -> bool:
        """Store a new record; False when the id exists."""
        ...

    async def get(self, job_id: str) -> R | None: ...

    async def update(
        self, job_id: str, changes: dict[str, Any], only_if: frozenset[str] | None = None
    ) -> R | None: ...

    async def held(self) -> list[R]:
        """Unfinished records with a heartbeat: the ones the sweep judges."""
        ...

    async def close(self) -> None: ...


def _changed(record: R, changes: dict[str, Any], only_if: frozenset[str] | None) -> R | None:
    if record.finished or (only_if is not None and record.status not in only_if):
        return None
    return type(record).model_validate({**record.model_dump(), **changes})


class LocalStore(Generic[R]):
    """Records in this process; with `root`, also `<root>/<job id>/job.json` (survives restarts).

    Only the owning process writes, from its event loop. Finished records leave memory after
    `ttl` seconds (their files stay).
    """

    def __init__(self, model: type[R], root: Path | None = None) -> None:
        self.model = model
        self.root = root
        self._records: dict[str, tuple[R, float]] = {}
        self._done_on_disk: set[str] = set()  # finished records of earlier instances

    def _path(self, job_id: str) -> Path:
        assert self.root is not None
        return self.root / job_id / RECORD_FILE

    def _read(self, job_id: str) -> R | None:
        if self.root is None:
            return None
        with contextlib.suppress(FileNotFoundError, ValueError):
            return self.model.model_validate_json(self._path(job_id).read_bytes())
        return None

    def _write(self, record: R, ttl: float) -> None:
        self._records[record.job_id] = (record, ttl)
        if self.root is not None:
            path = self._path(record.job_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(record.model_dump_json(), encoding="utf-8")
            tmp.replace(path)  # readers see the old record or the new one

    def _prune(self) -> None:
        at = now()
        for job_id, (record, ttl) in list(self._records.items()):
            done = record.completed_at
            if done is not None and (at - done).total_seconds() > ttl:
                del self._records[job_id]

    async def create(self, record: R, ttl: int) -> bool:
        self._prune()
        if await self.get(record.job_id) is not None:
            return False
        self._write(record, ttl)
        return True

    async def get(self, job_id: str) -> R | None:
        if job_id in self._records:
            return self._records[job_id][0]
        return self._read(job_id)

    async def update(
        self, job_id: str, changes: dict[str, Any], only_if: frozenset[str] | None = None
    ) -> R | None:
        current = await self.get(job_id)
        record = _changed(current, changes, only_if) if current is not None else None
        if record is not None:
            self._write(record, self._records.get(job_id, (record, 0.0))[1])
        return record

    async def held(self) -> list[R]:
        records = {job_id: record for job_id, (record, _) in self._records.items()}
        if self.root is not None and self.root.is_dir():
            for entry in self.root.iterdir():
                if entry.name in records or entry.name in self._done_on_disk:
                    continue
                if (record := self._read(entry.name)) is not None:
                    records[entry.name] = record
                    if record.finished:
                        self._done_on_disk.add(entry.name)
        return [r for r in records.values() if not r.finished and r.heartbeat_at is not None]

    async def close(self) -> None:
        return None


class RedisStore(Generic[R]):
    """The hash `conv-assistant:job:<kind>:<id>` (`status`, and `record` as JSON), and the set
    `conv-assistant:jobs-held:<kind>` of the ids that are running (for the sweep)."""

    def __init__(self, model: type[R], redis: aioredis.Redis[bytes], kind: str) -> None:
        self.model = model
        self.redis = redis
        self.prefix = f"conv-assistant:job:{kind}:"
        self.held_key = f"conv-assistant:jobs-held:{kind}"

    def key(self, job_id: str) -> str:
        return self.prefix + job_id

    async def create(self, record: R, ttl: int) -> bool:
        key = self.key(record.job_id)
        if not await self.redis.hsetnx(key, "status", record.status):
            return False
        await self.redis.hset(key, "record", record.model_dump_json())
        await self.redis.expire(key, ttl)
        return True

    async def get(self, job_id: str) -> R | None:
        raw = await self.redis.hget(self.key(job_id), "record")
        return self.model.model_validate_json(raw) if raw else None

    async def update(
        self, job_id: str, changes: dict[str, Any], only_if: frozenset[str] | None = None
    ) -> R | None:
        key = self.key(job_id)
        async with self.redis.pipeline() as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.hget(key, "record")
                    current = self.model.model_validate_json(raw) if raw else None
                    record = _changed(current, changes, only_if) if current else None
                    if record is None:
                        return None
                    pipe.multi()
                    pipe.hset(
                        key, mapping={"status": record.status, "record": record.model_dump_json()}
                    )
                    if record.finished:
                        pipe.srem(self.held_key, job_id)
                    elif record.heartbeat_at is not None:
                        pipe.sadd(self.held_key, job_id)
                    await pipe.execute()
                    return record
                except WatchError:
                    continue

    async def held(self) -> list[R]:
        records = []
        for raw_id in await self.redis.smembers(self.held_key):
            job_id = raw_id.decode()
            record = await self.get(job_id)
            if record is None or record.finished:
                await self.redis.srem(self.held_key, job_id)
            elif record.heartbeat_at is not None:
                records.append(record)
        return records

    async def close(self) -> None:
        await self.redis.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
