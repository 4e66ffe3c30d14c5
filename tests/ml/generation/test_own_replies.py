"""The owner's stock replies among the candidates, on the real default model."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from convassist.core.replies import MAX_CHARS, MAX_OWN_REPLIES, normalize
from convassist.ml.backends.base import Completion, Sampling
from convassist.ml.backends.llama import LlamaBackend
from convassist.ml.generation.manager import GenerationParams, LLMManager
from convassist.ml.generation.own import OWN_FINISH, likeliest_own_reply, with_own_reply
from convassist.ml.models.native import load_llama
from tests.ml.conftest import PROMPT

OFFERED = ["Yeah", "haha ok", "I am building a compiler for a tiny language"]
SAMPLING = Sampling(max_tokens=24, temperature=0.8, top_p=0.95, stop=("\n",), seed=3)


def llama(manager: LLMManager) -> LlamaBackend:
    backend = manager.backend
    assert isinstance(backend, LlamaBackend)
    return backend


def reference_logprobs(path: Path, prompt: str, continuation: str) -> list[float]:
    """log p of each continuation token, from one pass with every position's logits."""
    llm = load_llama(path, None, n_ctx=512, n_threads=1, n_threads_batch=1, logits_all=True)
    try:
        head = llm.tokenize(prompt.encode(), add_bos=True, special=True)
        tail = llm.tokenize(continuation.encode(), add_bos=False, special=False)
        llm.eval(head + tail)
        logits = np.asarray(llm.scores[len(head) - 1 : len(head) + len(tail) - 1], np.float64)
    finally:
        llm.close()
    peak = logits.max(axis=1, keepdims=True)
    norm = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
    return [float(logits[i, t] - norm[i]) for i, t in enumerate(tail)]


def reference_means(backend: LlamaBackend, replies: list[str]) -> list[float]:
    """Each reply's mean token log-probability as a line after PROMPT, from full passes."""
    scored = [reference_logprobs(backend.path, PROMPT, f" {r}\n") for r in replies]
    return [sum(logprobs) / len(logprobs) for logprobs in scored]


def test_the_likeliest_matches_full_passes_and_does_not_disturb_sampling(
    manager: LLMManager,
) -> None:
    backend = llama(manager)
    before = backend.complete(PROMPT, SAMPLING)
    means = reference_means(backend, OFFERED)
    likeliest = backend.likeliest(PROMPT, [f" {r}\n" for r in OFFERED])
    assert likeliest is not None
    assert likeliest.index == int(np.argmax(means))
    expected = reference_logprobs(backend.path, PROMPT, f" {OFFERED[likeliest.index]}\n")
    assert len(likeliest.token_logprobs) == len(expected) > 1
    # One token at a time (as sampling runs) and a batch differ a little in llama.cpp's
    # quantized matrix products (up to 0.15 seen); a wrong position is off by nats.
    assert np.allclose(likeliest.token_logprobs, expected, atol=0.2)
    # The order of the continuations and an earlier prompt in the cache change nothing.
    backend.complete("Them: hi\nMe:", SAMPLING)
    again = backend.likeliest(PROMPT, [f" {r}\n" for r in reversed(OFFERED)])
    assert again is not None and len(OFFERED) - 1 - again.index == likeliest.index
    assert np.allclose(again.token_logprobs, likeliest.token_logprobs, atol=1e-3)
    assert backend.complete(PROMPT, SAMPLING) == before
    assert backend.likeliest(PROMPT, ["", ""]) is None


def test_continuations_that_cannot_win_are_not_decoded(
    manager: LLMManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply whose first token alone puts its mean below the best is never decoded on."""
    backend = llama(manager)
    offered = ["Yeah", "yeah", "Yeah!", "zzzz qqqq", "Xylophone quartz"]
    means = reference_means(backend, offered)
    decoded: list[int] = []
    decode = backend._decode_every_position

    def counted(tokens: list[int]) -> list[object]:
        decoded.append(len(tokens))
        return decode(tokens)

    monkeypatch.setattr(backend, "_decode_every_position", counted)
    likeliest = backend.likeliest(PROMPT, [f" {r}\n" for r in offered])
    assert likeliest is not None and likeliest.index == int(np.argmax(means))
    assert decoded[0] == 1, "the prompt's last token, once"
    assert 1 < len(decoded) < 1 + len(offered), decoded


def test_the_likeliest_own_reply_takes_the_last_place(manager: LLMManager) -> None:
    backend = llama(manager)
    means = reference_means(backend, OFFERED)
    likeliest = OFFERED[int(np.argmax(means))]
    sampled = [Completion(text, (-0.5,), 1, "stop") for text in (" one", " two", " three")]
    kept = with_own_reply(backend, PROMPT, OFFERED, sampled, 3)
    assert len(kept) == 3
    own = [c for c in kept if c.finish_reason == OWN_FINISH]
    assert [c.text for c in own] == [likeliest]
    assert own[0].confidence == pytest.approx(np.exp(max(means)), rel=0.1)
    assert " three" not in [c.text for c in kept], "the least confident sampled one made way"
    confidences = [c.confidence or 0.0 for c in kept]
    assert confidences == sorted(confidences, reverse=True)
    # Already a candidate (in any case or punctuation): the next likeliest is offered.
    taken = [normalize(likeliest)]
    second = likeliest_own_reply(backend, PROMPT, OFFERED, taken)
    assert second is not None and second.text != likeliest
    # One candidate asked for, or nothing offered: the sampled ones as they are.
    assert with_own_reply(backend, PROMPT, OFFERED, sampled[:1], 1) == sampled[:1]
    assert with_own_reply(backend, PROMPT, [], sampled, 3) == sampled


async def test_a_generation_offers_an_own_reply(manager: LLMManager) -> None:
    params = GenerationParams(
        max_tokens=24,
        temperature=0.8,
        top_p=0.95,
        stop=("\n",),
        seed=11,
        n=3,
        own_replies=("Sounds great, see you then",),
    )
    generation = await manager.generate(PROMPT, params)
    texts = [normalize(c.text) for c in generation.candidates]
    assert "sounds great see you then" in texts
    plain = await manager.generate(
        PROMPT, GenerationParams(**{**params.__dict__, "own_replies": ()})
    )
    assert "sounds great see you then" not in [normalize(c.text) for c in plain.candidates]


async def test_own_replies_are_checked_at_the_boundary(client: httpx.AsyncClient) -> None:
    body = {"prompt": PROMPT, "n": 3, "maxTokens": 8, "seed": 1}
    for bad in (["x" * (MAX_CHARS + 1)], [""], ["ok"] * (MAX_OWN_REPLIES + 1), "yeah"):
        resp = await client.post("/generate", json={**body, "ownReplies": bad})
        assert resp.status_code == 422, (bad, resp.text)
    resp = await client.post(
        "/generate", json={**body, "ownReplies": ["Sounds great, see you then"]}
    )
    assert resp.status_code == 200, resp.text
    texts = [normalize(c["text"]) for c in resp.json()["candidates"]]
    assert "sounds great see you then" in texts
