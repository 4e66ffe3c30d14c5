"""Which adapter the ML service serves: list, activate, deactivate, roll back, follow the
shared choice.

Activation switches the adapter on the inference thread between two requests (never inside
one), so `model_version` becomes `<base version>+<adapter id>` for every request after it,
and response-cache keys (which hash `model_version`) change with it. The choice is saved in
the adapter store: with Redis every other ML service and worker follows it within seconds
(`follow`), and an instance that starts later comes up serving it; without Redis a restarted
service serves the same adapter. The instance that receives an activation checks it (base
model, checksum, a loadable file) before anyone else is told. A rollback activates the
store's `previous` adapter (the one active before the current choice) the same way.
"""

from __future__ import annotations

import asyncio
import contextlib

from redis.exceptions import RedisError

from convassist.core.errors import AppError, Conflict, NotFound
from convassist.core.logging import get_logger
from convassist.ml.adapters.schemas import ActiveAdapter, AdapterOut, AdaptersResponse
from convassist.ml.adapters.store import AdapterInfo, AdapterStore, ChecksumMismatch
from convassist.ml.errors import ModelLoadError
from convassist.ml.generation.manager import LLMManager

log = get_logger("convassist.ml.adapters")


class AdapterService:
    def __init__(self, manager: LLMManager, store: AdapterStore) -> None:
        self.manager = manager
        self.store = store
        self._lock = asyncio.Lock()
        self._refused: str | None = None
        self._follower: asyncio.Task[None] | None = None

    @property
    def active(self) -> str | None:
        backend = self.manager.adapter_backend
        return backend.adapter_id if backend is not None else None

    def state(self) -> ActiveAdapter:
        return ActiveAdapter(active=self.active, model_version=self.manager.model_version)

    async def list(self) -> AdaptersResponse:
        active = self.active
        stored = await asyncio.to_thread(self.store.list)
        previous = await asyncio.to_thread(self.store.previous)
        return AdaptersResponse(
            active=active,
            previous=previous,
            model_version=self.manager.model_version,
            adapters=[
                AdapterOut(
                    id=info.id,
                    job_id=info.job_id,
                    base_model=info.base_model,
                    created_at=info.created_at,
                    metrics=info.metrics,
                    path=str(info.path),
                    size_bytes=info.size_bytes,
                    sha256=info.sha256,
                    active=info.id == active,
                )
                for info in stored
            ],
        )

    async def _switch(self, adapter_id: str) -> str:
        """Serve this adapter here, once it fits the base model and its checksum holds."""
        backend = self.manager.adapter_backend
        if backend is None:
            raise Conflict(
                f"The {self.manager.backend.name} backend cannot serve LoRA adapters.",
                code="adapters_unsupported",
            )
        info: AdapterInfo | None = await asyncio.to_thread(self.store.get, adapter_id)
        if info is None:
            raise NotFound(f"No adapter {adapter_id!r}.")
        if info.base_version != backend.base_version:
            raise Conflict(
                f"Adapter {adapter_id} was trained on {info.base_version}; this service serves "
                f"{backend.base_version}.",
                code="adapter_base_mismatch",
            )
        try:
            path = await asyncio.to_thread(self.store.fetch, info)
        except ChecksumMismatch as exc:
            raise Conflict(str(exc), code="adapter_checksum_mismatch") from None
        try:
            return await self.manager.set_adapter(info.id, path)
        except ModelLoadError as exc:
            raise Conflict(str(exc), code="adapter_unloadable") from None

    async def activate(self, adapter_id: str) -> ActiveAdapter:
        """Serve the adapter here, then make it every instance's choice."""
        async with self._lock:
            version = await self._switch(adapter_id)
            await asyncio.to_thread(self.store.set_active, adapter_id)
            self._refused = None
        log.info("adapter_activated", adapter_id=adapter_id, model_version=version)
        return self.state()

    async def rollback(self) -> ActiveAdapter:
        """Serve the adapter that was active before the current choice again."""
        previous = await asyncio.to_thread(self.store.previous)
        if previous is None:
            raise Conflict(
                "No previous adapter to go back to (the base model was served before); "
                "deactivating serves the base model.",
                code="no_previous_adapter",
            )
        return await self.activate(previous)

    async def deactivate(self) -> ActiveAdapter:
        async with self._lock:
            if self.manager.adapter_backend is not None:
                version = await self.manager.set_adapter(None, None)
                log.info("adapter_deactivated", model_version=version)
            await asyncio.to_thread(self.store.set_active, None)
        return self.state()

    async def follow(self) -> None:
        """Serve the store's active adapter if this instance serves another (at start-up, and
        when another instance changed it). One that does not fit here is logged once."""
        if self.manager.adapter_backend is None:
            return
        async with self._lock:
            try:
                wanted = await asyncio.to_thread(self.store.active)
            except (RedisError, OSError):
                return  # unreachable now: the next tick tries again
            if wanted == self.active or (wanted is not None and wanted == self._refused):
                return
            if wanted is None:
                version = await self.manager.set_adapter(None, None)
                self._refused = None
                log.info("adapter_followed", adapter_id=None, model_version=version)
                return
            try:
                version = await self._switch(wanted)
            except AppError as exc:
                self._refused = wanted
                log.warning("adapter_not_followed", adapter_id=wanted, reason=exc.code)
                return
            except (RedisError, OSError):
                return
            self._refused = None
            log.info("adapter_followed", adapter_id=wanted, model_version=version)

    async def start(self) -> None:
        """Serve the active adapter now, and follow the changes other instances make."""
        if self.manager.adapter_backend is None:
            return  # this backend serves no adapters: nothing to follow
        await self.follow()
        self._follower = asyncio.create_task(self._follow_changes())

    async def _follow_changes(self) -> None:
        async for _ in self.store.changes():
            await self.follow()

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        await asyncio.to_thread(self.store.close)
