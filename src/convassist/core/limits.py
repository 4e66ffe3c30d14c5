"""Input limits the API server and the ML service both check.

The server validates what it forwards with the same values, so a request the ML service
would refuse is answered 422 at the server instead of a 503 from upstream.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

SEED_SPACE = 2**31
"""Sampling seeds are `0 ≤ seed < SEED_SPACE` (llama.cpp takes a 32-bit seed)."""

ADAPTER_ID_PATTERN = r"^lora-[a-z0-9]{1,64}$"
"""A LoRA adapter id: `lora-` and letters or digits of its training job's id."""

AdapterIdPath = Annotated[str, Path(pattern=ADAPTER_ID_PATTERN, description="A LoRA adapter id.")]
"""The `{adapter_id}` path parameter: anything else is a 422 before any work."""
