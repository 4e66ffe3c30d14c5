"""Response bodies of `GET /health`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from convassist import ML_SERVICE_ID

HealthStatus = Literal["ok", "degraded"]


class Liveness(BaseModel):
    """`GET /health` without the token: up or not, and which service this is."""

    status: HealthStatus
    service: str = ML_SERVICE_ID  # a client pointed here by mistake can say what it reached


class LlamaHealth(BaseModel):
    """The llama.cpp configuration served with (`ml/models/native.py`) and its start-up probe."""

    config: Literal["default", "safe"]
    extra_bufts: bool
    reason: str
    probe: str = Field(description="ok, fell back after <signal>, or why the probe failed.")


class HealthResponse(BaseModel):
    """snake_case keys, like the seed's `model_version`."""

    status: HealthStatus
    model_loaded: bool
    model_version: str
    backend: str
    redis: Literal["ok", "down", "disabled"]
    cache: str
    jobs: str
    queue_depth: int | None
    in_flight: int
    llama: LlamaHealth | None = None
    """None with the openai backend."""
