"""The LLM manager and the llama backend, on the real default model."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from convassist.core.replies import normalize
from convassist.ml.backends.base import Completion, Sampling
from convassist.ml.backends.llama import LlamaBackend
from convassist.ml.errors import ModelLoadError, ModelNotFoundError, PromptTooLong
from convassist.ml.generation.manager import GenerationParams, LLMManager, near_duplicate
from convassist.ml.models.manifest import DEFAULT_STOP
from tests.ml.conftest import PROMPT, ml_settings


def params(**overrides: object) -> GenerationParams:
    values: dict[str, object] = {
        "max_tokens": 48,
        "temperature": 0.8,
        "top_p": 0.95,
        "stop": DEFAULT_STOP,
        "seed": 7,
        "n": 1,
    }
    values.update(overrides)
    return GenerationParams(**values)  # type: ignore[arg-type]


async def test_a_fixed_seed_reproduces_the_output(manager: LLMManager) -> None:
    first = await manager.generate(PROMPT, params(seed=1234))
    second = await manager.generate(PROMPT, params(seed=1234))
    assert first.candidates == second.candidates
    assert first.candidates[0].text.strip()
    others = {
        (await manager.generate(PROMPT, params(seed=seed))).candidates[0].text for seed in (1, 2, 3)
    }
    assert len(others) > 1, "different seeds should sample different replies"


async def test_default_stop_sequences_end_the_reply(manager: LLMManager) -> None:
    for seed in range(3):
        generation = await manager.generate(PROMPT, params(seed=seed, max_tokens=128))
        text = generation.candidates[0].text
        assert not any(stop in text for stop in DEFAULT_STOP), text


async def test_a_custom_stop_sequence_cuts_the_text_before_it(manager: LLMManager) -> None:
    free = await manager.generate(PROMPT, params(temperature=0, stop=(), max_tokens=40))
    full = free.candidates[0].text
    words = re.findall(r"[A-Za-z]{3,}", full)
    assert len(words) >= 3, full
    stop = words[2]
    cut = await manager.generate(PROMPT, params(temperature=0, stop=(stop,), max_tokens=40))
    assert cut.candidates[0].text == full[: full.index(stop)]


async def test_confidence_is_a_probability_from_the_model(manager: LLMManager) -> None:
    generation = await manager.generate(PROMPT, params(seed=3))
    confidence = generation.candidates[0].confidence
    assert confidence is not None and 0 < confidence <= 1
    backend = manager.backend
    completion = backend.complete(
        PROMPT, Sampling(max_tokens=16, temperature=0, top_p=1, stop=(), seed=0)
    )
    assert all(lp <= 0 for lp in completion.token_logprobs)
    assert completion.completion_tokens == len(completion.token_logprobs) == 16
    # Greedy decoding picks each step's most likely token, so every chosen token's
    # probability is substantial; the geometric mean is their exp-mean-log.
    assert completion.confidence is not None and completion.confidence > 0.05


def test_confidence_formula() -> None:
    completion = Completion(
        text="x", token_logprobs=(-0.1, -0.3), completion_tokens=2, finish_reason="stop"
    )
    assert completion.confidence == pytest.approx(0.8187, abs=1e-4)  # exp(-0.2)
    empty = Completion(text="", token_logprobs=(), completion_tokens=0, finish_reason="stop")
    assert empty.confidence is None


async def test_candidates_are_distinct_and_best_first(manager: LLMManager) -> None:
    generation = await manager.generate(PROMPT, params(n=3, seed=11, temperature=1.0))
    texts = [c.text for c in generation.candidates]
    assert len(texts) == 3
    keys = [normalize(t) for t in texts]
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            assert not near_duplicate(a, b), texts
    confidences = [c.confidence or 0 for c in generation.candidates]
    assert confidences == sorted(confidences, reverse=True)


async def test_temperature_zero_still_gives_distinct_candidates(manager: LLMManager) -> None:
    greedy = await manager.generate(PROMPT, params(temperature=0, n=1))
    several = await manager.generate(PROMPT, params(temperature=0, n=3, seed=5))
    texts = [c.text for c in several.candidates]
    assert greedy.candidates[0].text in texts
    assert len({normalize(t) for t in texts}) == len(texts) >= 2


def test_near_duplicates() -> None:
    assert near_duplicate(normalize("Sounds good!"), normalize("sounds good"))
    assert near_duplicate(normalize("See you at 5 then"), normalize("See you at 5 then!!"))
    assert not near_duplicate(normalize("Sure, why not"), normalize("No, sorry, I'm busy"))


async def test_a_prompt_longer_than_the_context_is_refused(manager: LLMManager) -> None:
    long_prompt = "Them: hello there\n" * 900 + "Me:"
    with pytest.raises(PromptTooLong, match="context of 4096 tokens"):
        await manager.generate(long_prompt, params())


async def test_inference_leaves_the_event_loop_free(manager: LLMManager) -> None:
    task = asyncio.create_task(manager.generate(PROMPT, params(max_tokens=200, stop=())))
    ticks = 0
    while not task.done():
        await asyncio.sleep(0.01)
        ticks += 1
    await task
    assert ticks > 20


def test_model_version_names_base_and_adapter(manager: LLMManager) -> None:
    backend = manager.backend
    assert isinstance(backend, LlamaBackend)
    assert re.fullmatch(r"smollm2-135m-instruct@[0-9a-f]{12}", backend.model_version)
    assert backend.model_version == "smollm2-135m-instruct@b179c9523d0e"
    backend.adapter_id = "lora-20260101"
    try:
        assert manager.model_version == "smollm2-135m-instruct@b179c9523d0e+lora-20260101"
    finally:
        backend.adapter_id = None


def test_a_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    settings = ml_settings(tmp_path, model_path=tmp_path / "nope.gguf")
    with pytest.raises(ModelNotFoundError, match=r"nope\.gguf is not a file"):
        LlamaBackend.from_settings(settings)


def test_a_file_that_is_not_gguf_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"<html>404 Not Found</html>" * 100)
    with pytest.raises(ModelLoadError, match="not a GGUF model file"):
        LlamaBackend.from_settings(ml_settings(tmp_path, model_path=path))


def test_a_truncated_gguf_is_a_clear_error(tmp_path: Path, default_model_path: Path) -> None:
    path = tmp_path / "truncated.gguf"
    with default_model_path.open("rb") as fh:
        path.write_bytes(fh.read(2_000_000))
    with pytest.raises(ModelLoadError, match=r"llama\.cpp rejected the file"):
        LlamaBackend.from_settings(ml_settings(tmp_path, model_path=path))


def test_a_manifest_model_with_the_wrong_checksum_is_refused(
    tmp_path: Path, default_model_path: Path
) -> None:
    from convassist.ml.models.manifest import ResolvedModel, load_manifest, verify_file

    spec = load_manifest().get("smollm2-135m-instruct")
    copy = tmp_path / "copy.gguf"
    with default_model_path.open("rb") as fh:
        copy.write_bytes(fh.read(1_000_000))
    resolved = ResolvedModel(model_id=spec.id, path=copy, spec=spec)
    with pytest.raises(ModelLoadError, match="does not match the checksum"):
        verify_file(resolved, tmp_path)
