"""llama-cpp-python in process: one `Llama` object behind a lock.

The generation loop is llama-cpp-python's own `generate()` (same sampler chain and KV prefix
reuse as `create_completion`), with stop sequences applied like `create_completion` applies
them. After each sampled token the loop reads that step's logits from the context to record
the chosen token's log-probability under the model's raw distribution (temperature 1, before
top-p), so confidence does not need `logits_all` (which would keep n_ctx * n_vocab floats).

A LoRA adapter (llama.cpp's GGUF LoRA format) can be switched at run time (`set_adapter`):
llama.cpp applies it beside the base weights, so switching is cheap and needs no reload. The
switch happens under the same lock as generation, and the context is reset afterwards (its
KV prefix cache was computed with the previous weights).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from convassist.core.logging import get_logger
from convassist.core.model_version import ModelVersion
from convassist.ml.backends.base import Completion, Likeliest, Sampling, check_fits
from convassist.ml.errors import ModelLoadError
from convassist.ml.models.manifest import ResolvedModel, resolve_model, verify_file
from convassist.ml.models.native import (
    NativeStatus,
    ProbeEntry,
    choose_load_config,
    decode_few_tokens,
    load_llama,
    start_up_check,
)
from convassist.ml.settings import MLSettings

log = get_logger("convassist.ml.llama")

GGUF_MAGIC = b"GGUF"


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


class LlamaBackend:
    """A GGUF model loaded with llama-cpp-python."""

    name = "llama"
    max_concurrency = 1

    def __init__(
        self,
        model: ResolvedModel,
        *,
        sha256: str,
        context_size: int,
        gpu_layers: int = -1,
        threads: int | None = None,
        native: NativeStatus | None = None,
    ) -> None:
        import llama_cpp

        self._llama_cpp = llama_cpp
        n_threads = threads or default_threads()
        self.native = native or NativeStatus(choose_load_config(), "not run")
        try:
            self._llm = load_llama(
                model.path,
                self.native.config,
                n_ctx=context_size,
                n_gpu_layers=gpu_layers,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                logits_all=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"Cannot load {model.path}: llama.cpp rejected the file ({exc}). "
                "Is it a complete GGUF model?"
            ) from exc
        self._lock = threading.Lock()
        self._lora = LoraSwitch(self._llm)
        self._n_vocab = self._llm.n_vocab()
        self.model_id = model.model_id
        self.path = model.path
        self._version = ModelVersion(model.model_id, digest=sha256[:12])
        self.base_version = str(self._version)
        self.adapter_id: str | None = None
        self._context_size = context_size
        log.info(
            "model_loaded",
            model_version=self.model_version,
            context_size=context_size,
            threads=n_threads,
            gpu_layers=gpu_layers,
            llama_config=self.native.config.name,
            llama_probe=self.native.probe,
        )

    @classmethod
    def from_settings(
        cls, settings: MLSettings, *, probe: ProbeEntry = decode_few_tokens
    ) -> LlamaBackend:
        """The configured model, its llama.cpp configuration proven first in a child process
        (`probe` is what that child runs)."""
        model = resolve_model(settings)
        sha256 = verify_file(model, settings.models_dir)
        check_gguf(model.path)
        threads = settings.threads or default_threads()
        native = start_up_check(
            model.path,
            gpu_layers=settings.gpu_layers,
            threads=threads,
            setting=settings.llama_extra_bufts,
            entry=probe,
        )
        return cls(
            model,
            sha256=sha256,
            context_size=settings.context_size,
            gpu_layers=settings.gpu_layers,
            threads=threads,
            native=native,
        )

    @property
    def model_version(self) -> str:
        """`<model id>@<sha256 prefix>`, plus `+<adapter id>` while a LoRA adapter is active."""
        return str(self._version.with_adapter(self.adapter_id or None))

    @property
    def context_size(self) -> int:
        return self._context_size

    def _tokenize(self, prompt: str) -> list[int]:
        return list(self._llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))

    def count_tokens(self, prompt: str) -> int:
        with self._lock:
            return len(self._tokenize(prompt))

    def complete(self, prompt: str, sampling: Sampling) -> Completion:
        with self._lock:
            return self._complete(prompt, sampling)

    def _complete(self, prompt: str, sampling: Sampling) -> Completion:
        llm = self._llm
        lib = self._llama_cpp
        prompt_tokens = self._tokenize(prompt)
        check_fits(len(prompt_tokens), sampling.max_tokens, self._context_size)
        llm.set_seed(sampling.seed)
        stops = [s.encode("utf-8") for s in sampling.stop]
        tokens: list[int] = []
        logprobs: list[float] = []
        text = b""
        finish_reason = "length"
        generator = llm.generate(
            prompt_tokens,
            top_k=40,
            top_p=sampling.top_p,
            min_p=0.05,
            temp=sampling.temperature,
            repeat_penalty=1.0,
        )
        with contextlib.closing(generator):
            for token in generator:
                logprobs.append(self._chosen_logprob(token))
                if lib.llama_vocab_is_eog(llm._model.vocab, token):
                    text = llm.detokenize(tokens, prev_tokens=prompt_tokens)
                    finish_reason = "stop"
                    break
                tokens.append(token)
                text = llm.detokenize(tokens, prev_tokens=prompt_tokens)
                cut = _first_stop(text, stops)
                if cut is not None:
                    text = text[:cut]
                    finish_reason = "stop"
                    break
                if len(tokens) >= sampling.max_tokens:
                    break
        return Completion(
            text=text.decode("utf-8", errors="ignore"),
            token_logprobs=tuple(logprobs),
            completion_tokens=len(logprobs),
            finish_reason=finish_reason,
        )

    def likeliest(self, prompt: str, continuations: Sequence[str]) -> Likeliest | None:
        """The continuation whose tokens have the highest mean log-probability after the
        prompt (None when none has a token). The prompt's cached tokens are kept, and its
        last token is decoded once: its logits give every continuation's first token.

        Probabilities are at most 1, so a continuation of n tokens whose first token has
        log-probability f has a mean of at most f / n. Continuations are scored in the order
        of that bound, each one decode of its tokens with the logits of every position, and
        those whose bound cannot beat the best mean so far are never decoded."""
        with self._lock:
            llm = self._llm
            prompt_tokens = self._tokenize(prompt)
            encoded = [
                list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
                for text in continuations
            ]
            if not any(encoded):
                return None
            check_fits(len(prompt_tokens), max(map(len, encoded)), self._context_size)
            cached = llm.longest_token_prefix(llm.input_ids[: llm.n_tokens], prompt_tokens)
            llm.n_tokens = min(cached, len(prompt_tokens) - 1)
            llm.eval(prompt_tokens[llm.n_tokens : -1])
            (last,) = self._decode_every_position(prompt_tokens[-1:])
            # Read before any other decode: it overwrites `last`.
            first = {
                i: self._logprob(last, tokens[0]) for i, tokens in enumerate(encoded) if tokens
            }
            best: Likeliest | None = None
            best_mean = -math.inf
            for index in sorted(first, key=lambda i: -first[i] / len(encoded[i])):
                tokens = encoded[index]
                if first[index] / len(tokens) <= best_mean:
                    break
                logprobs = [first[index]]
                if len(tokens) > 1:
                    llm.n_tokens = len(prompt_tokens)
                    rows = self._decode_every_position(tokens[:-1])
                    logprobs += [
                        self._logprob(row, token)
                        for row, token in zip(rows, tokens[1:], strict=True)
                    ]
                mean = sum(logprobs) / len(logprobs)
                if mean > best_mean:
                    best, best_mean = Likeliest(index, tuple(logprobs)), mean
            return best

    def _decode_every_position(self, tokens: list[int]) -> list[Any]:
        """Decode `tokens` after the cached ones, keeping each position's logits (the
        library's `eval` keeps only the last's unless the whole context keeps all)."""
        llm = self._llm
        llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
        llm._batch.set_batch(batch=tokens, n_past=llm.n_tokens, logits_all=True)
        llm._ctx.decode(llm._batch)
        llm.input_ids[llm.n_tokens : llm.n_tokens + len(tokens)] = tokens
        llm.n_tokens += len(tokens)
        get = self._llama_cpp.llama_get_logits_ith
        return [
            np.ctypeslib.as_array(get(llm.ctx, i), shape=(self._n_vocab,))
            for i in range(len(tokens))
        ]

    def _logprob(self, logits: Any, token: int) -> float:
        """log p(token) under `logits` (log-softmax)."""
        peak = float(logits.max())
        return float(logits[token]) - peak - float(np.log(np.exp(logits - peak).sum()))

    def _chosen_logprob(self, token: int) -> float:
        """log p(token) from the logits of the step that sampled it."""
        pointer: Any = self._llama_cpp.llama_get_logits_ith(self._llm.ctx, -1)
        return self._logprob(np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)), token)

    def set_adapter(self, adapter_id: str | None, path: Path | None) -> None:
        """Serve with this LoRA adapter from the next request on (None: the base model)."""
        with self._lock:
            self._lora.set(path)
            self.adapter_id = adapter_id if path is not None else None
        log.info("adapter_set", model_version=self.model_version)

    def close(self) -> None:
        with self._lock:
            self._lora.set(None)
            self._llm.close()


class LoraSwitch:
    """The LoRA adapter (at most one) applied by a `Llama` context, switchable at run time."""

    def __init__(self, llm: Any) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self._llm = llm
        self._adapter: Any = None

    def set(self, path: Path | None) -> None:
        """Apply the adapter at `path` (None: none) and reset the context's cached prefix."""
        lib = self._lib
        new = None
        if path is not None:
            new = lib.llama_adapter_lora_init(self._llm._model.model, str(path).encode("utf-8"))
            if not new:
                raise ModelLoadError(f"llama.cpp cannot load the LoRA adapter {path.name}.")
        ctx = self._llm.ctx
        if new is None:
            failed = lib.llama_set_adapters_lora(ctx, None, 0, None)
        else:
            adapters = (lib.llama_adapter_lora_p_ctypes * 1)(new)
            scales = (ctypes.c_float * 1)(1.0)
            failed = lib.llama_set_adapters_lora(ctx, adapters, 1, scales)
        if failed:
            if new is not None:
                lib.llama_adapter_lora_free(new)
            raise ModelLoadError("llama.cpp refused to apply the LoRA adapter.")
        if self._adapter is not None:
            lib.llama_adapter_lora_free(self._adapter)
        self._adapter = new
        self._llm.reset()


def _first_stop(text: bytes, stops: list[bytes]) -> int | None:
    positions = [text.index(stop) for stop in stops if stop in text]
    return min(positions) if positions else None


def check_gguf(path: Path) -> None:
    """Refuse a file that is not GGUF before llama.cpp sees it (clearer than its error)."""
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelLoadError(f"Cannot read {path}: {exc.strerror}.") from exc
    if magic != GGUF_MAGIC:
        raise ModelLoadError(f"{path} is not a GGUF model file (it does not start with 'GGUF').")
