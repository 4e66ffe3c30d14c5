"""Reply suggestions on a message: ask (async), watch them arrive, accept, edit or reject.

Generation runs as an ML-service job: the card comes back at once in the `generating`
state and polls until the candidates are in, so the page never freezes.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from pydantic import ValidationError
from starlette.responses import Response

from convassist.core.errors import AppError, Unprocessable
from convassist.core.suggestions import CANDIDATES
from convassist.server.deps import MLDep, SessionDep
from convassist.server.models import ResponseStatus
from convassist.server.responses import service
from convassist.server.responses.schemas import ActionRequest, GenerateRequest
from convassist.server.responses.service import ResponseView
from convassist.server.web.deps import FormViewer, PageViewer, Viewer
from convassist.server.web.errors import attempt
from convassist.server.web.render import render, triggers

router = APIRouter()

CandidateIndex = Annotated[int, Form(ge=0, le=4)]


def _card(
    request: Request, viewer: Viewer, view: ResponseView, headers: dict[str, str] | None = None
) -> Response:
    return render(
        request,
        viewer,
        "partials/suggestion.html",
        headers=headers or triggers("suggestions-changed"),
        view=view,
    )


@router.post("/messages/{message_id}/suggest")
async def suggest(
    message_id: uuid.UUID, request: Request, viewer: FormViewer, session: SessionDep, ml: MLDep
) -> Response:
    """Start generating up to three candidates; answers with a card that polls."""
    body = GenerateRequest.model_validate(
        {"messageId": message_id, "candidates": CANDIDATES, "async": True}
    )
    result = await attempt(session, service.generate(session, ml, body))
    if isinstance(result, AppError):
        return render(
            request,
            viewer,
            "partials/suggestion_error.html",
            headers=triggers("suggestions-changed"),
            message_id=message_id,
            error=result.detail,
            service_down=result.status_code >= 500,
        )
    return _card(request, viewer, result)


@router.get("/suggestions/{response_id}")
async def suggestion(
    response_id: uuid.UUID, request: Request, viewer: PageViewer, session: SessionDep, ml: MLDep
) -> Response:
    """The card as it is now (a generating card asks the ML service how it is going)."""
    view = await service.get_response(session, ml, response_id)
    if view.row.status is ResponseStatus.GENERATING:
        return render(request, viewer, "partials/suggestion.html", view=view)
    return _card(request, viewer, view)


async def _act(
    request: Request,
    viewer: Viewer,
    session: SessionDep,
    ml: MLDep,
    response_id: uuid.UUID,
    action: dict[str, Any],
    toast: str,
) -> Response:
    try:
        body = ActionRequest.model_validate(action)
    except ValidationError:
        raise Unprocessable("Write the reply you would send before saving it.") from None
    view = await service.act(session, ml, response_id, body)
    headers = triggers("samples-changed", "suggestions-changed", toast=toast)
    return _card(request, viewer, view, headers=headers)


@router.post("/suggestions/{response_id}/accept")
async def accept(
    response_id: uuid.UUID,
    request: Request,
    viewer: FormViewer,
    session: SessionDep,
    ml: MLDep,
    candidate: CandidateIndex = 0,
) -> Response:
    return await _act(
        request,
        viewer,
        session,
        ml,
        response_id,
        {"action": "accept", "candidateIndex": candidate},
        "Saved. This reply is now a training sample.",
    )


@router.post("/suggestions/{response_id}/edit")
async def edit(
    response_id: uuid.UUID,
    request: Request,
    viewer: FormViewer,
    session: SessionDep,
    ml: MLDep,
    candidate: CandidateIndex = 0,
    text: Annotated[str, Form(max_length=5000)] = "",
) -> Response:
    return await _act(
        request,
        viewer,
        session,
        ml,
        response_id,
        {"action": "edit", "candidateIndex": candidate, "editedResponse": text},
        "Saved your version as a training sample.",
    )


@router.post("/suggestions/{response_id}/reject")
async def reject(
    response_id: uuid.UUID,
    request: Request,
    viewer: FormViewer,
    session: SessionDep,
    ml: MLDep,
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    return await _act(
        request,
        viewer,
        session,
        ml,
        response_id,
        {"action": "reject", "rejectionReason": reason.strip() or None},
        "Rejected. The reason is kept with the suggestion.",
    )
