"""Configuration of the ML service and its worker (the seed's `ML_SERVICE_*` variables)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from convassist.core.settings import CommonSettings, default_cache_dir
from convassist.core.training import DEFAULT_BATCH_SIZE, DEFAULT_MAX_CONTEXT
from convassist.ml.training.device import TrainDeviceSetting
from convassist.ml.training.yielding import TrainPriority

Backend = Literal["llama", "openai"]
ExtraBufts = Literal["auto", "on", "off"]

DEFAULT_QUEUE_NAME = "conv-assistant:queue:generation"
DEFAULT_TRAINING_QUEUE_NAME = "conv-assistant:queue:training"


def default_models_dir() -> Path:
    return default_cache_dir() / "models"


class MLSettings(CommonSettings):
    """The ML service (port 8100) and `convassist worker`."""

    model_id: str | None = Field(
        None,
        validation_alias="ML_SERVICE_MODEL_ID",
        description="Model id from the manifest (`convassist models list`); "
        "unset = smollm2-135m-instruct.",
    )
    model_path: Path | None = Field(
        None,
        validation_alias="ML_SERVICE_MODEL_PATH",
        description="A GGUF file to load; wins over ML_SERVICE_MODEL_ID.",
    )
    gpu_layers: int = Field(
        -1,
        validation_alias="ML_SERVICE_GPU_LAYERS",
        ge=-1,
        description="Layers offloaded to the GPU (-1 = all, 0 = CPU only).",
    )
    context_size: int = Field(
        4096,
        validation_alias="ML_SERVICE_CONTEXT_SIZE",
        ge=128,
        description="Context window in tokens (prompt + reply).",
    )
    threads: int | None = Field(
        None,
        validation_alias="ML_SERVICE_THREADS",
        ge=1,
        description="CPU threads for inference; unset = every core this process may use.",
    )
    llama_extra_bufts: ExtraBufts = Field(
        "auto",
        validation_alias="ML_SERVICE_LLAMA_EXTRA_BUFTS",
        description="llama.cpp's extra buffer types (weight repacking): auto = off where the "
        "CPU has Intel AMX (its repack crashes), on elsewhere.",
    )
    models_dir: Path = Field(
        default_factory=default_models_dir,
        validation_alias="ML_SERVICE_MODELS_DIR",
        description="Where downloaded models are cached (~/.cache/convassist/models).",
    )
    backend: Backend = Field(
        "llama",
        validation_alias="ML_SERVICE_BACKEND",
        description="llama (llama-cpp-python in process) or openai (an OpenAI-compatible server).",
    )
    openai_base_url: str | None = Field(
        None,
        validation_alias="ML_SERVICE_OPENAI_BASE_URL",
        description="Base URL of the OpenAI-compatible server (llama-server, vLLM, Ollama).",
    )
    openai_api_key: str | None = Field(
        None,
        validation_alias="ML_SERVICE_OPENAI_API_KEY",
        description="Bearer token for the OpenAI-compatible server, if it needs one.",
    )
    openai_model: str | None = Field(
        None,
        validation_alias="ML_SERVICE_OPENAI_MODEL",
        description="Model name to request; unset = the first one the server lists.",
    )
    openai_timeout: float = Field(
        120.0,
        validation_alias="ML_SERVICE_OPENAI_TIMEOUT",
        gt=0,
        description="Seconds to wait for one completion from the OpenAI-compatible server.",
    )
    redis_enabled: bool = Field(
        True,
        validation_alias="ML_SERVICE_REDIS_ENABLED",
        description="Use REDIS_URL for the cache and the job queue (false = in-process).",
    )
    redis_cache_ttl: int = Field(
        3600,
        validation_alias="ML_SERVICE_REDIS_CACHE_TTL",
        gt=0,
        description="Seconds a cached response lives (Redis and in-process).",
    )
    cache_max_entries: int = Field(
        1024,
        validation_alias="ML_SERVICE_CACHE_MAX_ENTRIES",
        gt=0,
        description="Size bound of the in-process cache (used without Redis).",
    )
    queue_name: str = Field(
        DEFAULT_QUEUE_NAME,
        validation_alias="ML_SERVICE_QUEUE_NAME",
        description="Name of the SAQ generation queue in Redis.",
    )
    job_timeout: int = Field(
        300,
        validation_alias="ML_SERVICE_JOB_TIMEOUT",
        gt=0,
        description="Seconds an async generation job may run before it is failed.",
    )
    job_heartbeat: int = Field(
        10,
        validation_alias="ML_SERVICE_JOB_HEARTBEAT",
        gt=0,
        description="A running job whose worker is silent this many seconds is failed.",
    )
    job_ttl: int = Field(
        3600,
        validation_alias="ML_SERVICE_JOB_TTL",
        gt=0,
        description="Seconds a finished job's result stays readable at GET /jobs/{id}.",
    )
    host: str = Field("127.0.0.1", validation_alias="ML_SERVICE_HOST", description="Bind host.")
    port: int = Field(8100, validation_alias="ML_SERVICE_PORT", description="Bind port.")
    max_body_bytes: int = Field(
        1024 * 1024,
        validation_alias="ML_SERVICE_MAX_BODY_BYTES",
        gt=0,
        description="Largest accepted request body.",
    )

    auto_activate_adapters: bool = Field(
        True,
        validation_alias="ML_SERVICE_AUTO_ACTIVATE_ADAPTERS",
        description="Serve a training job's adapter as soon as the job completes "
        "(a job's autoActivate overrides this).",
    )
    train_threads: int | None = Field(
        None,
        validation_alias="ML_SERVICE_TRAIN_THREADS",
        ge=1,
        description="CPU threads of a training job; unset = every core this process may use.",
    )
    train_max_context: int = Field(
        DEFAULT_MAX_CONTEXT,
        validation_alias="ML_SERVICE_TRAIN_MAX_CONTEXT",
        ge=32,
        le=4096,
        description="Tokens per training example (context + reply); older context is cut.",
    )
    train_batch_size: int = Field(
        DEFAULT_BATCH_SIZE,
        validation_alias="ML_SERVICE_TRAIN_BATCH_SIZE",
        ge=1,
        le=128,
        description="Examples per training step.",
    )
    train_lora_layers: int | None = Field(
        None,
        validation_alias="ML_SERVICE_TRAIN_LORA_LAYERS",
        ge=1,
        description="Put the LoRA on the top this many layers (the backward pass stops "
        "there: fewer is faster); unset = the top half; the model's layer count = all.",
    )
    train_priority: TrainPriority = Field(
        "idle",
        validation_alias="ML_SERVICE_TRAIN_PRIORITY",
        description="CPU priority of a training job's process: idle = only CPU time nothing "
        "else wants (Linux SCHED_IDLE, nice 19), low = SCHED_BATCH and nice 19, normal = "
        "unchanged.",
    )
    train_device: TrainDeviceSetting = Field(
        "auto",
        validation_alias="ML_SERVICE_TRAIN_DEVICE",
        description="Where training jobs run: auto = CUDA if torch sees a GPU, else MPS "
        "(Apple silicon), else the CPU; cpu, cuda or mps = that device (a job is refused "
        "when it is missing). Generation keeps ML_SERVICE_GPU_LAYERS.",
    )
    train_yield_seconds: float = Field(
        30.0,
        validation_alias="ML_SERVICE_TRAIN_YIELD_SECONDS",
        ge=0,
        description="A training job is held stopped while a generation runs on this machine "
        "(Linux), at most this many seconds in a row (then it runs a second); 0 = never.",
    )
    training_queue_name: str = Field(
        DEFAULT_TRAINING_QUEUE_NAME,
        validation_alias="ML_SERVICE_TRAINING_QUEUE_NAME",
        description="Name of the SAQ training queue in Redis.",
    )
    training_max_body_bytes: int = Field(
        256 * 1024 * 1024,
        validation_alias="ML_SERVICE_TRAINING_MAX_BODY_BYTES",
        gt=0,
        description="Largest accepted POST /training/jobs body (it carries the samples).",
    )

    @property
    def use_redis(self) -> bool:
        return self.redis_enabled and bool(self.redis_url)

    @property
    def training_dir(self) -> Path:
        """Training jobs' files (spec, samples, progress, log), one folder per job."""
        return self.data_dir / "ml" / "training"

    @property
    def adapters_dir(self) -> Path:
        """The adapters (without Redis), or this instance's cache of the shared ones."""
        return self.data_dir / "adapters"

    @property
    def generation_marks_dir(self) -> Path:
        """One empty file per generation in flight on this machine (training pauses)."""
        return self.data_dir / "ml" / "generating"

    def runner_env(self) -> dict[str, str]:
        """What a training job's process needs to use this process's adapter store."""
        return {
            "CONVASSIST_DATA_DIR": str(self.data_dir),
            "REDIS_URL": self.redis_url or "",
            "ML_SERVICE_REDIS_ENABLED": "true" if self.use_redis else "false",
        }
