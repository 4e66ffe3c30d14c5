"""Checks of this machine: Python, the CPU and llama.cpp, the model, a generation, the data dir."""

from __future__ import annotations

import platform
import shutil
import stat
import sys
import time
from pathlib import Path

from convassist.core.private import exposed_paths
from convassist.doctor.result import Context, Outcome, fail, ok, skip, warn
from convassist.ml.errors import ModelError
from convassist.ml.models.manifest import ResolvedModel, resolve_model, verify_file

MIN_PYTHON = (3, 11)
DISK_FAIL_BYTES = 256 * 1024**2
DISK_WARN_BYTES = 2 * 1024**3
CPU_FEATURES = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "asimd")
SHOWN_OFFENDERS = 3


def check_python(_: Context) -> Outcome:
    version = platform.python_version()
    where = f"{platform.python_implementation()} {version} at {sys.executable}"
    if sys.version_info < MIN_PYTHON:
        return fail(where, "Install Python 3.11 or newer and reinstall Conversation Assistant.")
    return ok(where)


def check_cpu(context: Context) -> Outcome:
    """The CPU's relevant features, the llama.cpp configuration the ML service will use and
    the number type training on this CPU takes."""
    from convassist.core.cpu import cpu_flags
    from convassist.ml.models.native import choose_load_config, has_amx
    from convassist.ml.training.device import cpu_bf16_pays

    if context.ml.backend != "llama":
        return skip(f"ML_SERVICE_BACKEND={context.ml.backend}: llama.cpp is not used")
    flags = cpu_flags()
    shown = [name for name in CPU_FEATURES if name in flags]
    amx = has_amx(flags)
    features = (
        f"{platform.machine()}, features: {', '.join(shown) or 'none of the fast ones'}"
        f"{', Intel AMX' if amx else ''}"
        if flags
        else f"{platform.machine()} (no /proc/cpuinfo: features not listed)"
    )
    config = choose_load_config(flags, context.ml.llama_extra_bufts)
    extra = "on" if config.use_extra_bufts else "off"
    training = (
        "bf16 (AMX's bf16 tiles)"
        if cpu_bf16_pays(flags)
        else "fp32 (no AMX bf16 tiles: bf16 would be slower)"
    )
    summary = (
        f"{features}; llama.cpp loads with extra buffer types {extra} ({config.reason}); "
        f"training on the CPU runs in {training}"
    )
    if amx and config.use_extra_bufts:
        return warn(
            summary,
            "llama.cpp's AMX repack crashes on this CPU: unset ML_SERVICE_LLAMA_EXTRA_BUFTS "
            "(auto turns them off here).",
        )
    return ok(summary)


def _model(context: Context) -> ResolvedModel | Outcome:
    if context.ml.backend != "llama":
        return skip(f"ML_SERVICE_BACKEND={context.ml.backend}: no local model file")
    try:
        return resolve_model(context.ml)
    except ModelError as exc:
        return fail("the model file is missing", str(exc))


def check_model(context: Context) -> Outcome:
    """The model file is there and matches the manifest's checksum."""
    model = _model(context)
    if isinstance(model, Outcome):
        return model
    try:
        sha256 = verify_file(model, context.ml.models_dir)
    except ModelError as exc:
        return fail(f"{model.model_id}: the file does not match its checksum", str(exc))
    size = model.path.stat().st_size / 1024**2
    pinned = model.spec is not None and bool(model.spec.sha256)
    checked = "matches the manifest" if pinned else "(no checksum pinned for this file)"
    return ok(f"{model.model_id}: {model.path} ({size:,.0f} MB), SHA-256 {sha256[:12]}… {checked}")


def check_generation(context: Context) -> Outcome:
    """A real few-token decode, in a child process (a native crash cannot take doctor down)."""
    from convassist.ml.backends.llama import default_threads
    from convassist.ml.models.native import PROBE_TOKENS, start_up_check

    model = _model(context)
    if isinstance(model, Outcome):
        return skip(f"no model to generate with ({model.summary})")
    started = time.perf_counter()
    try:
        native = start_up_check(
            model.path,
            gpu_layers=context.ml.gpu_layers,
            threads=context.ml.threads or default_threads(),
            setting=context.ml.llama_extra_bufts,
        )
    except ModelError as exc:
        return fail("llama.cpp crashed decoding a few tokens", str(exc))
    seconds = time.perf_counter() - started
    done = f"decoded {PROBE_TOKENS} tokens with {model.model_id} in {seconds:.1f} s"
    if native.probe == "ok":
        return ok(f"{done} (extra buffer types {'on' if native.config.use_extra_bufts else 'off'})")
    if native.probe.startswith("fell back"):
        return warn(
            f"{done}, but only with extra buffer types off (the probe {native.probe})",
            "The ML service falls back by itself at start-up; set "
            "ML_SERVICE_LLAMA_EXTRA_BUFTS=off to skip the failing try.",
        )
    return fail(
        f"llama.cpp could not decode with {model.path.name}: {native.probe}",
        f"The file may be damaged: delete {model.path} and run "
        f"`convassist models pull {model.model_id}`, or set ML_SERVICE_MODEL_PATH.",
    )


def _existing(path: Path) -> Path:
    """`path` or its nearest existing parent (the data dir may not exist yet)."""
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(context: Context) -> Outcome:
    data_dir = context.server.data_dir
    free = shutil.disk_usage(_existing(data_dir)).free
    summary = f"{free / 1024**3:,.1f} GB free for {data_dir}"
    fix = "Free some disk space (training data and adapters are kept in the data dir)."
    if free < DISK_FAIL_BYTES:
        return fail(summary, fix)
    if free < DISK_WARN_BYTES:
        return warn(summary, fix)
    return ok(summary)


def check_permissions(context: Context) -> Outcome:
    """Only the owner may read the data dir (0700 folders, 0600 files)."""
    root = context.server.data_dir.expanduser()
    if not root.exists():
        return warn(
            f"{root} does not exist yet", "It is created (owner-only) by the first `convassist up`."
        )
    loose = exposed_paths(root)
    if not loose:
        return ok(f"{root} and everything in it are the owner's only")
    shown = ", ".join(f"{p} ({stat.filemode(p.lstat().st_mode)})" for p in loose[:SHOWN_OFFENDERS])
    more = f" and {len(loose) - SHOWN_OFFENDERS} more" if len(loose) > SHOWN_OFFENDERS else ""
    return fail(
        f"{len(loose)} path(s) readable by others: {shown}{more}",
        f"chmod -R go-rwx {root}",
    )
