"""`GET /models`: the manifest, what is on disk, what is served."""

from __future__ import annotations

from fastapi import APIRouter

from convassist.ml.models.manifest import load_manifest
from convassist.ml.models.schemas import ModelInfo, ModelsResponse
from convassist.ml.state import State

router = APIRouter()


@router.get("/models", response_model=ModelsResponse)
async def models(ml: State) -> ModelsResponse:
    """The manifest's models, which are on disk, and which one is being served."""
    version = ml.manager.model_version
    return ModelsResponse(
        loaded=version,
        backend=ml.manager.backend.name,
        models=[
            ModelInfo(
                id=spec.id,
                name=spec.name,
                license=spec.license,
                source=spec.source,
                cached=spec.is_available(ml.settings.models_dir),
                loaded=version.startswith(f"{spec.id}@"),
                description=spec.description,
            )
            for spec in load_manifest().models.values()
        ],
    )
