"""Training samples on the Training page: filter, page through, add, edit, delete."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from convassist.server.deps import SessionDep
from convassist.server.models import SampleSource
from convassist.server.training import service
from convassist.server.training.schemas import SampleCreate, SampleUpdate
from convassist.server.web.deps import FormViewer, PageViewer
from convassist.server.web.render import render, triggers

router = APIRouter()

SAMPLES_PER_PAGE = 25
SOURCES = {
    "accepted": "Accepted suggestion",
    "edited": "Edited suggestion",
    "manual": "Written by hand",
    "history": "From your history",
}
QUALITY_FLOORS = ("0.25", "0.5", "0.75", "1")


@dataclass(frozen=True, slots=True)
class Filters:
    """The sample filters as the form holds them (strings, "" = any)."""

    source: str = ""
    min_quality: str = ""

    @classmethod
    def parse(cls, source: str | None, min_quality: str | None) -> Filters:
        return cls(
            source=source if source in SOURCES else "",
            min_quality=min_quality if min_quality in QUALITY_FLOORS else "",
        )

    def service_filter(self) -> service.SampleFilter:
        return service.SampleFilter(
            source=SampleSource(self.source) if self.source else None,
            min_quality=float(self.min_quality) if self.min_quality else None,
        )

    def query(self) -> dict[str, str]:
        """For page links (`source`, `min_quality`)."""
        return {k: v for k, v in (("source", self.source), ("min_quality", self.min_quality)) if v}

    def export_query(self) -> dict[str, str]:
        """For the JSON API's JSONL export (`source`, `minQuality`)."""
        return {k: v for k, v in (("source", self.source), ("minQuality", self.min_quality)) if v}


SourceQuery = Annotated[str | None, Query(max_length=16)]
QualityQuery = Annotated[str | None, Query(max_length=8)]
SourceForm = Annotated[str | None, Form(max_length=16)]
QualityForm = Annotated[str | None, Form(max_length=8)]


async def samples_context(
    session: SessionDep, filters: Filters, cursor: str | None
) -> dict[str, Any]:
    items, next_cursor, total = await service.list_samples(
        session, filters.service_filter(), limit=SAMPLES_PER_PAGE, cursor=cursor
    )
    return {
        "samples": items,
        "next_cursor": next_cursor,
        "total": total,
        "filters": filters,
        "sources": SOURCES,
        "quality_floors": QUALITY_FLOORS,
    }


@router.get("/training/samples")
async def sample_list(
    request: Request,
    viewer: PageViewer,
    session: SessionDep,
    source: SourceQuery = None,
    min_quality: QualityQuery = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    """The filtered list (HTMX: the list; with a cursor, just the next rows)."""
    filters = Filters.parse(source, min_quality)
    context = await samples_context(session, filters, cursor)
    template = "partials/sample_rows.html" if cursor else "partials/sample_list.html"
    return render(request, viewer, template, **context)


@router.post("/training/samples")
async def add_sample(
    request: Request,
    viewer: FormViewer,
    session: SessionDep,
    input_context: Annotated[str, Form(max_length=20_000)] = "",
    expected_output: Annotated[str, Form(max_length=20_000)] = "",
    quality: Annotated[str, Form(max_length=8)] = "1",
    source: SourceForm = None,
    min_quality: QualityForm = None,
) -> Response:
    """Add a manual sample; answers with the refreshed list (or the form with its error)."""
    filters = Filters.parse(source, min_quality)
    try:
        body = SampleCreate(
            input_context=input_context,
            expected_output=expected_output.strip(),
            quality=float(quality),
        )
    except (ValidationError, ValueError):
        return render(
            request,
            viewer,
            "partials/sample_form.html",
            status_code=422,
            error="Write both the conversation and your reply; quality is between 0 and 1.",
            values={"input_context": input_context, "expected_output": expected_output},
            quality=quality,
            filters=filters,
        )
    await service.create_manual(session, body)
    return render(
        request,
        viewer,
        "partials/sample_list.html",
        headers=triggers("sample-added", toast="Sample added."),
        **await samples_context(session, filters, None),
    )


@router.get("/training/samples/{sample_id}")
async def sample_row(
    sample_id: uuid.UUID, request: Request, viewer: PageViewer, session: SessionDep
) -> Response:
    sample = await service.get_sample(session, sample_id)
    return render(request, viewer, "partials/sample_row.html", sample=sample, sources=SOURCES)


@router.get("/training/samples/{sample_id}/edit")
async def sample_edit_row(
    sample_id: uuid.UUID, request: Request, viewer: PageViewer, session: SessionDep
) -> Response:
    sample = await service.get_sample(session, sample_id)
    return render(
        request, viewer, "partials/sample_edit.html", sample=sample, sources=SOURCES, error=None
    )


@router.post("/training/samples/{sample_id}")
async def update_sample(
    sample_id: uuid.UUID,
    request: Request,
    viewer: FormViewer,
    session: SessionDep,
    input_context: Annotated[str, Form(max_length=20_000)] = "",
    expected_output: Annotated[str, Form(max_length=20_000)] = "",
    quality: Annotated[str, Form(max_length=8)] = "1",
) -> Response:
    sample = await service.get_sample(session, sample_id)
    try:
        body = SampleUpdate(
            input_context=input_context,
            expected_output=expected_output.strip(),
            quality=float(quality),
        )
    except (ValidationError, ValueError):
        return render(
            request,
            viewer,
            "partials/sample_edit.html",
            status_code=422,
            sample=sample,
            sources=SOURCES,
            error="Neither text may be empty, and quality is between 0 and 1.",
        )
    sample = await service.update_sample(session, sample_id, body)
    return render(
        request,
        viewer,
        "partials/sample_row.html",
        headers=triggers(toast="Sample saved."),
        sample=sample,
        sources=SOURCES,
    )


@router.post("/training/samples/{sample_id}/delete")
async def delete_sample(
    sample_id: uuid.UUID,
    request: Request,
    viewer: FormViewer,
    session: SessionDep,
    source: SourceForm = None,
    min_quality: QualityForm = None,
) -> Response:
    await service.delete_sample(session, sample_id)
    await session.flush()
    return render(
        request,
        viewer,
        "partials/sample_list.html",
        headers=triggers(toast="Sample deleted."),
        **await samples_context(session, Filters.parse(source, min_quality), None),
    )
