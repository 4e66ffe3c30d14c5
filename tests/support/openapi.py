"""Checking a real answer against what an app's OpenAPI document declares for it."""

from __future__ import annotations

from typing import Any

import httpx
from jsonschema import Draft202012Validator

Spec = dict[str, Any]


def assert_declared(spec: Spec, method: str, path: str, response: httpx.Response) -> None:
    """`response` is one of the operation's declared answers and matches its schema."""
    operation = spec["paths"][path][method]
    status = str(response.status_code)
    assert status in operation["responses"], (
        f"{method.upper()} {path} answered {status} ({response.text[:200]}) "
        f"but declares only {sorted(operation['responses'])}"
    )
    media_type = response.headers["content-type"].partition(";")[0]
    schema = operation["responses"][status]["content"][media_type]["schema"]
    validator = Draft202012Validator({**schema, "components": spec["components"]})
    problems = [error.message for error in validator.iter_errors(response.json())]
    assert not problems, f"{method.upper()} {path} {status}: {problems}: {response.text[:300]}"
