"""Reply suggestions (seed flow 3) and turning the owner's decisions into samples (flow 4).

No database transaction stays open while the ML service works (`server/unit_of_work.py`):
the suggestion row is committed as `generating` first, the ML call runs, and the result is
written in a new transaction. A failed call leaves the row `failed` with the reason, and
nothing else. Reading an async suggestion that is still generating shows the ML job's live
state without writing it; the reconciler (`server/reconciler.py`) or acting on the
suggestion stores it.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.errors import AppError, Conflict, NotFound, Unprocessable
from convassist.core.logging import get_logger
from convassist.core.prompt import REPLY_STOP, extract_reply
from convassist.ml.generation import schemas as ml_schemas
from convassist.server.conversations.consent import is_allowed
from convassist.server.conversations.service import build_context
from convassist.server.live import Mirror
from convassist.server.ml_client import MLClient
from convassist.server.models import (
    Direction,
    GeneratedResponse,
    Message,
    ResponseStatus,
    SampleSource,
    TrainingSample,
    utcnow,
)
from convassist.server.pagination import decode_timed_cursor, encode_cursor
from convassist.server.responses.own import own_replies
from convassist.server.responses.schemas import ActionRequest, GenerateRequest
from convassist.server.unit_of_work import commit_then_call

log = get_logger(__name__)

EDITED_QUALITY = 1.0
# Quality of an accepted suggestion whose backend reported no token probabilities.
UNKNOWN_CONFIDENCE_QUALITY = 0.5


@dataclass(frozen=True)
class ResponseView:
    row: GeneratedResponse
    conversation_id: uuid.UUID
    sample_id: uuid.UUID | None = None


def _ml_request(body: GenerateRequest, prompt: str, own: list[str]) -> ml_schemas.GenerateRequest:
    return ml_schemas.GenerateRequest(
        prompt=prompt,
        n=body.candidates,
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        stop=list(REPLY_STOP),
        seed=body.seed,
        own_replies=own,
    )


async def generate(
    session: AsyncSession, ml: MLClient, body: GenerateRequest, *, auto: bool = False
) -> ResponseView:
    """Suggest replies to an incoming message; sync waits for them, async returns at once.

    `auto`: queued by the server for a waiting message (`suggest.service`), not the owner."""
    message = await session.get(Message, body.message_id)
    if message is None:
        raise NotFound("No such message.", code="message_not_found")
    if message.direction is not Direction.INCOMING:
        raise Unprocessable(
            "Suggestions are for incoming messages; this one was sent by you.",
            code="not_incoming",
        )
    if not await is_allowed(session, message.conversation_id, "suggestions"):
        raise Conflict(
            "You switched suggestions off for this conversation or one of its contacts.",
            code="suggestions_excluded",
        )
    context = await build_context(session, message.id, max_history=body.context.max_history)
    row = GeneratedResponse(
        message_id=message.id,
        prompt=context.prompt,
        status=ResponseStatus.GENERATING,
        candidates=[],
        auto=auto,
    )
    session.add(row)
    # With one candidate there is no place for a stock reply (`ml/generation/own.py`).
    own = await own_replies(session) if body.candidates > 1 else []
    request = _ml_request(body, context.prompt, own)

    async def call() -> None:
        if body.run_async:
            row.ml_job_id = await ml.generate_async(request)
        else:
            complete(row, await ml.generate(request))

    def failed(exc: AppError) -> None:
        fail(row, exc.detail)

    await commit_then_call(session, call, on_error=failed)
    log.info(
        "response_requested",
        response_id=str(row.id),
        message_id=str(message.id),
        mode="async" if body.run_async else "sync",
        auto=auto,
        candidates=len(row.candidates),
    )
    return ResponseView(row, message.conversation_id)


def complete(row: GeneratedResponse, generation: ml_schemas.GenerateResponse) -> None:
    row.candidates = [
        {"text": extract_reply(c.text), "confidence": c.confidence} for c in generation.candidates
    ]
    row.response = extract_reply(generation.response)
    row.confidence = generation.confidence
    row.model_version = generation.model_version
    row.status = ResponseStatus.COMPLETED
    row.generated_at = utcnow()
    row.error = None


def fail(row: GeneratedResponse, reason: str) -> None:
    row.status = ResponseStatus.FAILED
    row.error = reason
    log.warning("response_failed", response_id=str(row.id))


def apply_job(row: GeneratedResponse, state: ml_schemas.GenerationJob | None) -> None:
    """Bring a `generating` row to its async job's state; a job the service lost: failed."""
    if state is None:
        fail(row, "The ML service no longer knows this job (was it restarted?).")
    elif state.status == "completed" and state.result is not None:
        complete(row, state.result)
    elif state.status == "failed":
        fail(row, state.error or "The generation job failed.")


