"""Where training job states live: a JSON file per job (no Redis) or a Redis hash.

A state is the job's camelCase dict; `update` changes only a job that is not finished, so a
cancel and a final report cannot both win.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from convassist.ml.training.files import FINISHED, read_json, write_json
from convassist.ml.training.schemas import TrainingJobState

JOB_KEY_PREFIX = "conv-assistant:job:"
STATE_TTL_SECONDS = 30 * 24 * 3600
PUBLIC_FIELDS = frozenset(TrainingJobState.model_fields) | {
    field.alias for field in TrainingJobState.model_fields.values() if field.alias
}
"""The state's keys that the API shows (the rest, such as `heartbeatAt`, is bookkeeping)."""


class StateStore(Protocol):
    """Job states (camelCase dicts); `update` only changes a job that is not finished."""

    async def create(self, job_id: str, state: dict[str, Any]) -> bool: ...

    async def get(self, job_id: str) -> dict[str, Any] | None: ...

    async def update(self, job_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        """The new state; None when the job is unknown or already finished."""
        ...

    async def unfinished(self) -> list[dict[str, Any]]: ...

    async def close(self) -> None: ...


class FileStore:
    """`<root>/<job id>/state.json`, written only by the ML service's event loop."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, job_id: str) -> Path:
        return self.root / job_id / "state.json"

    async def create(self, job_id: str, state: dict[str, Any]) -> bool:
        path = self._path(job_id)
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, state)
        return True

    async def get(self, job_id: str) -> dict[str, Any] | None:
        return read_json(self._path(job_id))

    async def update(self, job_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        state = read_json(self._path(job_id))
        if state is None or state.get("status") in FINISHED:
            return None
        state.update(changes)
        write_json(self._path(job_id), state)
        return state

    async def unfinished(self) -> list[dict[str, Any]]:
        if not self.root.is_dir():
            return []
        states = [read_json(entry / "state.json") for entry in self.root.iterdir()]
        return [s for s in states if s is not None and s.get("status") not in FINISHED]

    async def close(self) -> None:
        return None


class RedisStore:
    """The hash `conv-assistant:job:<id>` (`status`, and the whole state as JSON)."""

    def __init__(self, redis: aioredis.Redis[bytes]) -> None:
        self.redis = redis

    @staticmethod
    def key(job_id: str) -> str:
        return JOB_KEY_PREFIX + job_id

    async def create(self, job_id: str, state: dict[str, Any]) -> bool:
        key = self.key(job_id)
        created = await self.redis.hsetnx(key, "status", str(state["status"]))
        if not created:
            return False
        await self.redis.hset(key, "state", json.dumps(state))
        await self.redis.expire(key, STATE_TTL_SECONDS)
        return True

    async def get(self, job_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(self.key(job_id), "state")
        return dict(json.loads(raw)) if raw else None

    async def update(self, job_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        key = self.key(job_id)
        async with self.redis.pipeline() as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.hget(key, "state")
                    if not raw:
                        return None
                    state: dict[str, Any] = json.loads(raw)
                    if state.get("status") in FINISHED:
                        return None
                    state.update(changes)
                    pipe.multi()
                    pipe.hset(key, mapping={"status": state["status"], "state": json.dumps(state)})
                    await pipe.execute()
                    return state
                except WatchError:
                    continue

    async def unfinished(self) -> list[dict[str, Any]]:
        states = []
        async for key in self.redis.scan_iter(match=JOB_KEY_PREFIX + "*", count=500):
            status = await self.redis.hget(key, "status")
            if status is not None and status.decode() not in FINISHED:
                state = await self.get(key.decode()[len(JOB_KEY_PREFIX) :])
                if state is not None:
                    states.append(state)
        return states

    async def close(self) -> None:
        await self.redis.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose


def public_state(state: dict[str, Any]) -> TrainingJobState:
    return TrainingJobState.model_validate({k: v for k, v in state.items() if k in PUBLIC_FIELDS})
