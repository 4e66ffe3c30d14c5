"""Training: the page, and jobs with live progress (samples: `samples.py`, adapters:
`adapters.py`, online measures: `online.py`)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from convassist.core.errors import AppError
from convassist.core.training import (
    DEFAULT_BUDGET_MINUTES,
    DEFAULT_LORA_RANK,
    MAX_BUDGET_MINUTES,
    MIN_BUDGET_MINUTES,
)
from convassist.server.deps import MLDep, SessionDep, SettingsDep
from convassist.server.training import jobs
from convassist.server.training.schemas import JobCreate
from convassist.server.web.charts import perplexity_chart
from convassist.server.web.deps import FormViewer, PageViewer, Viewer, is_htmx
from convassist.server.web.errors import attempt
from convassist.server.web.heldout import held_out, measure_rows
from convassist.server.web.render import render, triggers
from convassist.server.web.samples import Filters, QualityQuery, SourceQuery, samples_context

router = APIRouter()

JOBS_SHOWN = 20


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
        "budget_minutes": str(DEFAULT_BUDGET_MINUTES),
        "epochs": "",
        "learning_rate": "",
        "lora_rank": str(DEFAULT_LORA_RANK),
        "min_quality": "0",
        "include_history": False,
        "error": None,
        "started": None,
    }
    return {
        "form": {**defaults, **values},
        "budget_range": (MIN_BUDGET_MINUTES, MAX_BUDGET_MINUTES),
    }


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
        **await samples_context(session, filters, cursor),
        **await _jobs_context(session, ml, viewer),
        **_job_form(),
        cursor=cursor,
    )


@router.post("/training/jobs")
async def start_job(
    request: Request,
    viewer: FormViewer,
    session: SessionDep,
    ml: MLDep,
    settings: SettingsDep,
    budget_minutes: Annotated[str, Form(max_length=8)] = str(DEFAULT_BUDGET_MINUTES),
    epochs: Annotated[str, Form(max_length=8)] = "",
    learning_rate: Annotated[str, Form(max_length=16)] = "",
    lora_rank: Annotated[str, Form(max_length=8)] = str(DEFAULT_LORA_RANK),
    min_quality: Annotated[str, Form(max_length=8)] = "0",
    include_history: Annotated[bool, Form()] = False,
) -> Response:
    """Start a LoRA training job on the current samples (and history, if asked)."""
    values = {
        "budget_minutes": budget_minutes,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "lora_rank": lora_rank,
        "min_quality": min_quality,
        "include_history": include_history,
    }
    try:
        body = JobCreate.model_validate(
            {
                "budgetMinutes": float(budget_minutes),
                "epochs": int(epochs) if epochs.strip() else None,
                "learningRate": float(learning_rate) if learning_rate.strip() else None,
                "loraRank": int(lora_rank),
                "minQuality": float(min_quality),
                "includeHistory": include_history,
            }
        )
    except (ValidationError, ValueError):
        error = (
            f"The time budget is {MIN_BUDGET_MINUTES} to {MAX_BUDGET_MINUTES} minutes, "
            "epochs are empty (automatic) or 1 to 20, the learning rate is empty (the model's "
            "own) or above 0 and at most 0.01, the rank is 1 to 64 and the minimum quality 0 to 1."
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