def pending(row: GeneratedResponse) -> str | None:
    """The ML job id of a suggestion still generating asynchronously."""
    return row.ml_job_id if row.status is ResponseStatus.GENERATING else None


MIRROR = Mirror(
    model=GeneratedResponse,
    active=lambda: (
        (GeneratedResponse.status == ResponseStatus.GENERATING)
        & GeneratedResponse.ml_job_id.is_not(None)
    ),
    pending=pending,
    ask=lambda ml, job_id: ml.job(job_id),
    apply=apply_job,
)
"""Async suggestions follow their ML job (`server/live.py`)."""


async def get_response(session: AsyncSession, ml: MLClient, response_id: uuid.UUID) -> ResponseView:
    """The suggestion; one still generating shows its ML job's live state (not stored)."""
    view = await _load(session, response_id)
    if pending(view.row) is None:
        return view
    return (await _shown(session, ml, [view]))[0]


async def _shown(
    session: AsyncSession, ml: MLClient, views: list[ResponseView]
) -> list[ResponseView]:
    """The views, each generating one as its ML job is now (on a copy; nothing stored)."""
    rows = await commit_then_call(session, lambda: MIRROR.shown(ml, [v.row for v in views]))
    return [replace(view, row=row) for view, row in zip(views, rows, strict=True)]


async def _load(session: AsyncSession, response_id: uuid.UUID) -> ResponseView:
    found = (
        await session.execute(
            select(GeneratedResponse, Message.conversation_id, TrainingSample.id)
            .join(Message, Message.id == GeneratedResponse.message_id)
            .outerjoin(TrainingSample, TrainingSample.response_id == GeneratedResponse.id)
            .where(GeneratedResponse.id == response_id)
        )
    ).one_or_none()
    if found is None:
        raise NotFound("No such response.", code="response_not_found")
    row, conversation_id, sample_id = found
    return ResponseView(row, conversation_id, sample_id)


async def list_responses(
    session: AsyncSession,
    ml: MLClient,
    *,
    conversation_id: uuid.UUID | None,
    message_id: uuid.UUID | None,
    status: ResponseStatus | None,
    limit: int,
    cursor: str | None,
    message_ids: Collection[uuid.UUID] | None = None,
) -> tuple[list[ResponseView], str | None]:
    """Newest first, keyset-paginated; `message_ids`: only those messages' suggestions.

    Suggestions still generating show their ML job's live state (not stored)."""
    query = (
        select(GeneratedResponse, Message.conversation_id, TrainingSample.id)
        .join(Message, Message.id == GeneratedResponse.message_id)
        .outerjoin(TrainingSample, TrainingSample.response_id == GeneratedResponse.id)
    )
    if conversation_id is not None:
        query = query.where(Message.conversation_id == conversation_id)
    if message_id is not None:
        query = query.where(GeneratedResponse.message_id == message_id)
    if message_ids is not None:
        query = query.where(GeneratedResponse.message_id.in_(message_ids))
    if status is not None:
        query = query.where(GeneratedResponse.status == status)
    if cursor:
        created, row_id = decode_timed_cursor(cursor)
        query = query.where(
            tuple_(GeneratedResponse.created_at, GeneratedResponse.id) < (created, row_id)
        )
    query = query.order_by(GeneratedResponse.created_at.desc(), GeneratedResponse.id.desc())
    rows = (await session.execute(query.limit(limit + 1))).all()
    views = [ResponseView(row, conv, sample) for row, conv, sample in rows[:limit]]
    last = rows[limit - 1][0] if len(rows) > limit else None
    next_cursor = encode_cursor(last.created_at, last.id) if last else None
    if any(pending(view.row) for view in views):
        views = await _shown(session, ml, views)
    return views, next_cursor


