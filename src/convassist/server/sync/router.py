"""Sync endpoints for the agent (device bearer token): messages, contacts, status.

The write endpoints parse their body with pydantic-core straight from the bytes (faster
than `json.loads` + validation for 500-message batches) and say whether a body is invalid
UTF-8 or malformed JSON. Errors keep the API's shapes: 400 `invalid_json`, 413
`payload_too_large` / `batch_too_large`, 415 for a non-JSON content type, 422
`validation_error` with the same `errors` list as every other endpoint.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from convassist.core.errors import AppError, BadRequest
from convassist.core.openapi import error_responses
from convassist.server.deps import DeviceDep, SessionDep, SettingsDep
from convassist.server.suggest.service import Suggester
from convassist.server.sync import service
from convassist.server.sync.schemas import (
    SyncContactsRequest,
    SyncContactsResponse,
    SyncMessagesRequest,
    SyncMessagesResponse,
    SyncStatusResponse,
)

router = APIRouter(prefix="/sync", tags=["sync"])

BodyT = TypeVar("BodyT", bound=BaseModel)


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body for an endpoint that parses its body itself (refs inlined)."""
    schema = model.model_json_schema(by_alias=True)
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline(schema)}},
        }
    }


async def parse_body(request: Request, model: type[BodyT]) -> BodyT:
    """Validate the raw JSON body against `model` with the API's error shapes."""
    content_type = request.headers.get("content-type", "application/json")
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise AppError(
            "Send the body as application/json.", code="unsupported_media_type", status_code=415
        )
    raw = await request.body()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if any(error["type"] == "json_invalid" for error in errors):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as decode_error:
                raise BadRequest(
                    f"Request body is not valid UTF-8 (at byte {decode_error.start}).",
                    code="invalid_json",
                ) from None
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in errors]
        ) from None


@router.post(
    "/messages",
    response_model=SyncMessagesResponse,
    openapi_extra=_body_schema(SyncMessagesRequest),
    responses=error_responses(415),
)
async def sync_messages(
    request: Request,
    device: DeviceDep,
    session: SessionDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> SyncMessagesResponse:
    """Upsert one batch of one conversation's messages (idempotent; dedupe by guid)."""
    body = await parse_body(request, SyncMessagesRequest)
    suggester: Suggester = request.app.state.suggester
    result = await service.sync_messages(
        session, device, body, max_batch=settings.sync_max_batch, policy=suggester.policy
    )
    if result.waiting_message_id is not None:
        # Runs once the response is sent, so after the session committed the batch.
        background.add_task(suggester.notify, result.conversation_id)
    return SyncMessagesResponse(
        inserted=result.inserted,
        updated=result.updated,
        unchanged=result.unchanged,
        skipped=result.skipped,
        conversation_id=result.conversation_id,
        message_count=result.message_count,
        last_message_at=result.last_message_at,
    )


@router.post(
    "/contacts",
    response_model=SyncContactsResponse,
    openapi_extra=_body_schema(SyncContactsRequest),
    responses=error_responses(415),
)
async def sync_contacts(
    request: Request, _: DeviceDep, session: SessionDep
) -> SyncContactsResponse:
    """Upsert contacts by handle (`appleId`)."""
    body = await parse_body(request, SyncContactsRequest)
    result = await service.sync_contacts(session, body)
    return SyncContactsResponse(
        inserted=result.inserted, updated=result.updated, unchanged=result.unchanged
    )


@router.get("/status", response_model=SyncStatusResponse)
async def sync_status(
    device: DeviceDep,
    session: SessionDep,
    settings: SettingsDep,
    conversation_id: Annotated[
        str | None,
        Query(alias="conversationId", max_length=300, description="A chat guid to look up."),
    ] = None,
) -> SyncStatusResponse:
    """What the server holds, so an agent can cross-check where to resume."""
    return await service.sync_status(
        session,
        device,
        max_batch=settings.sync_max_batch,
        max_body_bytes=settings.max_body_bytes,
        conversation_guid=conversation_id,
    )
