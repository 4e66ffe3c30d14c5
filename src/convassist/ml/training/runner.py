"""The training job process: `python -m convassist.ml.training.runner <job dir>`.

Reads `spec.json` and `samples.jsonl`, holds out part of the conversations, trains the LoRA,
exports it, measures it on the held-out replies against the base model and the adapter
active when the job was queued (perplexity, suggestions, the activation gate:
`quality/assess.py`), stores the adapter, and reports every step to the process that
started it (its supervisor): one JSON object a line on stdout (`files.RunnerReport`;
anything else printing goes to stderr, the log). SIGTERM cancels it at once (even while the
model loads); it exits by itself within a second when its supervisor dies (a watcher thread
sees its parent change).
It never runs inside the serving process: the ML service (or `convassist worker`) starts it.

Progress: 0-5 % preparing, 5-10 % loading the model, 10-85 % training, 85-100 % export and
evaluation.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO

from convassist.core.logging import configure_logging, get_logger
from convassist.ml.training.device import DeviceUnavailable
from convassist.ml.training.files import JobFiles, JobSpec, read_json, utcnow
from convassist.ml.training.yielding import lower_priority

log = get_logger("convassist.ml.training.runner")

PARENT_CHECK_SECONDS = 0.5
PR_SET_PDEATHSIG = 1
REPORT_SECONDS = 1.0
"""Training progress is reported every 5 steps, and after any step a second after the last."""


class Stopped(Exception):
    """The job was cancelled (SIGTERM)."""


class Reporter:
    """Sends the job's state to the supervisor, one JSON line per change."""

    def __init__(self, reports: TextIO) -> None:
        self.reports = reports
        self.state: dict[str, Any] = {
            "status": "training",
            "progress": 0,
            "error": None,
            "adapterId": None,
            "outputPath": None,
            "metrics": {},
            "startedAt": utcnow(),
            "completedAt": None,
            "pid": os.getpid(),
        }

    def update(self, **changes: Any) -> None:
        self.state.update(changes)
        self.state["updatedAt"] = utcnow()
        try:
            self.reports.write(json.dumps(self.state, ensure_ascii=False) + "\n")
            self.reports.flush()
        except BrokenPipeError:
            orphaned()

    def finish(self, status: str, **changes: Any) -> None:
        self.update(status=status, completedAt=utcnow(), **changes)