async def current(
    session: AsyncSession, ml: MLClient, message_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, ResponseView]:
    """Each message's newest suggestion that is not retired, in one query; one still
    generating shows its ML job's live state (not stored)."""
    if not message_ids:
        return {}
    newest = (
        select(
            GeneratedResponse.id,
            func.row_number()
            .over(
                partition_by=GeneratedResponse.message_id,
                order_by=(GeneratedResponse.created_at.desc(), GeneratedResponse.id.desc()),
            )
            .label("rank"),
        )
        .where(
            GeneratedResponse.message_id.in_(message_ids), GeneratedResponse.retired_at.is_(None)
        )
        .subquery()
    )
    rows = await session.execute(
        select(GeneratedResponse, Message.conversation_id, TrainingSample.id)
        .join(newest, (newest.c.id == GeneratedResponse.id) & (newest.c.rank == 1))
        .join(Message, Message.id == GeneratedResponse.message_id)
        .outerjoin(TrainingSample, TrainingSample.response_id == GeneratedResponse.id)
    )
    views = [ResponseView(row, conv, sample) for row, conv, sample in rows.all()]
    if any(pending(view.row) for view in views):
        views = await _shown(session, ml, views)
    return {view.row.message_id: view for view in views}


def require_completed(row: GeneratedResponse, *, nothing_to: str) -> None:
    """409 unless the suggestion is completed (ready and not acted on yet)."""
    if row.status is ResponseStatus.COMPLETED:
        return
    if row.status in (ResponseStatus.GENERATING, ResponseStatus.FAILED):
        raise Conflict(f"This suggestion is {row.status.value}; nothing to {nothing_to}.")
    raise Conflict(f"This suggestion was already {row.status.value}.", code="already_acted")


def chosen_index(row: GeneratedResponse, candidate_index: int | None) -> int:
    """The candidate an action takes (the first by default); 422 when out of range."""
    index = candidate_index or 0
    if index >= len(row.candidates):
        raise Unprocessable(
            f"candidateIndex {index} is out of range: there are {len(row.candidates)} candidates."
        )
    return index


def accepted_quality(candidate: dict[str, Any]) -> float:
    """The sample quality of a candidate sent unchanged: its confidence (within 0 to 1), or
    UNKNOWN_CONFIDENCE_QUALITY when the backend reported none."""
    confidence = candidate.get("confidence")
    quality = UNKNOWN_CONFIDENCE_QUALITY if confidence is None else float(confidence)
    return min(max(quality, 0.0), 1.0)


async def act(
    session: AsyncSession, ml: MLClient, response_id: uuid.UUID, body: ActionRequest
) -> ResponseView:
    """Accept, edit or reject a completed suggestion; accept and edit create a sample."""
    view = await _load(session, response_id)
    row = view.row
    await MIRROR.settle(session, ml, row)
    require_completed(row, nothing_to="act on")
    if view.sample_id is not None:  # the owner answered from the phone (suggest.waiting)
        raise Conflict("The owner already replied to this message.", code="already_acted")
    index = chosen_index(row, body.candidate_index)
    new_status = {
        "accept": ResponseStatus.ACCEPTED,
        "edit": ResponseStatus.EDITED,
        "reject": ResponseStatus.REJECTED,
    }[body.action]
    # Conditional update: of two concurrent actions on one suggestion, exactly one wins.
    claimed = await session.execute(
        update(GeneratedResponse)
        .where(
            GeneratedResponse.id == row.id,
            GeneratedResponse.status == ResponseStatus.COMPLETED,
        )
        .values(status=new_status, acted_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("This suggestion was already acted on.", code="already_acted")
    await session.refresh(row)
    sample: TrainingSample | None = None
    if body.action == "reject":
        row.rejection_reason = body.rejection_reason
    else:
        chosen = row.candidates[index]
        row.chosen_index = index
        if body.action == "accept":
            row.response = chosen["text"]
            quality = accepted_quality(chosen)
            text, source = chosen["text"], SampleSource.ACCEPTED
        else:
            assert body.edited_response is not None
            row.edited_response = body.edited_response.strip()
            text, source = row.edited_response, SampleSource.EDITED
            quality = EDITED_QUALITY
        sample = TrainingSample(
            input_context=row.prompt,
            expected_output=text,
            source=source,
            quality=quality,
            response_id=row.id,
            conversation_id=view.conversation_id,
        )
        session.add(sample)
        await session.flush()
    log.info(
        "response_action",
        response_id=str(row.id),
        action=body.action,
        sample_id=str(sample.id) if sample else None,
    )
    return ResponseView(row, view.conversation_id, sample.id if sample else None)
