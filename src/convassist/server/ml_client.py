"""The API server's client for the ML service (`ML_SERVICE_URL`).

Failures become errors a person can act on: the service unreachable → 503, too slow → 504,
a refusal or a crash on its side → 503 with its own explanation.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from convassist.core.errors import AppError, GatewayTimeout, NotFound, ServiceUnavailable
from convassist.core.logging import get_logger

log = get_logger(__name__)


class Candidate(BaseModel):
    text: str
    confidence: float | None = None


class Generation(BaseModel):
    """What `POST /generate` answers (and what a finished async job holds)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    response: str
    candidates: list[Candidate]
    confidence: float | None = None
    model_version: str
    cached: bool = False


class JobState(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    job_id: str = Field(alias="jobId")
    status: str
    result: Generation | None = None
    error: str | None = None


class MLServiceError(ServiceUnavailable):
    """The ML service answered with an error status (kept in `upstream_status`)."""

    code = "ml_service_error"

    def __init__(self, detail: str, upstream_status: int) -> None:
        super().__init__(detail)
        self.upstream_status = upstream_status


class MLClient:
    """Calls the ML service with its bearer token (`CommonSettings.ml_token()`)."""

    def __init__(self, base_url: str, timeout: float, *, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
            limits=httpx.Limits(max_keepalive_connections=20),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def generate(self, payload: dict[str, Any]) -> Generation:
        return Generation.model_validate(await self._request("POST", "/generate", json=payload))

    async def generate_async(self, payload: dict[str, Any]) -> str:
        body = await self._request("POST", "/generate/async", json=payload)
        return str(body["jobId"])

    async def job(self, job_id: str) -> JobState | None:
        """The async job's state; None if the ML service does not know the job."""
        try:
            return JobState.model_validate(await self._request("GET", f"/jobs/{job_id}"))
        except MLServiceError as exc:
            if exc.upstream_status == 404:
                return None
            raise

    async def health(self) -> dict[str, Any]:
        return await self._request("GET", "/health")

    async def submit_training(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", "/training/jobs", json=payload)

    async def training_job(self, job_id: str) -> dict[str, Any] | None:
        """The training job's state; None if the ML service does not know the job."""
        try:
            return await self._request("GET", f"/training/jobs/{job_id}")
        except MLServiceError as exc:
            if exc.upstream_status == 404:
                return None
            raise

    async def cancel_training(self, job_id: str) -> dict[str, Any]:
        return await self._request("POST", f"/training/jobs/{job_id}/cancel")

    async def adapters(self) -> dict[str, Any]:
        return await self._request("GET", "/adapters")

    async def activate_adapter(self, adapter_id: str) -> dict[str, Any]:
        """Serve this adapter; 404 `unknown_adapter` if the ML service has none by that id."""
        try:
            return await self._request("POST", f"/adapters/{adapter_id}/activate")
        except MLServiceError as exc:
            if exc.upstream_status == 404:
                raise NotFound(f"No adapter {adapter_id}.", code="unknown_adapter") from None
            raise

    async def deactivate_adapter(self) -> dict[str, Any]:
        return await self._request("POST", "/adapters/deactivate")

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise GatewayTimeout(
                f"The ML service at {self.base_url} did not answer within {self.timeout:g} s.",
                code="ml_service_timeout",
            ) from None
        except httpx.TransportError:
            raise ServiceUnavailable(
                f"The ML service is not reachable at {self.base_url}.",
                code="ml_service_unavailable",
            ) from None
        if response.status_code == 401:
            log.warning("ml_service_unauthorized", path=path)
            raise ServiceUnavailable(
                f"The ML service at {self.base_url} refused the server's token: give both the "
                "same ML_SERVICE_TOKEN (or the same data dir on one machine).",
                code="ml_service_unauthorized",
            )
        if response.status_code >= 400:
            detail = _detail(response)
            log.warning("ml_service_error", path=path, status=response.status_code)
            raise MLServiceError(
                f"The ML service refused the request ({response.status_code}): {detail}",
                upstream_status=response.status_code,
            )
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            raise AppError(
                "The ML service sent a response that is not JSON.",
                code="ml_service_error",
                status_code=503,
            ) from None
        return body


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.reason_phrase))
    except ValueError:
        return response.reason_phrase
