"""The owner's contacts: who the model learns from and suggests replies to (owner only)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from convassist.core.openapi import error_responses
from convassist.server.contacts import service
from convassist.server.contacts.schemas import ContactOut, ContactPage
from convassist.server.conversations.schemas import ConsentUpdate
from convassist.server.deps import OwnerDep, SessionDep

router = APIRouter(prefix="/contacts", tags=["contacts"])


@router.get("", response_model=ContactPage, responses=error_responses(400))
async def list_contacts(
    _: OwnerDep,
    session: SessionDep,
    q: Annotated[
        str | None, Query(max_length=200, description="Substring of the name or handle.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Page size.")] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> ContactPage:
    """Synced contacts with their consent switches."""
    return await service.list_contacts(session, q=q, limit=limit, cursor=cursor)


@router.patch("/{contact_id}", response_model=ContactOut, responses=error_responses(404))
async def update_contact(
    contact_id: uuid.UUID, body: ConsentUpdate, _: OwnerDep, session: SessionDep
) -> ContactOut:
    """Learn from (`training`) and suggest replies to (`suggestions`) this person.

    Off leaves out every conversation they are in, groups included."""
    return await service.update_consent(session, contact_id, body)


@router.delete("/{contact_id}", status_code=204, responses=error_responses(404))
async def delete_contact(contact_id: uuid.UUID, _: OwnerDep, session: SessionDep) -> Response:
    """Delete the contact and its one-to-one conversations with all they hold; group
    conversations stay."""
    await service.delete_contact(session, contact_id)
    return Response(status_code=204)
