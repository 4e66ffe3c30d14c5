"""The server's MLClient speaks the ML service's own models, and importing them is cheap."""

from __future__ import annotations

import subprocess
import sys

from convassist.ml.generation.schemas import GenerateRequest, GenerateResponse
from convassist.server import ml_client

HEAVY = ("llama_cpp", "torch", "transformers", "peft", "numpy")


def test_importing_the_client_and_the_wire_models_loads_no_ml_runtime() -> None:
    code = (
        "import sys, convassist.server.ml_client, convassist.server.app\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


def test_the_client_has_no_models_of_its_own() -> None:
    for name in ("Candidate", "Generation", "JobState"):
        assert not hasattr(ml_client, name)


def test_model_version_keeps_its_snake_case_name_on_the_wire() -> None:
    sent = {
        "response": "ok",
        "candidates": [{"text": "ok", "confidence": 0.5}],
        "confidence": 0.5,
        "model_version": "smollm2-135m-instruct@b179c9523d0e",
        "cached": False,
        "timings": {"totalMs": 1.0},
    }
    parsed = GenerateResponse.model_validate(sent)
    assert parsed.model_version == "smollm2-135m-instruct@b179c9523d0e"
    assert parsed.timings.total_ms == 1.0
    body = GenerateRequest(prompt="Me:", max_tokens=8).model_dump(by_alias=True)
    assert body["maxTokens"] == 8 and "max_tokens" not in body
