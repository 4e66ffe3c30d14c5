"""`model_version`: which model (and adapter) produced a reply, as one string.

`<model id>@<file digest>[+<adapter id>]` from the llama.cpp backend, e.g.
`smollm2-135m-instruct@b179c9523d0e+lora-20260101`; the OpenAI-compatible backend names its
model only (`openai:<model>`). The ML service composes it here and the server parses it here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

_MODEL_ID = r"[^@+\s]+"
_DIGEST = r"[0-9a-f]{12,64}"
_ADAPTER_ID = r"lora-[a-z0-9]{1,64}"  # core.limits.ADAPTER_ID_PATTERN
_VERSION = re.compile(
    rf"(?P<model>{_MODEL_ID})(?:@(?P<digest>{_DIGEST}))?(?:\+(?P<adapter>{_ADAPTER_ID}))?"
)


class MalformedModelVersion(ValueError):
    """Text that is not `<model id>[@<digest>][+<adapter id>]`."""


@dataclass(frozen=True, slots=True)
class ModelVersion:
    model_id: str
    digest: str | None = None
    """The first hex digits of the model file's SHA-256 (llama.cpp backend)."""
    adapter_id: str | None = None
    """The LoRA adapter being served, if any."""

    def __post_init__(self) -> None:
        for value, pattern, what in (
            (self.model_id, _MODEL_ID, "model id"),
            (self.digest, _DIGEST, "file digest"),
            (self.adapter_id, _ADAPTER_ID, "adapter id"),
        ):
            if value is not None and not re.fullmatch(pattern, value):
                raise MalformedModelVersion(f"{value!r} is not a valid {what} in a model_version")

    @classmethod
    def parse(cls, text: str) -> ModelVersion:
        found = _VERSION.fullmatch(text)
        if found is None:
            raise MalformedModelVersion(
                f"{text!r} is not a model_version: expected <model id>[@<sha256 prefix>]"
                "[+<adapter id>]"
            )
        return cls(found["model"], found["digest"], found["adapter"])

    @property
    def base(self) -> ModelVersion:
        """The same model without its adapter."""
        return replace(self, adapter_id=None)

    def with_adapter(self, adapter_id: str | None) -> ModelVersion:
        return replace(self, adapter_id=adapter_id)

    def __str__(self) -> str:
        text = self.model_id
        if self.digest is not None:
            text += f"@{self.digest}"
        if self.adapter_id is not None:
            text += f"+{self.adapter_id}"
        return text
