"""Which adapter the ML service serves: list, activate, deactivate, restore at start-up.

Activation switches the adapter on the inference thread between two requests (never inside
one), so `model_version` becomes `<base version>+<adapter id>` for every request after it,
and response-cache keys (which hash `model_version`) change with it. The choice is saved in
the adapter store, so a restarted service serves the same adapter.
"""

from __future__ import annotations

from convassist.core.errors import Conflict, NotFound
from convassist.core.logging import get_logger
from convassist.ml.adapters.schemas import ActiveAdapter, AdapterOut, AdaptersResponse
from convassist.ml.adapters.store import AdapterInfo, AdapterStore
from convassist.ml.errors import ModelLoadError
from convassist.ml.generation.manager import LLMManager

log = get_logger("convassist.ml.adapters")


class AdapterService:
    def __init__(self, manager: LLMManager, store: AdapterStore) -> None:
        self.manager = manager
        self.store = store

    @property
    def active(self) -> str | None:
        backend = self.manager.adapter_backend
        return backend.adapter_id if backend is not None else None

    def state(self) -> ActiveAdapter:
        return ActiveAdapter(active=self.active, model_version=self.manager.model_version)

    def list(self) -> AdaptersResponse:
        active = self.active
        return AdaptersResponse(
            active=active,
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
                    active=info.id == active,
                )
                for info in self.store.list()
            ],
        )

    def _usable(self, adapter_id: str) -> AdapterInfo:
        backend = self.manager.adapter_backend
        if backend is None:
            raise Conflict(
                f"The {self.manager.backend.name} backend cannot serve LoRA adapters.",
                code="adapters_unsupported",
            )
        info = self.store.get(adapter_id)
        if info is None:
            raise NotFound(f"No adapter {adapter_id!r}.")
        if info.base_version != backend.base_version:
            raise Conflict(
                f"Adapter {adapter_id} was trained on {info.base_version}; this service serves "
                f"{backend.base_version}.",
                code="adapter_base_mismatch",
            )
        return info

    async def activate(self, adapter_id: str) -> ActiveAdapter:
        info = self._usable(adapter_id)
        try:
            version = await self.manager.set_adapter(info.id, info.path)
        except ModelLoadError as exc:
            raise Conflict(str(exc), code="adapter_unloadable") from None
        self.store.set_active(info.id)
        log.info("adapter_activated", adapter_id=info.id, model_version=version)
        return self.state()

    async def deactivate(self) -> ActiveAdapter:
        if self.manager.adapter_backend is not None:
            version = await self.manager.set_adapter(None, None)
            log.info("adapter_deactivated", model_version=version)
        self.store.set_active(None)
        return self.state()

    async def restore(self) -> None:
        """Serve the adapter that was active when the service last ran, if it still fits."""
        adapter_id = self.store.active()
        if adapter_id is None or self.manager.adapter_backend is None:
            return
        try:
            await self.activate(adapter_id)
        except (Conflict, NotFound) as exc:
            log.warning("adapter_not_restored", adapter_id=adapter_id, reason=exc.code)
