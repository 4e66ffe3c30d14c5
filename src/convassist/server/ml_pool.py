"""The ML service instances the server spreads its requests over (`ML_SERVICE_URL`, a list).

Requests go round-robin over the instances, skipping one that failed within the last
`COOLDOWN_SECONDS`. A request that fails on its way to an instance moves on to the next:

- the connection was refused or timed out (the request never reached the service): always;
- the connection broke after the request was sent (RemoteProtocolError, ReadError, a reset):
  only for an idempotent request, which may safely run twice.

A read timeout is not retried (that would double a slow wait), nor is any answer, 4xx or
5xx. Only when every instance failed does the caller see `ml_service_unavailable`.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from convassist.core.errors import GatewayTimeout, ServiceUnavailable
from convassist.core.logging import get_logger

log = get_logger(__name__)

COOLDOWN_SECONDS = 5.0
"""How long an instance that failed is passed over while another one is there."""

Retry = Literal["idempotent", "connect"]
"""`idempotent`: retry any connection failure; `connect`: only one before the request left."""

_CONNECT_PHASE = (httpx.ConnectError, httpx.ConnectTimeout)
_BROKEN_MID_REQUEST = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class Instance:
    """One ML service: its URL, its HTTP connection pool, when it last failed."""

    def __init__(self, index: int, url: str, http: httpx.AsyncClient) -> None:
        self.index = index
        self.url = url
        self.host = urlsplit(url).netloc
        self.http = http
        self.failed_at: float | None = None

    def cooling(self, now: float) -> bool:
        return self.failed_at is not None and now - self.failed_at < COOLDOWN_SECONDS


def too_slow(instance: Instance, timeout: float) -> GatewayTimeout:
    return GatewayTimeout(
        f"The ML service at {instance.url} did not answer within {timeout:g} s.",
        code="ml_service_timeout",
    )


def unreachable(instance: Instance) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"The ML service is not reachable at {instance.url}.", code="ml_service_unavailable"
    )


class InstancePool:
    """Sends a request to one of the instances, failing over as the module describes."""

    def __init__(self, urls: Sequence[str], timeout: float, *, token: str) -> None:
        if not urls:
            raise ValueError("at least one ML service URL is needed")
        self.timeout = timeout
        self.instances = [
            Instance(
                index,
                url.rstrip("/"),
                httpx.AsyncClient(
                    base_url=url.rstrip("/"),
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
                    limits=httpx.Limits(max_keepalive_connections=20),
                ),
            )
            for index, url in enumerate(urls)
        ]
        self._next = 0

    @property
    def urls(self) -> list[str]:
        return [instance.url for instance in self.instances]

    async def aclose(self) -> None:
        for instance in self.instances:
            await instance.http.aclose()

    def _order(self, exclude: Collection[int]) -> list[Instance]:
        """This request's instances: round-robin, the ones that failed lately last."""
        start = self._next % len(self.instances)
        self._next += 1
        rotated = self.instances[start:] + self.instances[:start]
        now = time.monotonic()
        candidates = [instance for instance in rotated if instance.index not in exclude]
        return sorted(candidates, key=lambda instance: instance.cooling(now))

    async def request(
        self,
        method: str,
        path: str,
        *,
        retry: Retry,
        exclude: Collection[int] = (),
        **kwargs: Any,
    ) -> tuple[Instance, httpx.Response]:
        """The first answer (of any status) from an instance not in `exclude`, and which one
        gave it."""
        for instance in self._order(exclude):
            try:
                response = await instance.http.request(method, path, **kwargs)
            except _CONNECT_PHASE as exc:
                self._failed(instance, path, exc)
                continue
            except _BROKEN_MID_REQUEST as exc:
                self._failed(instance, path, exc)
                if retry == "idempotent":
                    continue
                raise ServiceUnavailable(
                    f"The ML service at {instance.url} closed the connection during the request.",
                    code="ml_service_unavailable",
                ) from None
            except httpx.TimeoutException:
                raise too_slow(instance, self.timeout) from None
            except httpx.TransportError as exc:
                self._failed(instance, path, exc)
                raise unreachable(instance) from None
            instance.failed_at = None
            return instance, response
        where = ", ".join(self.urls)
        raise ServiceUnavailable(
            f"The ML service is not reachable at {where}."
            if len(self.instances) == 1
            else f"No ML service instance is reachable (tried {where}).",
            code="ml_service_unavailable",
        )

    def _failed(self, instance: Instance, path: str, exc: Exception) -> None:
        instance.failed_at = time.monotonic()
        log.warning(
            "ml_instance_failed",
            instance=instance.index,
            host=instance.host,
            path=path,
            error=type(exc).__name__,
        )
