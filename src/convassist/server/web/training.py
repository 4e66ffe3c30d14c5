"""Training: samples (filter, edit, delete, add, export), jobs with live progress, adapters."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from convassist.core.errors import AppError
from convassist.core.training import DEFAULT_EPOCHS, DEFAULT_LEARNING_RATE, DEFAULT_LORA_RANK
from convassist.server.deps import MLDep, SessionDep, SettingsDep
from convassist.server.models import SampleSource
from convassist.server.training import jobs, service
from convassist.server.training.schemas import JobCreate, SampleCreate, SampleUpdate
from convassist.server.web.charts import perplexity_chart
from convassist.server.web.deps import FormViewer, PageViewer, Viewer, is_htmx
from convassist.server.web.errors import attempt
from convassist.server.web.heldout import held_out, measure_rows
from convassist.server.web.render import render, triggers

router = APIRouter()

SAMPLES_PER_PAGE = 25
JOBS_SHOWN = 20
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


async def _samples_context(
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


async def _jobs_context(session: SessionDep, ml: MLDep, viewer: Viewer) -> dict[str, Any]:
    recent, _ = await jobs.list_jobs(session, ml, limit=JOBS_SHOWN)
    return {
        "jobs": recent,
        "chart": perplexity_chart(recent, viewer.clock),
        "measure_rows": measure_rows(recent),
        "held_out": held_out,
    }


def _job_form(**values: Any) -> dict[str, Any]:
    defaults = {
        "epochs": str(DEFAULT_EPOCHS),
        "learning_rate": str(DEFAULT_LEARNING_RATE),
        "lora_rank": str(DEFAULT_LORA_RANK),
        "min_quality": "0",
        "include_history": False,
        "error": None,
        "started": None,
    }
    return {"form": {**defaults, **values}}


@router.get("/training")
async def training_page(
    request: Request,
    viewer: PageViewer,
    session: SessionDep,
    ml: MLDep,
    source: SourceQuery = None,
    min_quality: QualityQuery = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    filters = Filters.parse(source, min_quality)
    return render(
        request,
        viewer,
        "training.html",
        nav="training",
        **await _samples_context(session, filters, cursor),
        **await _jobs_context(session, ml, viewer),
        **_job_form(),
        cursor=cursor,
    )


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
    context = await _samples_context(session, filters, cursor)
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
        **await _samples_context(session, filters, None),
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
        **await _samples_context(session, Filters.parse(source, min_quality), None),
    )


@router.post("/training/jobs")
async def start_job(
    request: Request,
    viewer: FormViewer,
    session: SessionDep,
    ml: MLDep,
    settings: SettingsDep,
    epochs: Annotated[str, Form(max_length=8)] = str(DEFAULT_EPOCHS),
    learning_rate: Annotated[str, Form(max_length=16)] = str(DEFAULT_LEARNING_RATE),
    lora_rank: Annotated[str, Form(max_length=8)] = str(DEFAULT_LORA_RANK),
    min_quality: Annotated[str, Form(max_length=8)] = "0",
    include_history: Annotated[bool, Form()] = False,
) -> Response:
    """Start a LoRA training job on the current samples (and history, if asked)."""
    values = {
        "epochs": epochs,
        "learning_rate": learning_rate,
        "lora_rank": lora_rank,
        "min_quality": min_quality,
        "include_history": include_history,
    }
    try:
        body = JobCreate.model_validate(
            {
                "epochs": int(epochs),
                "learningRate": float(learning_rate),
                "loraRank": int(lora_rank),
                "minQuality": float(min_quality),
                "includeHistory": include_history,
            }
        )
    except (ValidationError, ValueError):
        error = (
            "Epochs are 1 to 20, the learning rate is above 0 and at most 0.01, the rank is "
            "1 to 64 and the minimum quality 0 to 1."
        )
        return _job_form_response(request, viewer, values, error=error, status_code=422)
    result = await attempt(
        session,
        jobs.create_job(
            session,
            ml,
            body,
            data_dir=settings.data_dir,
            train_on_groups=settings.train_on_groups,
        ),
    )
    if isinstance(result, AppError):
        error = result.detail
        if result.code == "no_samples":
            error = (
                "There is nothing to learn from yet. Use or edit a few suggestions, add a "
                "sample below, or tick “Also learn from my past replies”."
            )
        # A job the ML service refused is recorded as failed: show it in the history too.
        return _job_form_response(
            request,
            viewer,
            values,
            error=error,
            status_code=result.status_code,
            job_recorded=result.keep_changes,
        )
    return render(
        request,
        viewer,
        "partials/job_form.html",
        headers=triggers("jobs-changed", toast="Training started."),
        **_job_form(**values, started=result),
    )


def _job_form_response(
    request: Request,
    viewer: Viewer,
    values: dict[str, Any],
    *,
    error: str,
    status_code: int,
    job_recorded: bool = False,
) -> Response:
    return render(
        request,
        viewer,
        "partials/job_form.html",
        status_code=status_code,
        headers=triggers("jobs-changed") if job_recorded else None,
        **_job_form(**values, error=error),
    )


@router.get("/training/jobs")
async def job_history(
    request: Request, viewer: PageViewer, session: SessionDep, ml: MLDep
) -> Response:
    """Job history and the perplexity chart (refreshed when a job starts or finishes)."""
    context = await _jobs_context(session, ml, viewer)
    return render(request, viewer, "partials/job_history.html", oob=True, **context)


@router.get("/training/jobs/{job_id}")
async def job_row(
    job_id: uuid.UUID, request: Request, viewer: PageViewer, session: SessionDep, ml: MLDep
) -> Response:
    """One job, brought up to date from the ML service (active rows poll this)."""
    job = await jobs.get_job(session, ml, job_id)
    finished = job.status not in jobs.ACTIVE
    return render(
        request,
        viewer,
        "partials/job_row.html",
        headers=triggers("training-finished") if finished and is_htmx(request) else None,
        job=job,
        held_out=held_out,
    )


@router.post("/training/jobs/{job_id}/cancel")
async def cancel_job(
    job_id: uuid.UUID, request: Request, viewer: FormViewer, session: SessionDep, ml: MLDep
) -> Response:
    job = await jobs.cancel_job(session, ml, job_id)
    return render(
        request,
        viewer,
        "partials/job_row.html",
        headers=triggers(toast="Training cancelled.", kind="info"),
        job=job,
        held_out=held_out,
    )