def run(files: JobFiles, spec: JobSpec, reporter: Reporter, policy: str, started: float) -> None:
    """The job, from `started` (its `time.monotonic()` start, where its budget begins)."""
    from convassist.ml.adapters.factory import make_adapter_store
    from convassist.ml.settings import MLSettings
    from convassist.ml.training import budget, dataset

    budget_seconds = spec.budget_minutes * 60
    samples = dataset.read_samples(files.samples)
    kept = dataset.usable(samples)
    train_samples, heldout_samples = dataset.split_by_conversation(kept, spec.holdout_fraction)
    metrics: dict[str, Any] = {
        "samples": len(samples),
        "skippedSamples": len(samples) - len(kept),
        "trainSamples": len(train_samples),
        "heldOutSamples": len(heldout_samples),
        "heldOutConversations": len({s.conversation_id for s in heldout_samples}),
        "budgetMinutes": spec.budget_minutes,
        "epochs": spec.epochs,
        "learningRate": spec.learning_rate,
        "loraRank": spec.lora_rank,
        "targetModules": spec.target_modules,
        "loraLayers": spec.lora_layers,
        "maxLength": spec.max_length,
        "batchSize": spec.batch_size,
        "seed": spec.seed,
        "priority": policy,
    }
    if not train_samples:
        raise ValueError(
            "No usable training samples: every sample had an empty reply, a prompt that "
            "does not end with 'Me:', or quality 0."
        )
    # Newest first (what a plan that cannot take every sample keeps), at each context length.
    ordered = [
        train_samples[i] for i in budget.newest_first([s.conversation_id for s in train_samples])
    ]
    tokenizer = dataset.LlamaTokenizer(Path(spec.model_path))
    examples = {
        n: dataset.build_examples(ordered, tokenizer, n, own_lines=True)
        for n in budget.contexts(spec.max_length)
    }
    tokenizer.close()
    reporter.update(progress=5, metrics=metrics)
    log.info("training_prepared", job_id=spec.job_id, train=len(ordered))

    import torch

    from convassist.ml.training import export, trainer

    config = trainer.TrainConfig(
        epochs=1,  # the calibration's pass; the plan says how many follow
        learning_rate=spec.learning_rate,
        rank=spec.lora_rank,
        alpha=spec.lora_alpha,
        seed=spec.seed,
        batch_size=spec.batch_size,
        target_modules=tuple(spec.target_modules),
        layers=spec.lora_layers,
        threads=spec.threads,
        device=spec.device,
    )
    metrics["loraAlpha"] = config.lora_alpha
    model = trainer.load_model(Path(spec.model_path))
    peft_model = trainer.add_lora(model, config)
    total_layers = int(model.config.num_hidden_layers)
    metrics["loraLayers"] = trainer.lora_layer_count(config, total_layers)
    reporter.update(progress=10, metrics=metrics)

    def plan_rest(calibration: trainer.Calibration) -> trainer.Continuation:
        """The budget's plan, from the throughput of the first steps (ValueError: none fits)."""
        situation = budget.Situation(
            budget_seconds=budget_seconds,
            spent_seconds=time.monotonic() - started,
            tokens_per_second=calibration.tokens_per_second,
            layers=metrics["loraLayers"],
            total_layers=total_layers,
            lengths={n: [len(e) for e in chosen] for n, chosen in examples.items()},
            epochs=spec.epochs,
            hardware=f"{calibration.device}/{calibration.dtype}",
        )
        plan = budget.choose(situation)
        metrics.update(
            plan=plan.metrics(),
            epochs=plan.epochs,
            loraLayers=plan.layers,
            maxLength=plan.max_length,
        )
        reporter.update(metrics=metrics)
        log.info(
            "training_planned",
            job_id=spec.job_id,
            tokens_per_second=round(calibration.tokens_per_second, 1),
            epochs=plan.epochs,
            layers=plan.layers,
            max_length=plan.max_length,
            samples=plan.samples,
            estimated_seconds=round(plan.estimated_seconds, 1),
        )
        chosen = examples[plan.max_length][: plan.samples]
        return trainer.Continuation(chosen, plan.epochs, plan.layers)

    last_report = [time.monotonic()]

    def on_progress(progress: trainer.Progress) -> None:
        due = time.monotonic() - last_report[0] >= REPORT_SECONDS or progress.step % 5 == 0
        if due or progress.step == progress.total_steps:
            last_report[0] = time.monotonic()
            percent = 10 + int(75 * progress.step / progress.total_steps)
            reporter.update(
                progress=percent,
                metrics={
                    **metrics,
                    "step": progress.step,
                    "totalSteps": progress.total_steps,
                    "loss": round(progress.loss, 4),
                    "tokensPerSecond": round(progress.tokens_per_second, 1),
                },
            )

    result = trainer.train(
        peft_model,
        examples[spec.max_length],
        config,
        pad_id=int(model.config.eos_token_id or 0),
        on_progress=on_progress,
        calibrate=plan_rest,
        deadline=started + budget_seconds - budget.reserve_seconds(budget_seconds),
    )
    metrics.update(
        threads=torch.get_num_threads(),
        steps=result.steps,
        trainTokens=result.tokens,
        trainSeconds=round(result.seconds, 2),
        tokensPerSecond=round(result.tokens_per_second, 1),
        finalLoss=round(result.final_loss, 4),
        stoppedEarly=result.stopped_early,
        device=result.device,
        dtype=result.dtype,
    )
    # The store its parent uses (`MLSettings.runner_env`): with Redis, every instance's.
    store = make_adapter_store(MLSettings())
    adapter_id = store.new_id(spec.job_id)
    export.export_adapter(
        peft_model, files.adapter, model_path=Path(spec.model_path), name=adapter_id
    )
    del peft_model, model
    reporter.update(progress=88, metrics=metrics)
    from convassist.ml.training.quality.assess import assess

    metrics.update(
        assess(
            spec,
            samples,
            (adapter_id, files.adapter),
            store,
            deadline=budget.evaluation_deadline(started, budget_seconds),
        )
    )
    metrics["durationSeconds"] = round(time.monotonic() - started, 2)
    metrics["withinBudget"] = (
        metrics["durationSeconds"] <= budget_seconds + budget.TOLERANCE_SECONDS
    )
    info = store.save(
        files.adapter,
        job_id=spec.job_id,
        base_model=spec.base_model,
        base_version=spec.base_version,
        metrics=metrics,
        settings={k: metrics[k] for k in ("epochs", "learningRate", "loraRank", "loraAlpha")},
        adapter_id=adapter_id,
    )
    store.close()
    reporter.finish(
        "completed", progress=100, metrics=metrics, adapterId=info.id, outputPath=str(info.path)
    )
    log.info(
        "training_completed",
        job_id=spec.job_id,
        adapter_id=info.id,
        steps=result.steps,
        tokens_per_second=metrics["tokensPerSecond"],
        seconds=metrics["durationSeconds"],
    )


def orphaned() -> NoReturn:
    """The supervisor is gone (nobody reads the reports): stop now, without a word to it."""
    log.warning("training_orphaned")
    os._exit(3)


def die_with_parent() -> None:
    """Linux: the kernel kills this process when its supervisor dies, even while the
    supervisor holds it stopped (`yielding.RunnerPause`); `watch_parent` covers the rest."""
    if sys.platform != "linux":
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def watch_parent() -> None:
    """Exit as soon as the supervisor dies: nobody would read the job's reports any more."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        orphaned()

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Stopped("The job was cancelled.")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m convassist.ml.training.runner JOB_DIR", file=sys.stderr)
        return 2
    started = time.monotonic()
    files = JobFiles(Path(argv[0]))
    spec = JobSpec.from_json(read_json(files.spec) or {})
    # First of all, while this is the only thread: new threads inherit the priority.
    policy = lower_priority(spec.priority)
    configure_logging(os.environ.get("CONVASSIST_LOG_LEVEL", "INFO"), "json", "trainer")
    # Before torch/transformers are imported: no progress bars or library chatter in the log.
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    die_with_parent()
    watch_parent()
    # Reports go to the supervisor on the original stdout; stray prints go to the log.
    reports = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    reporter = Reporter(reports)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        reporter.update()
        run(files, spec, reporter, policy, started)
    except Stopped as exc:
        reporter.finish("cancelled", error=str(exc))
        log.info("training_stopped", status="cancelled")
        return 0
    except Exception as exc:
        reporter.finish("failed", error=failure_message(exc))
        log.error("training_failed", error_type=type(exc).__name__)
        return 1
    return 0


def failure_message(exc: BaseException) -> str:
    """What the job reports; only our own errors' text (never data), else the error type.
    A worker whose machine lacks `ML_SERVICE_TRAIN_DEVICE` fails here (`DeviceUnavailable`):
    the service checked its own machine only."""
    if isinstance(exc, DeviceUnavailable):
        return f"Training failed: {exc.detail}"
    if isinstance(exc, ValueError | OSError | MemoryError):
        return f"Training failed: {str(exc)[:300] or type(exc).__name__}"
    return f"Training failed ({type(exc).__name__})."


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
