"""The API server's client for the ML service (`ML_SERVICE_URL`: one URL or several).

It speaks the ML service's own request and response models (`convassist.ml.*.schemas`),
so the two sides share one wire contract. Requests are spread over the instances and fail
over between them (`server/ml_pool.py`). Failures become errors a person can act on: no
instance reachable → 503, too slow → 504, a refusal or a crash on its side → 503 with its
own explanation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from convassist.core.errors import AppError, Conflict, NotFound, ServiceUnavailable
from convassist.core.logging import get_logger
from convassist.core.settings import split_urls
from convassist.ml.adapters.schemas import ActiveAdapter, AdaptersResponse
from convassist.ml.generation.schemas import (
    GenerateRequest,
    GenerateResponse,
    GenerationJob,
    JobCreated,
)
from convassist.ml.health.schemas import HealthResponse
from convassist.ml.training.schemas import TrainingJobState, TrainingRequest
from convassist.server.ml_pool import Instance, InstancePool, Retry, too_slow, unreachable

log = get_logger(__name__)

Model = TypeVar("Model", bound=BaseModel)


class MLServiceError(ServiceUnavailable):
    """The ML service answered with an error status (kept in `upstream_status`)."""

    code = "ml_service_error"

    def __init__(self, detail: str, upstream_status: int, upstream_code: str | None) -> None:
        super().__init__(detail)
        self.upstream_status = upstream_status
        self.upstream_code = upstream_code


@dataclass(frozen=True, slots=True)
class InstanceHealth:
    """One configured instance's `/health`, or why it could not be read."""

    url: str
    health: HealthResponse | None
    error: AppError | None
    latency_ms: float | None


class MLClient:
    """Calls the ML service with its bearer token (`CommonSettings.ml_token()`)."""

    def __init__(self, base_url: str | Sequence[str], timeout: float, *, token: str) -> None:
        urls = split_urls(base_url) if isinstance(base_url, str) else list(base_url)
        self._pool = InstancePool(urls, timeout, token=token)
        self.timeout = timeout

    @property
    def urls(self) -> list[str]:
        return self._pool.urls

    @property
    def base_url(self) -> str:
        """The configured URL (several: comma-separated), for messages."""
        return ", ".join(self.urls)

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def generate(self, request: GenerateRequest) -> GenerateResponse:
        body = _body(request)
        return await self._call(GenerateResponse, "POST", "/generate", "idempotent", json=body)

    async def generate_async(self, request: GenerateRequest) -> str:
        """Queue a generation; its job id. Retried only if the request never left."""
        body = _body(request)
        created = await self._call(JobCreated, "POST", "/generate/async", "connect", json=body)
        return created.job_id

    async def job(self, job_id: str) -> GenerationJob | None:
        """The async job's state; None if the ML service does not know the job."""
        return await self._unless_404(GenerationJob, f"/jobs/{job_id}")

    async def health(self) -> HealthResponse:
        return await self._call(HealthResponse, "GET", "/health", "idempotent")

    async def instances_health(self) -> list[InstanceHealth]:
        """Every configured instance's `/health`, asked directly (no failover)."""
        return [await self._instance_health(instance) for instance in self._pool.instances]

    async def submit_training(self, request: TrainingRequest) -> TrainingJobState:
        """Submit a job; one the service already has under this jobId is read instead."""
        body = _body(request)
        try:
            return await self._call(
                TrainingJobState, "POST", "/training/jobs", "connect", json=body
            )
        except MLServiceError as exc:
            if exc.upstream_code != "job_exists" or request.job_id is None:
                raise
        state = await self.training_job(request.job_id)
        if state is None:
            raise MLServiceError(
                f"The ML service has a job {request.job_id} but cannot read it.", 409, None
            )
        return state

    async def training_job(self, job_id: str) -> TrainingJobState | None:
        """The training job's state; None if the ML service does not know the job."""
        return await self._unless_404(TrainingJobState, f"/training/jobs/{job_id}")

    async def cancel_training(self, job_id: str) -> TrainingJobState | None:
        """Cancel the job; None if the ML service does not know it."""
        path = f"/training/jobs/{job_id}/cancel"
        return await self._unless_404(TrainingJobState, path, method="POST")

    async def adapters(self) -> AdaptersResponse:
        return await self._call(AdaptersResponse, "GET", "/adapters", "idempotent")

    async def activate_adapter(self, adapter_id: str) -> ActiveAdapter:
        """Serve this adapter; 404 `unknown_adapter` if the ML service has none by that id."""
        path = f"/adapters/{adapter_id}/activate"
        try:
            return await self._call(ActiveAdapter, "POST", path, "idempotent")
        except MLServiceError as exc:
            if exc.upstream_status == 404:
                raise NotFound(f"No adapter {adapter_id}.", code="unknown_adapter") from None
            raise

    async def deactivate_adapter(self) -> ActiveAdapter:
        return await self._call(ActiveAdapter, "POST", "/adapters/deactivate", "idempotent")

    async def rollback_adapter(self) -> ActiveAdapter:
        """Serve the adapter active before the current choice; 409 `no_previous_adapter` if
        the base model was. Sent once: a retried rollback would roll back the rollback."""
        try:
            return await self._call(ActiveAdapter, "POST", "/adapters/rollback", "connect")
        except MLServiceError as exc:
            if exc.upstream_code == "no_previous_adapter":
                raise Conflict(
                    "There is no previous adapter to roll back to: the base model was served "
                    "before the current choice.",
                    code="no_previous_adapter",
                ) from None
            raise

    async def _unless_404(self, model: type[Model], path: str, method: str = "GET") -> Model | None:
        """The job at `path`, looked for on each instance before it counts as unknown (None):
        without Redis, an instance knows only the jobs it was given."""
        asked: set[int] = set()
        while len(asked) < len(self._pool.instances):
            instance, response = await self._pool.request(
                method, path, retry="idempotent", exclude=asked
            )
            if response.status_code != 404:
                return _parse(model, _json(instance, response, path))
            asked.add(instance.index)
        return None

    async def _instance_health(self, instance: Instance) -> InstanceHealth:
        started = time.perf_counter()
        try:
            try:
                response = await instance.http.get("/health")
            except httpx.TimeoutException:
                raise too_slow(instance, self.timeout) from None
            except httpx.TransportError:
                raise unreachable(instance) from None
            health = _parse(HealthResponse, _json(instance, response, "/health"))
        except AppError as exc:
            return InstanceHealth(instance.url, None, exc, None)
        latency = (time.perf_counter() - started) * 1000
        return InstanceHealth(instance.url, health, None, latency)

    async def _call(
        self, model: type[Model], method: str, path: str, retry: Retry, **kwargs: Any
    ) -> Model:
        instance, response = await self._pool.request(method, path, retry=retry, **kwargs)
        return _parse(model, _json(instance, response, path))


