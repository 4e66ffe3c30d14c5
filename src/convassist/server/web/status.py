"""Status: is the ML service up, which model and adapter it serves, cache, queue, database.

The page exists so the owner can see why something is slow or down; each problem comes
with what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import func, select
from starlette.responses import Response

from convassist import __version__
from convassist.core.db import is_sqlite
from convassist.core.model_version import MalformedModelVersion, ModelVersion
from convassist.core.settings import ServerSettings
from convassist.server import migrate
from convassist.server.deps import MLDep, SessionDep, SettingsDep
from convassist.server.models import Conversation, Device, TrainingJob, TrainingSample
from convassist.server.training.jobs import ACTIVE
from convassist.server.web.deps import PageViewer
from convassist.server.web.render import render

router = APIRouter()


@dataclass(frozen=True, slots=True)
class MLStatus:
    url: str
    reachable: bool
    error: str | None = None
    code: str | None = None  # why it is not usable, e.g. ml_service_unauthorized
    health: dict[str, Any] | None = None
    latency_ms: float | None = None

    @property
    def version(self) -> ModelVersion | None:
        try:
            return ModelVersion.parse(str((self.health or {}).get("model_version", "")))
        except MalformedModelVersion:
            return None

    @property
    def model(self) -> str:
        """The base model (`<id>@<digest>`), or what the service reported if not parseable."""
        version = self.version
        return str(version.base) if version else str((self.health or {}).get("model_version", ""))

    @property
    def adapter(self) -> str | None:
        version = self.version
        return version.adapter_id if version else None


@dataclass(frozen=True, slots=True)
class Counts:
    devices: int
    conversations: int
    messages: int
    samples: int
    active_jobs: int


async def ml_statuses(ml: MLDep) -> list[MLStatus]:
    """Each configured ML service instance, in `ML_SERVICE_URL` order."""
    statuses = []
    for instance in await ml.instances_health():
        if instance.health is None:
            error = instance.error
            statuses.append(
                MLStatus(
                    url=instance.url,
                    reachable=False,
                    error=error.detail if error else None,
                    code=error.code if error else None,
                )
            )
        else:
            statuses.append(
                MLStatus(
                    url=instance.url,
                    reachable=True,
                    health=instance.health.model_dump(mode="json"),
                    latency_ms=instance.latency_ms,
                )
            )
    return statuses


async def counts(session: SessionDep) -> Counts:
    conversations, messages = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(Conversation.message_count), 0))
        )
    ).one()
    return Counts(
        devices=await session.scalar(
            select(func.count()).where(Device.verified.is_(True), Device.is_active.is_(True))
        )
        or 0,
        conversations=int(conversations),
        messages=int(messages),
        samples=await session.scalar(select(func.count()).select_from(TrainingSample)) or 0,
        active_jobs=await session.scalar(select(func.count()).where(TrainingJob.status.in_(ACTIVE)))
        or 0,
    )


def database(settings: ServerSettings) -> dict[str, str]:
    url = settings.resolved_database_url
    return {
        "kind": "SQLite (embedded)" if is_sqlite(url) else "PostgreSQL",
        "where": migrate.describe(url),
    }


async def _context(session: SessionDep, ml: MLDep, settings: SettingsDep) -> dict[str, Any]:
    instances = await ml_statuses(ml)
    return {
        # The card shows an instance that answers; with several, a list shows each one.
        "ml": next((i for i in instances if i.reachable), instances[0]),
        "ml_instances": instances if len(instances) > 1 else [],
        "counts": await counts(session),
        "database": database(settings),
        "server_version": __version__,
    }


@router.get("/status")
async def status_page(
    request: Request, viewer: PageViewer, session: SessionDep, ml: MLDep, settings: SettingsDep
) -> Response:
    context = await _context(session, ml, settings)
    return render(request, viewer, "status.html", nav="status", **context)


@router.get("/status/panel")
async def status_panel(
    request: Request, viewer: PageViewer, session: SessionDep, ml: MLDep, settings: SettingsDep
) -> Response:
    """The status cards (the page refreshes them every few seconds)."""
    context = await _context(session, ml, settings)
    return render(request, viewer, "partials/status_panel.html", **context)
