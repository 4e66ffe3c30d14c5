"""The inbox, the home page: conversations waiting for a reply, with one-tap Send.

The list refreshes itself every few seconds (static/inbox.js skips a refresh while the
owner edits a reply). Send queues the reply in the outbox; "No reply needed" dismisses.
Without JavaScript every form still works as a plain post that comes back to `/`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from convassist.core.errors import Unprocessable
from convassist.server.conversations.service import get_conversation
from convassist.server.deps import MLDep, SessionDep, SettingsDep
from convassist.server.inbox import service
from convassist.server.outbox import service as outbox
from convassist.server.outbox.schemas import OutboxRequest
from convassist.server.web.deps import FormViewer, PageViewer, is_htmx
from convassist.server.web.render import render, triggers

router = APIRouter()

PER_PAGE = 20
MAX_REFRESHED = 100
"""A refresh re-renders as many rows as the page shows (pages loaded with "more"), up to this."""


async def _list_context(
    session: SessionDep, ml: MLDep, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    page = await service.list_inbox(session, ml, limit=limit, cursor=cursor)
    senders = await service.send_devices(session) if not cursor else []
    return {"page": page, "senders": senders, "cursor": cursor}


@router.get("/")
async def inbox_page(
    request: Request,
    viewer: PageViewer,
    session: SessionDep,
    ml: MLDep,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_REFRESHED)] = PER_PAGE,
) -> Response:
    """The page; for HTMX, the list (a refresh) or, with a cursor, the next rows."""
    context = await _list_context(session, ml, limit=limit, cursor=cursor)
    if is_htmx(request):
        template = "inbox_items.html" if cursor else "inbox_list.html"
        return render(request, viewer, f"partials/{template}", **context)
    return render(request, viewer, "inbox.html", nav="inbox", **context)


@router.post("/inbox/{conversation_id}/send")
async def send(
    conversation_id: uuid.UUID,
    request: Request,
    viewer: FormViewer,
    session: SessionDep,
    settings: SettingsDep,
    ml: MLDep,
    text: Annotated[str, Form(max_length=5000)] = "",
    response_id: Annotated[uuid.UUID | None, Form()] = None,
    candidate: Annotated[int | None, Form(ge=0, le=4)] = None,
) -> Response:
    """Queue the reply (a suggestion as is, edited, or the owner's own words); HTMX gets
    the row saying where it is going."""
    try:
        body = OutboxRequest(
            conversation_id=conversation_id,
            text=text,
            response_id=response_id,
            candidate_index=candidate if response_id else None,
        )
    except ValidationError:
        raise Unprocessable("Write the reply before sending it.") from None
    entry = await outbox.enqueue(session, body, outbox.OutboxPolicy.of(settings), ml)
    if not is_htmx(request):
        return RedirectResponse("/", status_code=303)
    queued = service.sending_out(entry, await get_conversation(session, conversation_id), None)
    senders = await service.send_devices(session)
    return render(request, viewer, "partials/inbox_queued.html", s=queued, senders=senders)


@router.post("/inbox/{conversation_id}/dismiss")
async def dismiss(
    conversation_id: uuid.UUID,
    request: Request,
    viewer: FormViewer,
    session: SessionDep,
    seen: Annotated[datetime | None, Form()] = None,
) -> Response:
    """No reply needed: HTMX removes the row (empty answer); a plain post comes back."""
    await service.dismiss(session, conversation_id, seen=seen)
    if not is_htmx(request):
        return RedirectResponse("/", status_code=303)
    return Response("", headers=triggers(toast="Marked as needing no reply."))
