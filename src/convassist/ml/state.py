"""What the endpoints share: the services, kept on `app.state.ml`, and the `State` dependency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from convassist.ml.adapters.service import AdapterService
from convassist.ml.generation.cache import ResponseCache
from convassist.ml.generation.manager import LLMManager
from convassist.ml.generation.queue import GenerationJobs
from convassist.ml.generation.service import GenerationService
from convassist.ml.metrics import Metrics
from convassist.ml.settings import MLSettings
from convassist.ml.training.service import TrainingJobs


@dataclass
class MLState:
    """Everything the endpoints use, kept on `app.state.ml`."""

    settings: MLSettings
    manager: LLMManager
    cache: ResponseCache
    service: GenerationService
    jobs: GenerationJobs
    metrics: Metrics
    training: TrainingJobs
    adapters: AdapterService


def ml_state(request: Request) -> MLState:
    state: MLState = request.app.state.ml
    return state


State = Annotated[MLState, Depends(ml_state)]
