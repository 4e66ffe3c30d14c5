"""Request and response bodies of the ML service."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from convassist import ML_SERVICE_ID
from convassist.core.limits import SEED_SPACE
from convassist.core.schemas import APIModel, RequestModel
from convassist.core.training import (
    DEFAULT_EPOCHS,
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_LEARNING_RATE,
    DEFAULT_LORA_RANK,
)
from convassist.ml.llm import Generation, GenerationParams
from convassist.ml.manifest import DEFAULT_STOP
from convassist.ml.native import NativeStatus

MAX_TOKENS_LIMIT = 512
MAX_CANDIDATES = 5

StopSequence = Annotated[str, Field(min_length=1, max_length=64)]


class GenerateRequest(RequestModel):
    """`POST /generate` and `POST /generate/async`."""

    prompt: str = Field(
        min_length=1,
        max_length=100_000,
        description="The conversation so far, ending with `Me:` (the seed's prompt format).",
    )
    max_tokens: int = Field(
        64, ge=1, le=MAX_TOKENS_LIMIT, description="Most tokens to generate per candidate."
    )
    temperature: float = Field(0.7, ge=0, le=2, description="0 = greedy.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    stop: list[StopSequence] = Field(
        default_factory=lambda: list(DEFAULT_STOP),
        max_length=8,
        description="Generation ends before the first of these.",
    )
    seed: int | None = Field(
        None, ge=0, lt=SEED_SPACE, description="Fixed seed: reproducible and cacheable."
    )
    n: int = Field(1, ge=1, le=MAX_CANDIDATES, description="Distinct candidates wanted.")

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the prompt is empty")
        return value

    def params(self) -> GenerationParams:
        return GenerationParams(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=tuple(self.stop),
            seed=self.seed,
            n=self.n,
        )


class CandidateOut(APIModel):
    text: str
    confidence: float | None = Field(description="exp(mean token log-probability), in [0, 1].")


class Timings(APIModel):
    total_ms: float
    queue_ms: float | None = None
    generation_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_per_second: float | None = None


class GenerateResponse(APIModel):
    response: str = Field(description="The best candidate's text.")
    candidates: list[CandidateOut] = Field(description="Distinct candidates, best first.")
    confidence: float | None = Field(description="The best candidate's confidence.")
    model_version: str = Field(
        alias="model_version", description="`<model id>@<sha256 prefix>[+<adapter id>]`."
    )
    cached: bool
    timings: Timings

    @classmethod
    def from_generation(cls, generation: Generation, total_ms: float) -> GenerateResponse:
        best = generation.candidates[0]
        return cls(
            response=best.text,
            candidates=[
                CandidateOut(text=c.text, confidence=c.confidence) for c in generation.candidates
            ],
            confidence=best.confidence,
            model_version=generation.model_version,
            cached=False,
            timings=Timings(
                total_ms=total_ms,
                queue_ms=round(generation.queue_seconds * 1000, 2),
                generation_ms=round(generation.generation_seconds * 1000, 2),
                prompt_tokens=generation.prompt_tokens,
                completion_tokens=generation.completion_tokens,
                tokens_per_second=(
                    round(generation.tokens_per_second, 1)
                    if generation.tokens_per_second is not None
                    else None
                ),
            ),
        )


JobState = Literal["queued", "running", "completed", "failed"]


class JobCreated(APIModel):
    job_id: str


class JobStatus(APIModel):
    job_id: str
    status: JobState
    result: GenerateResponse | None = None
    error: str | None = None


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


HealthStatus = Literal["ok", "degraded"]


class Liveness(BaseModel):
    """`GET /health` without the token: up or not, and which service this is."""

    status: HealthStatus
    service: str = ML_SERVICE_ID  # a client pointed here by mistake can say what it reached


class LlamaHealth(BaseModel):
    """The llama.cpp configuration served with (`ml/native.py`) and its start-up probe."""

    config: Literal["default", "safe"]
    extra_bufts: bool
    reason: str
    probe: str = Field(description="ok, fell back after <signal>, or why the probe failed.")

    @classmethod
    def of(cls, status: NativeStatus) -> LlamaHealth:
        config = status.config
        return cls(
            config=config.name,
            extra_bufts=config.use_extra_bufts,
            reason=config.reason,
            probe=status.probe,
        )


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


TrainingStatus = Literal["queued", "training", "completed", "failed", "cancelled"]
MAX_TRAINING_SAMPLES = 50_000
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


class TrainingSampleIn(RequestModel):
    prompt: str = Field(
        min_length=1, description="Seed-format context ending with `Me:` (the server's)."
    )
    completion: str = Field(description="The reply, without a leading space.")
    quality: float = Field(1.0, ge=0, le=1, description="Loss weight of this sample.")
    conversation_id: str | None = Field(
        None, max_length=200, description="Held-out data is chosen by conversation."
    )


class TrainingRequest(RequestModel):
    """`POST /training/jobs`."""

    job_id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=JOB_ID_PATTERN,
        description="The caller's id for the job (the server's job id); generated if absent.",
    )
    base_model: str | None = Field(
        None, description="Manifest id of the model to train; must be the one being served."
    )
    epochs: int = Field(DEFAULT_EPOCHS, ge=1, le=20)
    learning_rate: float = Field(DEFAULT_LEARNING_RATE, gt=0, le=1e-2)
    lora_rank: int = Field(DEFAULT_LORA_RANK, ge=1, le=64)
    lora_alpha: float | None = Field(None, gt=0, le=1024, description="Default: twice loraRank.")
    seed: int = Field(0, ge=0, lt=SEED_SPACE)
    holdout_fraction: float = Field(DEFAULT_HOLDOUT_FRACTION, ge=0, le=0.5)
    auto_activate: bool | None = Field(
        None, description="Serve the adapter when the job completes (default: the setting)."
    )
    samples: list[TrainingSampleIn] = Field(min_length=1, max_length=MAX_TRAINING_SAMPLES)


class TrainingJobState(APIModel):
    """A training job as `GET /training/jobs/{jobId}` reports it."""

    job_id: str
    status: TrainingStatus
    progress: int = Field(ge=0, le=100)
    error: str | None = None
    adapter_id: str | None = None
    output_path: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    created_at: str
    started_at: str | None = None
    completed_at: str | None = None


class AdapterOut(APIModel):
    id: str
    job_id: str
    base_model: str
    created_at: str
    metrics: dict[str, Any]
    path: str
    size_bytes: int
    active: bool


class AdaptersResponse(APIModel):
    active: str | None
    model_version: str
    adapters: list[AdapterOut]


class ActiveAdapter(APIModel):
    active: str | None
    model_version: str
