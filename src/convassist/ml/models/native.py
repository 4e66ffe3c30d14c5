"""llama.cpp's load configuration: the one place a `llama_cpp.Llama` is made (`load_llama`).

llama.cpp's CPU backend can load weights into "extra buffer types" that repack them for the
CPU's matrix units. On CPUs with Intel AMX (Sapphire Rapids and newer Xeons, many cloud VMs)
the AMX one crashes the first decode with SIGSEGV in `ggml_backend_amx_mul_mat`
(llama.cpp #20824, closed without a fix). So they are off where `/proc/cpuinfo` lists an AMX
flag and on elsewhere, where the repack is only a speed-up; `ML_SERVICE_LLAMA_EXTRA_BUFTS`
overrides. llama-cpp-python 0.3 has no keyword for this (it silently ignores unknown ones),
so `load_llama` sets the field of the model parameters `Llama` loads with, and checks it took.

A native crash cannot be caught in the process it happens in, so the ML service first proves
its configuration in a child process (`start_up_check`, built on `probe_decode`): load, decode
a few tokens. A child killed by a signal → the safe configuration is probed and used (and
`/health` says so); if that dies too, the service refuses to start, naming the signal.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from convassist.core.cpu import cpu_flags
from convassist.core.logging import get_logger
from convassist.core.processes import signal_name
from convassist.ml.errors import ModelLoadError
from convassist.ml.settings import ExtraBufts, MLSettings

log = get_logger("convassist.ml.models.native")

AMX_FLAGS = frozenset({"amx_tile", "amx_int8", "amx_bf16"})
PROBE_PROMPT = "Them: Hey, how's it going? Are we still on for lunch tomorrow?\nMe:"
PROBE_TOKENS = 4
"""Tokens the probe decodes one by one, after evaluating the prompt as one batch."""
PROBE_CONTEXT = 256
PROBE_MODULE = "convassist.ml.models.native"
"""The probe child runs `python -m` this module (see the end of the file)."""
PROBE_TIMEOUT_SECONDS = 300.0
"""A probe that has not finished by then (a hang, not a slow load) counts as a failure."""

ConfigName = Literal["default", "safe"]


@dataclass(frozen=True)
class LlamaLoadConfig:
    """How llama.cpp loads a model: `default` keeps its extra buffer types, `safe` does not."""

    name: ConfigName
    use_extra_bufts: bool
    reason: str


def has_amx(flags: frozenset[str]) -> bool:
    return bool(flags & AMX_FLAGS)


def choose_load_config(
    flags: frozenset[str] | None = None, setting: ExtraBufts | None = None
) -> LlamaLoadConfig:
    """The configuration for this CPU (`flags`, default: this machine's) and `setting`
    (default: ML_SERVICE_LLAMA_EXTRA_BUFTS)."""
    setting = setting or MLSettings().llama_extra_bufts
    if setting == "on":
        return named_config("default", "ML_SERVICE_LLAMA_EXTRA_BUFTS=on")
    if setting == "off":
        return named_config("safe", "ML_SERVICE_LLAMA_EXTRA_BUFTS=off")
    amx = sorted((cpu_flags() if flags is None else flags) & AMX_FLAGS)
    if amx:
        return named_config(
            "safe",
            f"the CPU has Intel AMX ({', '.join(amx)}): llama.cpp's AMX repack crashes "
            "(llama.cpp #20824)",
        )
    return named_config("default", "no Intel AMX on this CPU")


def named_config(name: ConfigName, reason: str) -> LlamaLoadConfig:
    """`default` (extra buffer types on) or `safe` (off)."""
    return LlamaLoadConfig(name, name == "default", reason)


_load_lock = threading.Lock()


@contextmanager
def loading_with(config: LlamaLoadConfig) -> Iterator[None]:
    """While inside, a `Llama(...)` made in this process loads with `config` (one such block
    at a time: it swaps the module function `Llama` takes its model parameters from)."""
    import llama_cpp.llama_cpp as lib

    original = lib.llama_model_default_params

    def with_config() -> Any:
        model_params = original()
        model_params.use_extra_bufts = config.use_extra_bufts
        return model_params

    with _load_lock:
        lib.llama_model_default_params = with_config
        try:
            yield
        finally:
            lib.llama_model_default_params = original


def load_llama(model_path: Path, config: LlamaLoadConfig | None = None, **params: Any) -> Any:
    """A `llama_cpp.Llama` for `model_path` loaded with `config` (None: `choose_load_config()`);
    `params` are `Llama`'s other keywords. Every llama.cpp load in the product comes here."""
    import llama_cpp

    config = config or choose_load_config()
    with loading_with(config):
        llm = llama_cpp.Llama(model_path=str(model_path), **{"verbose": False, **params})
    if bool(llm.model_params.use_extra_bufts) != config.use_extra_bufts:
        llm.close()
        raise ModelLoadError(
            "This llama-cpp-python does not load models the way convassist sets "
            "use_extra_bufts; pin llama-cpp-python 0.3.x."
        )
    return llm


@dataclass(frozen=True)
class ProbeRequest:
    """What the probe child loads (the same file and parameters the service will use)."""

    model_path: str
    config: LlamaLoadConfig
    gpu_layers: int
    threads: int


@dataclass(frozen=True)
class ProbeOutcome:
    """How the probe child ended: `signal` is set when it was killed by one."""

    exitcode: int | None
    seconds: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exitcode == 0

    @property
    def signal(self) -> str | None:
        return signal_name(self.exitcode)

    @property
    def crashed(self) -> bool:
        """Killed by a signal, or hung: the configuration cannot be trusted."""
        return self.signal is not None or self.timed_out

    @property
    def cause(self) -> str:
        if self.timed_out:
            return f"no answer within {self.seconds:g} s"
        return self.signal or f"exit status {self.exitcode}"


def decode_few_tokens(request: ProbeRequest) -> None:
    """The probe child: load the model, evaluate a prompt, decode PROBE_TOKENS tokens.

    A Python error (a file llama.cpp rejects) ends it with status 1 and no traceback: the
    service's own load then reports it as a clear ModelLoadError.
    """
    try:
        llm = load_llama(
            Path(request.model_path),
            request.config,
            n_ctx=PROBE_CONTEXT,
            n_gpu_layers=request.gpu_layers,
            n_threads=request.threads,
            n_threads_batch=request.threads,
        )
        prompt = llm.tokenize(PROBE_PROMPT.encode("utf-8"), add_bos=True, special=True)
        for count, _token in enumerate(llm.generate(prompt, temp=0.0), start=1):
            if count == PROBE_TOKENS:
                break
        llm.close()
    except Exception:
        sys.exit(1)


ProbeEntry = Callable[[ProbeRequest], None]


def probe_decode(
    request: ProbeRequest,
    *,
    entry: ProbeEntry = decode_few_tokens,
    timeout: float = PROBE_TIMEOUT_SECONDS,
) -> ProbeOutcome:
    """Run `entry(request)` in a fresh child process (`python -m convassist.ml.models.native`, with
    this process's import path) and say how it ended."""
    command = [
        sys.executable,
        "-m",
        PROBE_MODULE,
        f"{entry.__module__}:{entry.__qualname__}",
        json.dumps(asdict(request)),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    started = time.perf_counter()
    try:
        done = subprocess.run(  # noqa: S603 - this interpreter, arguments built here
            command, stdin=subprocess.DEVNULL, env=env, timeout=timeout
        )
    except subprocess.TimeoutExpired:  # the child has been killed
        return ProbeOutcome(None, round(time.perf_counter() - started, 2), timed_out=True)
    return ProbeOutcome(done.returncode, round(time.perf_counter() - started, 2))


@dataclass(frozen=True)
class NativeStatus:
    """The configuration the service loads with and what its start-up probe found."""

    config: LlamaLoadConfig
    probe: str
    """`ok`, `fell back after SIGSEGV`, `not run`, or why the child failed otherwise."""


def start_up_check(
    model_path: Path,
    *,
    gpu_layers: int,
    threads: int,
    setting: ExtraBufts,
    entry: ProbeEntry = decode_few_tokens,
) -> NativeStatus:
    """Choose the configuration and prove it decodes in a child; fall back to the safe one
    if the child dies by a signal; raise ModelLoadError (naming the signal) if that dies too."""
    chosen = choose_load_config(setting=setting)
    outcome = probe_decode(ProbeRequest(str(model_path), chosen, gpu_layers, threads), entry=entry)
    if not outcome.crashed:
        probe = "ok" if outcome.ok else f"failed ({outcome.cause})"
        log.info("llama_probe", config=chosen.name, probe=probe, seconds=outcome.seconds)
        return NativeStatus(chosen, probe)
    log.warning("llama_probe_crashed", config=chosen.name, cause=outcome.cause)
    if not chosen.use_extra_bufts:
        raise _refusal(outcome.cause)
    safe = named_config("safe", f"the default configuration died ({outcome.cause}) at start-up")
    retry = probe_decode(ProbeRequest(str(model_path), safe, gpu_layers, threads), entry=entry)
    if retry.crashed:
        log.warning("llama_probe_crashed", config=safe.name, cause=retry.cause)
        raise _refusal(f"{outcome.cause}, then {retry.cause} with extra buffer types off")
    probe = f"fell back after {outcome.cause}"
    log.warning("llama_probe", config=safe.name, probe=probe, seconds=retry.seconds)
    return NativeStatus(safe, probe)


def _refusal(cause: str) -> ModelLoadError:
    return ModelLoadError(
        f"llama.cpp crashed ({cause}) decoding a few tokens at start-up, even with the safe "
        "configuration: not starting. Try another build of llama-cpp-python, or "
        "ML_SERVICE_BACKEND=openai."
    )


def _probe_child(entry: str, request: str) -> None:
    module, _, name = entry.partition(":")
    function: ProbeEntry = getattr(importlib.import_module(module), name)
    data = json.loads(request)
    data["config"] = LlamaLoadConfig(**data["config"])
    function(ProbeRequest(**data))


if __name__ == "__main__":
    _probe_child(*sys.argv[1:3])
