"""API schema base classes: camelCase on the wire, unknown request fields refused."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class APIModel(BaseModel):
    """Response bodies: snake_case in Python, camelCase in JSON."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class RequestModel(APIModel):
    """Request bodies: like APIModel, and a field the API does not know is an error."""

    model_config = ConfigDict(extra="forbid", str_max_length=100_000)
