from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from convassist.core.limits import SEED_SPACE
from convassist.core.schemas import APIModel, RequestModel
from convassist.core.suggestions import MAX_TOKENS, TEMPERATURE
from convassist.server.models import ResponseStatus


class ContextOptions(RequestModel):
    max_history: int = Field(10, ge=1, le=100, description="Messages of context, newest last.")


class GenerateRequest(RequestModel):
    message_id: uuid.UUID
    context: ContextOptions = ContextOptions()
    candidates: int = Field(1, ge=1, le=5, description="How many distinct suggestions.")
    run_async: bool = Field(
        False, alias="async", description="Return at once; poll GET /api/responses/{id}."
    )
    max_tokens: int = Field(MAX_TOKENS, ge=1, le=512)
    temperature: float = Field(TEMPERATURE, ge=0.0, le=2.0)
    seed: int | None = Field(
        None, ge=0, lt=SEED_SPACE, description="Fix for reproducible (cacheable) output."
    )


class CandidateOut(APIModel):
    text: str
    confidence: float | None


class GenerateResult(APIModel):
    response_id: uuid.UUID
    status: ResponseStatus
    response: str | None
    confidence: float | None
    candidates: list[CandidateOut]
    model_version: str | None


class ResponseOut(APIModel):
    id: uuid.UUID
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    prompt: str
    response: str | None
    candidates: list[CandidateOut]
    chosen_index: int | None
    edited_response: str | None
    confidence: float | None
    model_version: str | None
    status: ResponseStatus
    error: str | None
    rejection_reason: str | None
    generated_at: datetime | None
    acted_at: datetime | None
    created_at: datetime
    sample_id: uuid.UUID | None = None


class ResponsePage(APIModel):
    items: list[ResponseOut]
    next_cursor: str | None


class ActionRequest(RequestModel):
    action: Literal["accept", "edit", "reject"]
    candidate_index: int | None = Field(
        None, ge=0, le=4, description="Which candidate was accepted or edited (default 0)."
    )
    edited_response: str | None = Field(None, max_length=5000)
    rejection_reason: str | None = Field(None, max_length=1000)

    @model_validator(mode="after")
    def _edit_needs_text(self) -> ActionRequest:
        if self.action == "edit" and not (self.edited_response or "").strip():
            raise ValueError("an edit needs a non-empty editedResponse")
        if self.action != "edit" and self.edited_response is not None:
            raise ValueError("editedResponse is only for action 'edit'")
        if self.action != "reject" and self.rejection_reason is not None:
            raise ValueError("rejectionReason is only for action 'reject'")
        return self
