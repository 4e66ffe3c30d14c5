"""Reply suggestions for incoming messages, and the owner's accept / edit / reject."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from convassist.core.openapi import error_responses
from convassist.server.deps import MLDep, OwnerDep, SessionDep
from convassist.server.models import ResponseStatus
from convassist.server.responses import service
from convassist.server.responses.schemas import (
    ActionRequest,
    CandidateOut,
    GenerateRequest,
    GenerateResult,
    ResponseOut,
    ResponsePage,
)

router = APIRouter(prefix="/responses", tags=["responses"])


def response_out(view: service.ResponseView) -> ResponseOut:
    row = view.row
    return ResponseOut(
        id=row.id,
        message_id=row.message_id,
        conversation_id=view.conversation_id,
        prompt=row.prompt,
        response=row.response,
        candidates=[CandidateOut.model_validate(c) for c in row.candidates],
        chosen_index=row.chosen_index,
        edited_response=row.edited_response,
        confidence=row.confidence,
        model_version=row.model_version,
        status=row.status,
        error=row.error,
        rejection_reason=row.rejection_reason,
        generated_at=row.generated_at,
        acted_at=row.acted_at,
        created_at=row.created_at,
        sample_id=view.sample_id,
    )


@router.post("/generate", response_model=GenerateResult, responses=error_responses(404, 409, 504))
async def generate(
    body: GenerateRequest, _: OwnerDep, session: SessionDep, ml: MLDep
) -> GenerateResult:
    """Suggest replies. Sync: `completed` with the candidates. Async: `generating` at once."""
    view = await service.generate(session, ml, body)
    row = view.row
    return GenerateResult(
        response_id=row.id,
        status=row.status,
        response=row.response,
        confidence=row.confidence,
        candidates=[CandidateOut.model_validate(c) for c in row.candidates],
        model_version=row.model_version,
    )


@router.get("", response_model=ResponsePage, responses=error_responses(400))
async def list_responses(
    _: OwnerDep,
    session: SessionDep,
    ml: MLDep,
    conversation_id: Annotated[uuid.UUID | None, Query(alias="conversationId")] = None,
    message_id: Annotated[uuid.UUID | None, Query(alias="messageId")] = None,
    status: ResponseStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> ResponsePage:
    views, next_cursor = await service.list_responses(
        session,
        ml,
        conversation_id=conversation_id,
        message_id=message_id,
        status=status,
        limit=limit,
        cursor=cursor,
    )
    return ResponsePage(items=[response_out(v) for v in views], next_cursor=next_cursor)


@router.get("/{response_id}", response_model=ResponseOut, responses=error_responses(404, 504))
async def get_response(
    response_id: uuid.UUID, _: OwnerDep, session: SessionDep, ml: MLDep
) -> ResponseOut:
    """One suggestion; an async one reports `generating` until its result is in."""
    return response_out(await service.get_response(session, ml, response_id))


@router.post(
    "/{response_id}/action",
    response_model=ResponseOut,
    responses=error_responses(404, 409),
)
async def act(
    response_id: uuid.UUID, body: ActionRequest, _: OwnerDep, session: SessionDep, ml: MLDep
) -> ResponseOut:
    """accept → sample (quality = confidence); edit → sample (quality 1.0); reject → reason."""
    return response_out(await service.act(session, ml, response_id, body))
