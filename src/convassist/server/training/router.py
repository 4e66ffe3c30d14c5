"""Training data (owner only): samples with filters, manual samples, JSONL export."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from convassist.core.limits import AdapterIdPath
from convassist.core.openapi import error_responses
from convassist.ml.adapters.schemas import ActiveAdapter, AdaptersResponse
from convassist.server.deps import MLDep, OwnerDep, SessionDep, SettingsDep
from convassist.server.models import SampleSource
from convassist.server.training import jobs, service
from convassist.server.training.schemas import (
    JobCreate,
    JobOut,
    JobPage,
    SampleCreate,
    SampleOut,
    SamplePage,
    SampleUpdate,
)

router = APIRouter(prefix="/training", tags=["training"])


def sample_filter(
    source: SampleSource | None = None,
    min_quality: Annotated[float | None, Query(alias="minQuality", ge=0, le=1)] = None,
    since: Annotated[datetime | None, Query(description="createdAt ≥ since")] = None,
    until: Annotated[datetime | None, Query(description="createdAt < until")] = None,
    conversation_id: Annotated[uuid.UUID | None, Query(alias="conversationId")] = None,
) -> service.SampleFilter:
    return service.SampleFilter(source, min_quality, since, until, conversation_id)


FilterDep = Annotated[service.SampleFilter, Depends(sample_filter)]


@router.get("/samples", response_model=SamplePage, responses=error_responses(400))
async def list_samples(
    _: OwnerDep,
    session: SessionDep,
    filters: FilterDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> SamplePage:
    """Newest first; `nextCursor` continues the listing."""
    items, next_cursor, total = await service.list_samples(
        session, filters, limit=limit, cursor=cursor
    )
    return SamplePage(
        items=[SampleOut.model_validate(s) for s in items], next_cursor=next_cursor, total=total
    )


@router.get("/samples/export", response_class=StreamingResponse)
async def export_samples(
    _: OwnerDep, request: Request, filters: FilterDep, settings: SettingsDep
) -> StreamingResponse:
    """The matching samples as JSONL (`prompt`, `completion`, `quality`, …), oldest first;
    like a training job, it leaves out conversations the owner keeps out of training."""
    return StreamingResponse(
        service.export_jsonl(
            request.app.state.sessionmaker, filters, groups=settings.train_on_groups
        ),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="training-samples.jsonl"'},
    )


@router.post("/samples", response_model=SampleOut, status_code=201)
async def create_sample(body: SampleCreate, _: OwnerDep, session: SessionDep) -> SampleOut:
    """Add a manual sample (`source: "manual"`)."""
    return SampleOut.model_validate(await service.create_manual(session, body))


@router.get("/samples/{sample_id}", response_model=SampleOut, responses=error_responses(404))
async def get_sample(sample_id: uuid.UUID, _: OwnerDep, session: SessionDep) -> SampleOut:
    return SampleOut.model_validate(await service.get_sample(session, sample_id))


@router.patch("/samples/{sample_id}", response_model=SampleOut, responses=error_responses(404))
async def update_sample(
    sample_id: uuid.UUID, body: SampleUpdate, _: OwnerDep, session: SessionDep
) -> SampleOut:
    return SampleOut.model_validate(await service.update_sample(session, sample_id, body))


@router.delete("/samples/{sample_id}", status_code=204, responses=error_responses(404))
async def delete_sample(sample_id: uuid.UUID, _: OwnerDep, session: SessionDep) -> Response:
    await service.delete_sample(session, sample_id)
    return Response(status_code=204)


@router.post("/jobs", response_model=JobOut, status_code=201, responses=error_responses(504))
async def create_job(
    body: JobCreate, _: OwnerDep, session: SessionDep, ml: MLDep, settings: SettingsDep
) -> JobOut:
    """Snapshot the matching samples (and history) and start a LoRA training job."""
    job = await jobs.create_job(
        session, ml, body, data_dir=settings.data_dir, train_on_groups=settings.train_on_groups
    )
    return JobOut.model_validate(job)


@router.get("/jobs", response_model=JobPage, responses=error_responses(400))
async def list_jobs(
    _: OwnerDep,
    session: SessionDep,
    ml: MLDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> JobPage:
    """Newest first; active jobs are brought up to date from the ML service."""
    items, next_cursor = await jobs.list_jobs(session, ml, limit=limit, cursor=cursor)
    return JobPage(items=[JobOut.model_validate(j) for j in items], next_cursor=next_cursor)


@router.get("/jobs/{job_id}", response_model=JobOut, responses=error_responses(404))
async def get_job(job_id: uuid.UUID, _: OwnerDep, session: SessionDep, ml: MLDep) -> JobOut:
    """Status, progress (0 to 100), sample count, adapter, error and held-out metrics."""
    return JobOut.model_validate(await jobs.get_job(session, ml, job_id))


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobOut,
    responses=error_responses(404, 409, 504),
)
async def cancel_job(job_id: uuid.UUID, _: OwnerDep, session: SessionDep, ml: MLDep) -> JobOut:
    return JobOut.model_validate(await jobs.cancel_job(session, ml, job_id))


@router.get("/adapters", responses=error_responses(504))
async def list_adapters(_: OwnerDep, ml: MLDep) -> AdaptersResponse:
    """The ML service's adapters, the active one marked, and `previous` (what a rollback
    serves), as the ML service reports them."""
    return await ml.adapters()


@router.post("/adapters/rollback", responses=error_responses(409, 504))
async def rollback_adapter(_: OwnerDep, ml: MLDep) -> ActiveAdapter:
    """Serve the adapter that was active before the current choice again; 409
    `no_previous_adapter` when the base model was served before it."""
    return await ml.rollback_adapter()


@router.post("/adapters/deactivate", responses=error_responses(504))
async def deactivate_adapter(_: OwnerDep, ml: MLDep) -> ActiveAdapter:
    """Serve the base model again."""
    return await ml.deactivate_adapter()


@router.post("/adapters/{adapter_id}/activate", responses=error_responses(404, 504))
async def activate_adapter(adapter_id: AdapterIdPath, _: OwnerDep, ml: MLDep) -> ActiveAdapter:
    """Hot-swap this adapter into the ML service."""
    return await ml.activate_adapter(adapter_id)
