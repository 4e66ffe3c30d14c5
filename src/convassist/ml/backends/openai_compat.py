"""An OpenAI-compatible completions server (llama-server, vLLM, Ollama) as the backend.

`POST {base}/v1/completions` with `logprobs: 1`; confidence comes from the returned
`token_logprobs` when the server sends them (null otherwise). The server does the batching,
so several requests may be in flight at once.
"""

from __future__ import annotations

from typing import Any

import httpx

from convassist.core.errors import AppError, ServiceUnavailable, Unprocessable
from convassist.core.logging import get_logger
from convassist.ml.backends.base import Completion, Sampling
from convassist.ml.errors import ModelLoadError
from convassist.ml.settings import MLSettings

log = get_logger("convassist.ml.openai")

CONNECT_TIMEOUT = 5.0


def api_base(url: str) -> str:
    """Accept `http://host:port` and `http://host:port/v1` alike."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


class OpenAIBackend:
    """Completions from a remote OpenAI-compatible server."""

    name = "openai"
    max_concurrency = 4

    def __init__(
        self, base_url: str, *, model: str | None, api_key: str | None, timeout: float
    ) -> None:
        self.base_url = api_base(base_url)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
        )
        try:
            listed = self._client.get("/models")
            listed.raise_for_status()
            served = [str(m["id"]) for m in listed.json().get("data", [])]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            self._client.close()
            raise ModelLoadError(
                f"Cannot use the OpenAI-compatible server at {self.base_url}: {exc}"
            ) from exc
        if model is None and not served:
            self._client.close()
            raise ModelLoadError(f"The server at {self.base_url} lists no models.")
        self.model = model or served[0]
        log.info("backend_ready", backend=self.name, model=self.model)

    @classmethod
    def from_settings(cls, settings: MLSettings) -> OpenAIBackend:
        if not settings.openai_base_url:
            raise ModelLoadError(
                "ML_SERVICE_BACKEND=openai needs ML_SERVICE_OPENAI_BASE_URL "
                "(e.g. http://127.0.0.1:8080 for llama-server)."
            )
        return cls(
            settings.openai_base_url,
            model=settings.openai_model,
            api_key=settings.openai_api_key,
            timeout=settings.openai_timeout,
        )

    @property
    def model_version(self) -> str:
        return f"openai:{self.model}"

    @property
    def context_size(self) -> None:
        return None

    def count_tokens(self, prompt: str) -> None:
        return None

    def complete(self, prompt: str, sampling: Sampling) -> Completion:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": sampling.seed,
            "logprobs": 1,
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        try:
            response = self._client.post("/completions", json=body)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"The model server at {self.base_url} is unreachable ({type(exc).__name__})."
            ) from exc
        if response.status_code in (400, 422):
            raise Unprocessable(
                f"The model server refused the request: {_error_message(response)}",
                code="backend_rejected",
            )
        if response.status_code >= 400:
            raise AppError(
                f"The model server answered HTTP {response.status_code}.",
                code="bad_gateway",
                status_code=502,
            )
        return _parse_completion(response.json())

    def close(self) -> None:
        self._client.close()


def _parse_completion(data: dict[str, Any]) -> Completion:
    choice = data["choices"][0]
    logprobs = choice.get("logprobs") or {}
    token_logprobs = tuple(
        float(lp) for lp in (logprobs.get("token_logprobs") or []) if lp is not None
    )
    usage = data.get("usage") or {}
    return Completion(
        text=str(choice.get("text", "")),
        token_logprobs=token_logprobs,
        completion_tokens=int(usage.get("completion_tokens", len(token_logprobs))),
        finish_reason=str(choice.get("finish_reason") or "stop"),
    )


def _error_message(response: httpx.Response) -> str:
    """The server's own error text, shortened (returned to the caller, never logged)."""
    try:
        error = response.json().get("error", {})
        message = error.get("message") if isinstance(error, dict) else str(error)
    except ValueError:
        message = response.text
    return str(message or f"HTTP {response.status_code}")[:300]