def _body(request: BaseModel) -> dict[str, Any]:
    return request.model_dump(mode="json", by_alias=True, exclude_none=True)


def _json(instance: Instance, response: httpx.Response, path: str) -> Any:
    """The answer's JSON body, or the error it stands for."""
    if response.status_code == 401:
        log.warning("ml_service_unauthorized", instance=instance.index, path=path)
        raise ServiceUnavailable(
            f"The ML service at {instance.url} refused the server's token: give both the "
            "same ML_SERVICE_TOKEN (or the same data dir on one machine).",
            code="ml_service_unauthorized",
        )
    if response.status_code >= 400:
        detail, code = _error(response)
        log.warning(
            "ml_service_error", instance=instance.index, path=path, status=response.status_code
        )
        raise MLServiceError(
            f"The ML service refused the request ({response.status_code}): {detail}",
            upstream_status=response.status_code,
            upstream_code=code,
        )
    try:
        return response.json()
    except ValueError:
        raise _not_understood("is not JSON") from None


def _parse(model: type[Model], body: Any) -> Model:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        log.warning("ml_service_bad_response", model=model.__name__, errors=exc.error_count())
        raise _not_understood(f"does not match {model.__name__}") from None


def _not_understood(why: str) -> AppError:
    return AppError(
        f"The ML service sent a response that {why} (are both the same version?).",
        code="ml_service_error",
        status_code=503,
    )


def _error(response: httpx.Response) -> tuple[str, str | None]:
    """The error body's `detail` and `error` code (`core/errors.py`)."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase, None
    if not isinstance(body, dict):
        return response.reason_phrase, None
    code = body.get("error")
    return str(body.get("detail", response.reason_phrase)), code if isinstance(code, str) else None
