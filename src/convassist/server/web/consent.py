"""A conversation's consent panel: "Learn from this conversation" and "Suggest replies here"
switches, "rebuild without it" once an adapter exists, and deleting the conversation."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import RedirectResponse, Response

from convassist.core.errors import AppError
from convassist.server.conversations import service
from convassist.server.conversations.schemas import ConsentUpdate, ConversationOut
from convassist.server.deps import MLDep, SessionDep, SettingsDep
from convassist.server.models import TrainingJob, TrainingStatus
from convassist.server.training import jobs
from convassist.server.training.schemas import JobCreate
from convassist.server.web.deps import FormViewer, Viewer, is_htmx
from convassist.server.web.errors import attempt
from convassist.server.web.render import render, triggers

router = APIRouter()


async def adapter_exists(session: AsyncSession) -> bool:
    """Whether a training job has made an adapter (the model may have learned from anyone)."""
    found = await session.scalar(
        select(TrainingJob.id)
        .where(TrainingJob.status == TrainingStatus.COMPLETED, TrainingJob.adapter_id.is_not(None))
        .limit(1)
    )
    return found is not None


async def panel_context(session: AsyncSession, conversation: ConversationOut) -> dict[str, Any]:
    """What `partials/consent_panel.html` needs."""
    return {
        "conversation": conversation,
        "offer_rebuild": not conversation.learning and await adapter_exists(session),
        "error": None,
    }


async def _panel(
    request: Request,
    viewer: Viewer,
    session: AsyncSession,
    conversation_id: uuid.UUID,
    **extra: Any,
) -> Response:
    """The panel (HTMX), else back to the conversation's page."""
    if not is_htmx(request):
        return RedirectResponse(f"/conversations/{conversation_id}", status_code=303)
    toast, error = extra.pop("toast", None), extra.get("error")
    conversation = await service.get_conversation(session, conversation_id)
    return render(
        request,
        viewer,
        "partials/consent_panel.html",
        headers=triggers(toast=toast) if toast and not error else None,
        **{**await panel_context(session, conversation), **extra},
    )


@router.post("/conversations/{conversation_id}/consent")
async def set_consent(
    conversation_id: uuid.UUID,
    request: Request,
    viewer: FormViewer,
    session: SessionDep,
    use: Annotated[Literal["training", "suggestions"], Form()],
    on: Annotated[bool, Form()],
) -> Response:
    """One switch: learn from this conversation, or suggest replies in it."""
    await service.update_consent(session, conversation_id, ConsentUpdate(**{use: on}))
    if use == "training":
        toast = "The model learns from this conversation." if on else "Left out of training."
    else:
        toast = "Replies are suggested here." if on else "No more suggestions here."
    return await _panel(request, viewer, session, conversation_id, toast=toast)


@router.post("/conversations/{conversation_id}/rebuild")
async def rebuild(
    conversation_id: uuid.UUID,
    request: Request,
    viewer: FormViewer,
    session: SessionDep,
    ml: MLDep,
    settings: SettingsDep,
) -> Response:
    """Start a training job (default settings, with history) on what the owner allows."""
    result = await attempt(
        session,
        jobs.create_job(
            session,
            ml,
            JobCreate(include_history=True),
            data_dir=settings.data_dir,
            train_on_groups=settings.train_on_groups,
        ),
    )
    error = result.detail if isinstance(result, AppError) else None
    if not is_htmx(request) and error is None:
        return RedirectResponse("/training", status_code=303)
    return await _panel(
        request, viewer, session, conversation_id, toast="Training started.", error=error
    )


@router.post("/conversations/{conversation_id}/delete")
async def delete(
    conversation_id: uuid.UUID, request: Request, viewer: FormViewer, session: SessionDep
) -> Response:
    """Delete the conversation with its messages, suggestions, samples and outbox."""
    await service.delete_conversation(session, conversation_id)
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": "/conversations"})
    return RedirectResponse("/conversations", status_code=303)
