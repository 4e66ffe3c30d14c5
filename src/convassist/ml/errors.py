"""Errors of the ML service: model resolution, loading, downloading, and bad prompts."""

from __future__ import annotations

from convassist.core.errors import Unprocessable


class ModelError(Exception):
    """A model cannot be used; the message is one line for a person."""


class ModelNotFoundError(ModelError):
    """The configured model id or file does not exist (or is not downloaded)."""


class ModelLoadError(ModelError):
    """The model file exists but cannot be loaded (corrupt, wrong checksum, not GGUF)."""


class DownloadError(ModelError):
    """Fetching a model failed (offline, HTTP error, checksum mismatch)."""


class PromptTooLong(Unprocessable):
    """Prompt tokens + maxTokens do not fit the model's context window."""

    code = "prompt_too_long"
