"""Response bodies of `/adapters`."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from convassist.core.schemas import APIModel


class AdapterOut(APIModel):
    id: str
    job_id: str
    base_model: str
    created_at: str
    metrics: dict[str, Any]
    path: str
    size_bytes: int
    sha256: str | None = Field(
        None, description="SHA-256 of the GGUF file, checked before each use (hex)."
    )
    active: bool


class AdaptersResponse(APIModel):
    active: str | None
    previous: str | None = Field(
        description="The adapter active before the current choice: what a rollback serves."
    )
    model_version: str
    adapters: list[AdapterOut]


class ActiveAdapter(APIModel):
    active: str | None
    model_version: str
