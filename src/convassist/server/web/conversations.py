"""Conversations: the searchable list and one conversation's thread with reply suggestions."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from convassist.server.conversations import service
from convassist.server.conversations.schemas import ConversationOut, MessagePage
from convassist.server.deps import MLDep, SessionDep
from convassist.server.ml_client import MLClient
from convassist.server.responses import service as responses
from convassist.server.responses.service import ResponseView
from convassist.server.web.consent import panel_context
from convassist.server.web.deps import PageViewer, Viewer, is_htmx
from convassist.server.web.render import render
from convassist.server.web.thread import layout

router = APIRouter()

CONVERSATIONS_PER_PAGE = 50
MESSAGES_PER_PAGE = 60
SUGGESTIONS_PER_PAGE = 50
INLINE_SUGGESTIONS_PER_PAGE = 500
"""At most this many suggestions shown in a page of messages (its newest ones)."""

Search = Annotated[str | None, Query(max_length=200)]
Cursor = Annotated[str | None, Query(max_length=512)]


@router.get("/conversations")
async def conversations_page(
    request: Request,
    viewer: PageViewer,
    session: SessionDep,
    q: Search = None,
    cursor: Cursor = None,
) -> Response:
    """Newest first; searching (HTMX) swaps the list, "more" appends the next rows."""
    query = (q or "").strip()
    page = await service.list_conversations(
        session, q=query or None, limit=CONVERSATIONS_PER_PAGE, cursor=cursor
    )
    context: dict[str, Any] = {"page": page, "q": query, "cursor": cursor}
    if is_htmx(request):
        template = "conversation_rows.html" if cursor else "conversation_list.html"
        return render(request, viewer, f"partials/{template}", **context)
    return render(request, viewer, "conversations.html", nav="conversations", **context)


def _by_message(views: Sequence[ResponseView]) -> dict[uuid.UUID, list[ResponseView]]:
    """Suggestions per message, oldest first (the order they were asked for)."""
    grouped: dict[uuid.UUID, list[ResponseView]] = defaultdict(list)
    for view in reversed(views):
        grouped[view.row.message_id].append(view)
    return grouped


async def _thread_page(
    viewer: Viewer,
    session: SessionDep,
    ml: MLClient,
    conversation: ConversationOut,
    messages: MessagePage,
    *,
    newest: bool,
) -> dict[str, Any]:
    """What a page of the thread needs: laid-out rows with their messages' suggestions, the
    older-page cursor, and on the newest page the conversation's suggestion history."""
    inline, _ = await responses.list_responses(
        session,
        ml,
        conversation_id=conversation.id,
        message_id=None,
        message_ids=[message.id for message in messages.items],
        status=None,
        limit=INLINE_SUGGESTIONS_PER_PAGE,
        cursor=None,
    )
    rows = layout(
        messages.items,
        is_group=conversation.is_group,
        clock=viewer.clock,
        suggestions=_by_message(inline),
        newest=newest,
    )
    context: dict[str, Any] = {
        "conversation": conversation,
        "conversation_id": conversation.id,
        "rows": rows,
        "older": messages.next_cursor,
    }
    if newest:
        context["suggestions"], context["more_suggestions"] = await responses.list_responses(
            session,
            ml,
            conversation_id=conversation.id,
            message_id=None,
            status=None,
            limit=SUGGESTIONS_PER_PAGE,
            cursor=None,
        )
    return context


@router.get("/conversations/{conversation_id}")
async def conversation_page(
    conversation_id: uuid.UUID, request: Request, viewer: PageViewer, session: SessionDep, ml: MLDep
) -> Response:
    conversation = await service.get_conversation(session, conversation_id)
    messages = await service.list_messages(
        session, conversation_id, before=None, limit=MESSAGES_PER_PAGE
    )
    context = await _thread_page(viewer, session, ml, conversation, messages, newest=True)
    context.update(await panel_context(session, conversation))
    return render(request, viewer, "conversation.html", nav="conversations", **context)


@router.get("/conversations/{conversation_id}/messages")
async def older_messages(
    conversation_id: uuid.UUID,
    request: Request,
    viewer: PageViewer,
    session: SessionDep,
    ml: MLDep,
    before: Annotated[str, Query(max_length=512)],
) -> Response:
    """The page of messages before `before` (loaded when the top of the thread scrolls in)."""
    conversation = await service.get_conversation(session, conversation_id)
    messages = await service.list_messages(
        session, conversation_id, before=before, limit=MESSAGES_PER_PAGE
    )
    context = await _thread_page(viewer, session, ml, conversation, messages, newest=False)
    return render(request, viewer, "partials/thread_page.html", **context)


@router.get("/conversations/{conversation_id}/suggestions")
async def suggestion_history(
    conversation_id: uuid.UUID,
    request: Request,
    viewer: PageViewer,
    session: SessionDep,
    ml: MLDep,
    cursor: Cursor = None,
) -> Response:
    """The suggestion history panel; with a cursor, just its older entries."""
    views, more = await responses.list_responses(
        session,
        ml,
        conversation_id=conversation_id,
        message_id=None,
        status=None,
        limit=SUGGESTIONS_PER_PAGE,
        cursor=cursor,
    )
    template = "suggestion_history_items.html" if cursor else "suggestion_history.html"
    return render(
        request,
        viewer,
        f"partials/{template}",
        conversation_id=conversation_id,
        suggestions=views,
        more_suggestions=more,
    )
