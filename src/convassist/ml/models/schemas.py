"""Response bodies of `GET /models`."""

from __future__ import annotations

from pydantic import Field

from convassist.core.schemas import APIModel


class ModelInfo(APIModel):
    id: str
    name: str
    license: str
    source: str
    cached: bool
    loaded: bool
    description: str


class ModelsResponse(APIModel):
    loaded: str = Field(description="model_version of the model being served.")
    backend: str
    models: list[ModelInfo]
