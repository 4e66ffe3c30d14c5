"""The OpenAPI documents' errors: the body the error handlers really send, on every operation.

Every error is an `ErrorBody` (`core.http` renders them). `document_errors(app, common=…)`
declares it, after FastAPI built the document, for the statuses each operation can answer:
422 (in place of FastAPI's own, never-sent shape) where it takes parameters or a body, 400
and 413 where it takes a body, 401 where it declares `security`, 403 for writes that a
cookie can authenticate (they need the CSRF token), and `common` everywhere. Statuses only
some routes answer (404, 409, 429, …) are declared on the route: `responses=error_responses(…)`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

SCHEMAS_REF = "#/components/schemas/"
UNSAFE_METHODS = frozenset({"post", "put", "patch", "delete"})
# FastAPI's default 422 shape; the app never sends it.
_FASTAPI_SCHEMAS = ("HTTPValidationError", "ValidationError")


class ValidationIssue(BaseModel):
    """One invalid field of a request (its value is never echoed: it may be message text)."""

    location: str = Field(description="Where, dotted: `body.code`, `query.limit`, …")
    message: str = Field(description="What is wrong, for a person.")
    type: str = Field(description="pydantic's error type, e.g. `missing`, `string_too_long`.")


def _absent_not_null(schema: dict[str, Any]) -> None:
    """The optional fields are left out when they do not apply; they are never null."""
    for field in schema["properties"].values():
        field.pop("default", None)


class ErrorBody(BaseModel):
    """Every error response: a stable code, a sentence for a person, and per-error extras."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_absent_not_null)

    error: str = Field(description="Stable machine-readable code, e.g. `not_found`.")
    detail: str = Field(description="What went wrong and what to do, for a person.")
    errors: list[ValidationIssue] | SkipJsonSchema[None] = Field(
        None, description="`validation_error` (422): every invalid field."
    )
    retry_after: int | SkipJsonSchema[None] = Field(
        None, description="`rate_limited` (429): seconds to wait, as in `Retry-After`."
    )
    limit: int | SkipJsonSchema[None] = Field(
        None, description="`batch_too_large` (413): the most items one request may carry."
    )
    status: str | SkipJsonSchema[None] = Field(
        None, description="The ML service's `job_finished` (409): the state the job is in."
    )


DESCRIPTIONS = {
    400: "Malformed JSON (`invalid_json`), or a request this endpoint refuses",
    401: "Missing, invalid, expired or revoked credentials",
    403: "A cookie-authenticated write without the CSRF token (`csrf_failed`)",
    404: "Not found",
    409: "Conflicts with the current state",
    410: "Expired",
    413: "Body over the size limit (`payload_too_large`)",
    415: "Body not sent as `application/json` (`unsupported_media_type`)",
    422: "Invalid parameters or body (`validation_error`, with `errors`)",
    429: "Too many attempts (`rate_limited`, with `Retry-After`)",
    500: "Unexpected failure (`internal_error`); it is logged",
    502: "The model server answered with an error",
    503: "Something this depends on is unavailable; retry later",
    504: "Something this depends on was too slow",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: these statuses answer an `ErrorBody`."""
    return {
        status: {"model": ErrorBody, "description": DESCRIPTIONS[status]} for status in statuses
    }


def document_errors(app: FastAPI, *, common: Iterable[int]) -> None:
    """Declare `ErrorBody` on every operation of `app`'s OpenAPI document (see above)."""
    build = app.openapi
    common = tuple(common)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        declare_errors(schema, common)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def declare_errors(schema: dict[str, Any], common: Iterable[int]) -> None:
    components = schema.setdefault("components", {})
    schemes = components.get("securitySchemes", {})
    definitions = components.setdefault("schemas", {})
    error_schema = ErrorBody.model_json_schema(ref_template=SCHEMAS_REF + "{model}")
    definitions.update(error_schema.pop("$defs", {}))
    definitions[ErrorBody.__name__] = error_schema
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            statuses = set(common) | _implied(method, operation, schema, schemes)
            responses = operation.setdefault("responses", {})
            statuses |= {int(key) for key in responses if key.isdigit() and int(key) >= 400}
            for status in statuses:
                responses[str(status)] = _error_response(status, responses.get(str(status)))
            operation["responses"] = dict(sorted(responses.items()))
    for name in _FASTAPI_SCHEMAS:
        definitions.pop(name, None)


def _implied(
    method: str, operation: dict[str, Any], schema: dict[str, Any], schemes: dict[str, Any]
) -> set[int]:
    """The error statuses an operation's shape implies."""
    statuses: set[int] = set()
    has_body = "requestBody" in operation
    if has_body or operation.get("parameters"):
        statuses.add(422)
    if has_body:
        statuses |= {400, 413}
    security: list[dict[str, list[str]]] = operation.get("security", schema.get("security", []))
    if security:
        statuses.add(401)
    by_cookie = any(
        schemes.get(name, {}).get("in") == "cookie"
        for requirement in security
        for name in requirement
    )
    if method in UNSAFE_METHODS and by_cookie:
        statuses.add(403)
    return statuses


def _error_response(status: int, declared: dict[str, Any] | None) -> dict[str, Any]:
    """`declared` (or a new response) with the ErrorBody content, its description kept."""
    content = (declared or {}).get("content", {}).get("application/json", {})
    if content.get("schema", {}).get("$ref", "").removeprefix(SCHEMAS_REF) in _FASTAPI_SCHEMAS:
        declared = None
    response = dict(declared or {})
    response.setdefault("description", DESCRIPTIONS.get(status, "Error"))
    response["content"] = {"application/json": {"schema": {"$ref": SCHEMAS_REF + "ErrorBody"}}}
    return response
