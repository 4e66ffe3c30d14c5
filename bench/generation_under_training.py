"""Benchmark: suggestion latency while a training job runs, with and without yielding.

For each mode it starts the real ML service (`convassist ml`, the default model, no Redis,
a fresh data dir) with that mode's settings, warms it up and starts a real training job
(`POST /training/jobs`, `--samples` synthetic chat replies, 20 epochs: it outlasts the run).
Once the job steps:

1. training throughput: optimizer steps per second for `--alone` seconds alone, then for
   `--alone` seconds with a suggestion every `--gap` seconds (from the job's record);
2. suggestion latency, `--requests` pairs: each pair is one suggestion with the job's
   process stopped (SIGSTOP from here: "idle") and one with it training, in alternating
   order, `--gap` s apart, so both halves see the same load from anything else on the
   machine. A suggestion is what the server asks for: `POST /generate`, 3 candidates, 64
   tokens, temperature 0.7, stop at the line's end. Both of a pair use the same prompt and
   seed (the same tokens: the same work), one with an inert second stop ("\\n\\n", never
   reached before "\\n") so the cache never answers.

Modes (`ML_SERVICE_TRAIN_PRIORITY` / `ML_SERVICE_TRAIN_YIELD_SECONDS`):
  baseline: normal / 0   (neither mechanism: the behaviour before)
  priority: idle / 0     (SCHED_IDLE and nice 19 only)
  yield:    idle / 30    (the defaults: low priority, and the job held stopped while a
                          suggestion is generated)

Prints p50/p90 idle and under training, their ratio (goal: p50 <= 2x idle; and the median
of the pairs' ratios, robust to a machine whose load changes), the
training's steps/s alone and while suggestions run, and the load average (other work).

    .venv/bin/python bench/generation_under_training.py [--modes baseline,priority,yield]
        [--requests 15] [--gap 1.0] [--samples 200] [--alone 15]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import percentile  # noqa: E402
from tests.support.services import ML_AUTH, ML_TOKEN, clean_env, free_port, running  # noqa: E402

from convassist.core.prompt import REPLY_STOP, ChatLine, render_prompt  # noqa: E402

MODES = {
    "baseline": {"ML_SERVICE_TRAIN_PRIORITY": "normal", "ML_SERVICE_TRAIN_YIELD_SECONDS": "0"},
    "priority": {"ML_SERVICE_TRAIN_PRIORITY": "idle", "ML_SERVICE_TRAIN_YIELD_SECONDS": "0"},
    "yield": {"ML_SERVICE_TRAIN_PRIORITY": "idle", "ML_SERVICE_TRAIN_YIELD_SECONDS": "30"},
}
WORDS = [
    "ok",
    "sure",
    "lol",
    "maybe",
    "dinner",
    "class",
    "work",
    "game",
    "movie",
    "later",
    "tonight",
    "tomorrow",
    "coffee",
]


def chat(rng: random.Random, lines: int = 10) -> list[ChatLine]:
    return [
        ChatLine("them" if i % 2 == 0 else "me", " ".join(rng.choices(WORDS, k=rng.randint(3, 12))))
        for i in range(lines)
    ]


def prompts(count: int) -> list[str]:
    """Ten-message chats ending with theirs, rendered as the server renders them."""
    rng = random.Random(1)
    return [render_prompt(chat(rng, 9)) for _ in range(count)]


PROMPTS = prompts(16)


def samples(count: int) -> list[dict[str, Any]]:
    rng = random.Random(0)
    return [
        {
            "prompt": render_prompt(chat(rng)),
            "completion": " ".join(rng.choices(WORDS, k=rng.randint(2, 10))),
            "quality": 1.0,
            "conversationId": f"c{i // 5}",
        }
        for i in range(count)
    ]


def suggest(client: httpx.Client, prompt: str, seed: int, inert_stop: bool = False) -> float:
    """One suggestion; `inert_stop` adds a stop never reached before the line's end, so the
    same prompt and seed do the same work without the cache answering."""
    body = {
        "prompt": prompt,
        "n": 3,
        "maxTokens": 64,
        "temperature": 0.7,
        "stop": [*REPLY_STOP, *(["\n\n"] if inert_stop else [])],
        "seed": seed,
    }
    started = time.perf_counter()
    response = client.post("/generate", json=body)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    assert not response.json()["cached"]
    return elapsed


def job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    state: dict[str, Any] = client.get(f"/training/jobs/{job_id}").json()
    return state


def steps(client: httpx.Client, job_id: str) -> tuple[int, float]:
    """(step, paused seconds) as last reported by the job (at least once a second)."""
    metrics = job(client, job_id)["metrics"]
    return int(metrics.get("step", 0)), float(metrics.get("pausedSeconds", 0.0))


def wait_training(client: httpx.Client, job_id: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while steps(client, job_id)[0] < 3:
        state = job(client, job_id)
        if state["status"] not in ("queued", "training"):
            raise SystemExit(f"the training job ended: {state['status']} {state['error']}")
        if time.monotonic() > deadline:
            raise SystemExit("the training job did not start its steps")
        time.sleep(0.5)


def step_rate(client: httpx.Client, job_id: str, seconds: float, gap: float | None) -> float:
    """Training steps/s over `seconds`, alone (`gap` None) or with a suggestion every `gap` s."""
    step0, _ = steps(client, job_id)
    started = time.monotonic()
    seed = 50_000
    while time.monotonic() - started < seconds:
        if gap is None:
            time.sleep(0.2)
        else:
            suggest(client, PROMPTS[seed % len(PROMPTS)], seed)
            seed += 1
            time.sleep(gap)
    return (steps(client, job_id)[0] - step0) / (time.monotonic() - started)


def paired(
    client: httpx.Client, pid: int, count: int, gap: float
) -> tuple[list[float], list[float]]:
    """Suggestion latencies with the job stopped (SIGSTOP: idle) and running, alternating,
    so both see the same load from anything else on the machine."""
    idle: list[float] = []
    under: list[float] = []
    for i in range(count):
        for stopped in (True, False) if i % 2 else (False, True):
            prompt = PROMPTS[i % len(PROMPTS)]
            if stopped:
                os.kill(pid, signal.SIGSTOP)
                time.sleep(gap)
                try:
                    idle.append(suggest(client, prompt, i))
                finally:
                    os.kill(pid, signal.SIGCONT)
            else:
                time.sleep(gap)
                under.append(suggest(client, prompt, i, inert_stop=True))
    return idle, under


def run_mode(name: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = tmp / name
    env = clean_env(
        CONVASSIST_DATA_DIR=str(data),
        CONVASSIST_LOG_LEVEL="WARNING",
        CONVASSIST_LOG_FORMAT="json",
        ML_SERVICE_MODELS_DIR=str(tmp / "models"),
        ML_SERVICE_REDIS_ENABLED="false",
        ML_SERVICE_TOKEN=ML_TOKEN,
        **MODES[name],
    )
    with (
        running(["ml", "--port", str(port)], f"{base}/health", env, tmp / f"{name}.log"),
        httpx.Client(base_url=base, timeout=600, headers=ML_AUTH) as client,
    ):
        for seed in range(3):  # warm-up
            suggest(client, PROMPTS[seed], 90_000 + seed)
        job_id = str(uuid.uuid4())
        body = {
            "jobId": job_id,
            "epochs": 20,
            "holdoutFraction": 0.1,
            "autoActivate": False,
            "samples": samples(args.samples),
        }
        client.post("/training/jobs", json=body).raise_for_status()
        wait_training(client, job_id)
        pid = int((data / "ml" / "training" / job_id / "pid").read_text())
        load = os.getloadavg()[0]
        alone = step_rate(client, job_id, args.alone, None)
        busy = step_rate(client, job_id, args.alone, args.gap)
        paused0 = steps(client, job_id)[1]
        idle, under = paired(client, pid, args.requests, args.gap)
        paused = steps(client, job_id)[1] - paused0
        state = job(client, job_id)
        client.post(f"/training/jobs/{job_id}/cancel")
    return {
        "idle": idle,
        "under": under,
        "alone": alone,
        "busy": busy,
        "paused": paused,
        "load": load,
        "tokens_per_second": state["metrics"].get("tokensPerSecond"),
        "priority": state["metrics"].get("priority"),
    }


def report(name: str, r: dict[str, Any]) -> None:
    idle50, under50 = statistics.median(r["idle"]), statistics.median(r["under"])
    pairs = statistics.median(u / i for i, u in zip(r["idle"], r["under"], strict=True))
    print(
        f"{name:<9} idle p50 {idle50:6.2f} s p90 {percentile(r['idle'], 90):6.2f} s | "
        f"training p50 {under50:6.2f} s p90 {percentile(r['under'], 90):6.2f} s | "
        f"ratio p50 {under50 / idle50:5.2f}x (pairs {pairs:4.2f}x) | "
        f"train {r['alone']:.2f} steps/s alone, "
        f"{r['busy']:.2f} steps/s with suggestions (paused {r['paused']:.1f} s), "
        f"{r['tokens_per_second']} tokens/s while stepping, policy {r['priority']}, "
        f"load average {r['load']:.1f}",
        flush=True,
    )


def raw(name: str, r: dict[str, Any]) -> None:
    pairs = " ".join(f"{i:.2f}/{u:.2f}" for i, u in zip(r["idle"], r["under"], strict=True))
    print(f"{name:<9} idle/training seconds, pair by pair: {pairs}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", default="baseline,priority,yield")
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument("--gap", type=float, default=1.0)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--alone", type=float, default=15.0)
    parser.add_argument("--raw", action="store_true", help="print every pair's latencies")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.modes.split(","):
            result = run_mode(name, args, Path(tmp))
            report(name, result)
            if args.raw:
                raw(name, result)


if __name__ == "__main__":
    main()
