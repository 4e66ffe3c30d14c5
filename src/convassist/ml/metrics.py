"""Prometheus metrics of one ML service instance (its own registry, served at `/metrics`)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from convassist.ml.generation.manager import Generation

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "convassist_ml_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "convassist_ml_request_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cache = Counter(
            "convassist_ml_cache",
            "Response cache lookups: hit, miss, or bypass (non-deterministic request).",
            ["result"],
            registry=self.registry,
        )
        self.generation_seconds = Histogram(
            "convassist_ml_generation_seconds",
            "Model time per generation (all candidates).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "convassist_ml_generated_tokens",
            "Tokens generated.",
            registry=self.registry,
        )
        self.tokens_per_second = Gauge(
            "convassist_ml_tokens_per_second",
            "Generation speed of the last generation.",
            registry=self.registry,
        )
        self.jobs = Counter(
            "convassist_ml_jobs", "Async jobs by final status.", ["status"], registry=self.registry
        )

    def observe_generation(self, generation: Generation) -> None:
        self.generation_seconds.observe(generation.generation_seconds)
        self.tokens.inc(generation.completion_tokens)
        if generation.tokens_per_second is not None:
            self.tokens_per_second.set(generation.tokens_per_second)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Count requests and time them, labelled by route template (not raw path)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
