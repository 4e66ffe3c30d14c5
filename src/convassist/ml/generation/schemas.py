"""Request and response bodies of `/generate`, `/generate/async` and `/jobs/{jobId}`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from convassist.core.limits import SEED_SPACE
from convassist.core.prompt import STOP_SEQUENCES
from convassist.core.replies import MAX_CHARS, MAX_OWN_REPLIES
from convassist.core.schemas import APIModel, RequestModel
from convassist.core.suggestions import TOP_P

MAX_TOKENS_LIMIT = 512
MAX_CANDIDATES = 5

StopSequence = Annotated[str, Field(min_length=1, max_length=64)]
OwnReply = Annotated[str, Field(min_length=1, max_length=MAX_CHARS)]


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
    top_p: float = Field(TOP_P, gt=0, le=1, description="Nucleus sampling mass.")
    stop: list[StopSequence] = Field(
        default_factory=lambda: list(STOP_SEQUENCES),
        max_length=8,
        description="Generation ends before the first of these.",
    )
    seed: int | None = Field(
        None, ge=0, lt=SEED_SPACE, description="Fixed seed: reproducible and cacheable."
    )
    n: int = Field(1, ge=1, le=MAX_CANDIDATES, description="Distinct candidates wanted.")
    own_replies: list[OwnReply] = Field(
        default_factory=list,
        max_length=MAX_OWN_REPLIES,
        description=(
            "The owner's stock replies (most used first). With `n` ≥ 2, the one the model "
            "finds likeliest after the prompt takes the last candidate's place, unless it "
            "already is a candidate (llama backend only)."
        ),
    )

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the prompt is empty")
        return value


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


GenerationJobStatus = Literal["queued", "running", "completed", "failed"]


class JobCreated(APIModel):
    job_id: str


class GenerationJob(APIModel):
    job_id: str
    status: GenerationJobStatus
    result: GenerateResponse | None = None
    error: str | None = None
