"""The adapter store for these settings: Redis when configured (shared by every instance),
else the data dir's `adapters/` folder."""

from __future__ import annotations

from convassist.ml.adapters.shared import RedisAdapterStore
from convassist.ml.adapters.store import AdapterStore, LocalAdapterStore
from convassist.ml.settings import MLSettings


def make_adapter_store(settings: MLSettings) -> AdapterStore:
    if settings.use_redis:
        assert settings.redis_url is not None
        return RedisAdapterStore(settings.redis_url, settings.adapters_dir)
    return LocalAdapterStore(settings.adapters_dir)
