"""The configured backend, loaded."""

from __future__ import annotations

from convassist.ml.backends.base import Backend
from convassist.ml.settings import MLSettings


def load_backend(settings: MLSettings) -> Backend:
    """The configured backend, loaded; raises ModelError with a one-line message on failure."""
    if settings.backend == "openai":
        from convassist.ml.backends.openai_compat import OpenAIBackend

        return OpenAIBackend.from_settings(settings)
    from convassist.ml.backends.llama import LlamaBackend

    return LlamaBackend.from_settings(settings)
