"""Benchmark: LoRA training speed and generation speed with an adapter, each against a baseline.

Data: one person's replies from the Chit-Chat corpus (`../shared/data/chitchat`, real texting
chats), each with the 10 messages before it rendered by the prompt renderer, as the server's
history samples are; synthetic chats when the corpus is absent.

1. Training tokens/s (tokens processed, padding excluded), in the same run on the same
   batches (our length-bucketed batches, contexts cut to ML_SERVICE_TRAIN_MAX_CONTEXT):
   * ours: `convassist.ml.training.trainer.train` on the job's examples (the owner's earlier
     lines are targets too), bf16 autocast where the CPU has AMX, output layer on target
     tokens only, quality-weighted loss, progress callback;
   * raw:  a plain peft/torch loop, same precision: `model(input_ids, attention_mask,
     labels).loss`, AdamW. Goal: ours >= 0.8x raw.
   Both loops first run one untimed round (the first use of each batch shape sets up oneDNN
   kernels, seconds for bf16), then timed rounds alternate ours and raw, so both see the same
   machine load; the medians are reported. Also timed once: the
   DESIGN's naive loop (fp32, batch 8 in random order padded to the longest, contexts up to
   384 tokens, r=16 on all linear layers), the speed the levers are measured against.
2. Generation tokens/s of the llama.cpp backend with the trained adapter active vs without
   (64 tokens, same seeds, alternating). Goal: >= 0.85x.
3. With --job N: a real training job (the runner process) on N replies, end to end, in its
   time budget (`--budget-minutes`, default the API's 10): its wall time on this machine
   against the budget, the runner's own `durationSeconds`/`withinBudget` and its plan.
4. With --layer-cost (and nothing else): `trainer.train` with the LoRA on all, half and a
   quarter of the layers (the planner's cuts), alternating rounds after an untimed one; each
   one's median speed against all layers, beside the speed-up the planner assumes
   (`budget.LAYER_BACKWARD_COST`).
5. With --number-types (and nothing else): the raw loop in bf16 autocast against float32 on
   the same batches, alternating rounds after an untimed one of each: whether bf16 pays on
   this CPU (the trainer takes it only where the CPU has AMX's bf16 tiles, `device.BF16_TILES`).
   `ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16` keeps oneDNN off Intel AMX, which measures a CPU
   with AVX512_BF16 but no AMX on an AMX machine.

    .venv/bin/python bench/train.py [--examples 128] [--rounds 4] [--job 1500 [--budget-minutes 10]]
    .venv/bin/python bench/train.py --layer-cost [--examples 48] [--rounds 3]
    [ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16] .venv/bin/python bench/train.py --number-types
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import CHITCHAT, HISTORY, cpu, history_samples, load_chitchat  # noqa: E402

from convassist.core.prompt import ChatLine, render_prompt  # noqa: E402
from convassist.core.training import (  # noqa: E402
    ATTENTION_MODULES,
    DEFAULT_BUDGET_MINUTES,
    DEFAULT_MAX_CONTEXT,
    MLP_MODULES,
)
from convassist.ml.backends.base import Sampling  # noqa: E402
from convassist.ml.models.manifest import load_manifest  # noqa: E402
from convassist.ml.training import budget, dataset, export, trainer  # noqa: E402
from convassist.ml.training.dataset import Example, Sample  # noqa: E402
from convassist.ml.training.device import cpu_bf16_pays  # noqa: E402
from convassist.ml.training.files import JobFiles, JobSpec, write_json  # noqa: E402
from convassist.server.demo.corpus import most_conversations  # noqa: E402

K = TypeVar("K")


def chitchat_samples(limit: int) -> list[Sample]:
    """The replies of the person in the most conversations, as the server's history makes them."""
    corpus = load_chitchat()
    return history_samples(corpus, most_conversations(corpus), limit)[:limit]


def synthetic_samples(limit: int) -> list[Sample]:
    rng = random.Random(0)
    words = ["ok", "sure", "lol", "maybe", "dinner", "class", "work", "game", "movie", "later"]
    samples = []
    for i in range(limit):
        lines = [
            ChatLine("them" if j % 2 else "me", " ".join(rng.choices(words, k=rng.randint(3, 12))))
            for j in range(HISTORY)
        ]
        reply = " ".join(rng.choices(words, k=rng.randint(2, 10)))
        samples.append(Sample(render_prompt(lines), reply, 1.0, f"c{i // 5}"))
    return samples


def load_samples(limit: int) -> tuple[list[Sample], str]:
    if CHITCHAT.is_file():
        return chitchat_samples(limit), "Chit-Chat corpus"
    return synthetic_samples(limit), "synthetic chats"


def raw_steps(peft_model: Any, batches: list[list[Example]], pad_id: int, bf16: bool) -> float:
    """A plain peft/torch loop over `batches`; returns seconds."""
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
    peft_model.train()
    started = time.perf_counter()
    for batch in batches:
        ids, labels, _ = trainer.collate(batch, pad_id, multiple=1)
        lengths = torch.tensor([len(example) for example in batch])
        mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = peft_model(input_ids=ids, attention_mask=mask, labels=labels).loss
        torch.autograd.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def tokens(batches: list[list[Example]]) -> int:
    return sum(len(e) for batch in batches for e in batch)


def alternating_medians(
    runs: Mapping[K, Callable[[], float]], rounds: int, label: Callable[[K], str]
) -> dict[K, float]:
    """Median tokens/s of each of `runs` (each call: one round, returning its tokens/s).

    Every run first has one untimed round: the first use of each batch shape sets up its
    oneDNN kernels (seconds for bf16), which a timed round must not count. The timed rounds
    then alternate the order of the runs, so all of them see the same machine load."""
    for run in runs.values():
        run()
    rates: dict[K, list[float]] = {key: [] for key in runs}
    for r in range(rounds):
        for key in list(runs)[:: 1 if r % 2 else -1]:
            rates[key].append(runs[key]())
            print(f"  round {r + 1} {label(key)} {rates[key][-1]:7.1f} tokens/s", flush=True)
    return {key: statistics.median(values) for key, values in rates.items()}


def bench_training(
    base: Any, examples: list[Example], rounds: int, config: trainer.TrainConfig
) -> tuple[Any, float, float]:
    """(our trained peft model, ours tokens/s, raw tokens/s), same examples and batches."""
    ours_model = trainer.add_lora(copy.deepcopy(base), config)
    raw_model = trainer.add_lora(copy.deepcopy(base), config)
    batches = dataset.length_batches(examples, config.batch_size, random.Random(config.seed))
    bf16 = cpu_bf16_pays()

    def ours() -> float:
        return trainer.train(ours_model, examples, config, pad_id=2).tokens_per_second

    def raw() -> float:
        return tokens(batches) / raw_steps(raw_model, batches, 2, bf16)

    rates = alternating_medians({"ours": ours, "raw": raw}, rounds, lambda name: f"{name:<4}")
    return ours_model, rates["ours"], rates["raw"]


def bench_layer_cost(
    base: Any, examples: list[Example], rounds: int, config: trainer.TrainConfig
) -> dict[int, float]:
    """Median tokens/s of `trainer.train` with the LoRA on all, half and a quarter of the
    layers (the planner's cuts), same examples."""
    total = int(base.config.num_hidden_layers)
    configs = {
        k: dataclasses.replace(config, layers=k) for k in (total, total // 2, max(1, total // 4))
    }

    def run(layers: int) -> Callable[[], float]:
        model = trainer.add_lora(copy.deepcopy(base), configs[layers])
        return lambda: trainer.train(model, examples, configs[layers], pad_id=2).tokens_per_second

    return alternating_medians({k: run(k) for k in configs}, rounds, lambda k: f"top {k:>2} layers")


def report_layer_cost(rates: dict[int, float], total: int) -> None:
    """Measured speed-ups against the planner's cost model (`budget.LAYER_BACKWARD_COST`)."""

    def cost(layers: int) -> float:
        return 1 + budget.LAYER_BACKWARD_COST * layers / total

    for k, rate in rates.items():
        print(
            f"top {k:>2} of {total} layers: {rate:7.1f} tokens/s, {rate / rates[total]:.2f}x all "
            f"layers (the planner assumes {cost(total) / cost(k):.2f}x)"
        )


def bench_number_types(
    base: Any, examples: list[Example], rounds: int, config: trainer.TrainConfig
) -> dict[str, float]:
    """Median tokens/s of the raw loop in bf16 autocast and in float32, same batches."""
    batches = dataset.length_batches(examples, config.batch_size, random.Random(config.seed))

    def run(name: str) -> Callable[[], float]:
        model = trainer.add_lora(copy.deepcopy(base), config)
        return lambda: tokens(batches) / raw_steps(model, batches, 2, name == "bf16")

    return alternating_medians({name: run(name) for name in ("bf16", "fp32")}, rounds, str)


def bench_naive(base: Any, samples: list[Sample], tok: dataset.LlamaTokenizer) -> float:
    """DESIGN's naive loop: fp32, random batches of 8, up to 384 tokens, r=16 on every linear
    layer of every block."""
    config = trainer.TrainConfig(
        rank=16,
        target_modules=ATTENTION_MODULES + MLP_MODULES,
        layers=int(base.config.num_hidden_layers),
    )
    model = trainer.add_lora(copy.deepcopy(base), config)
    examples = dataset.build_examples(samples, tok, 384)
    random.Random(0).shuffle(examples)
    batches = [examples[i : i + 8] for i in range(0, len(examples), 8)][:4]
    raw_steps(model, batches[:1], 2, bf16=False)
    seconds = raw_steps(model, batches[1:], 2, bf16=False)
    return tokens(batches[1:]) / seconds


def bench_generation(model_path: Path, adapter: Path, runs: int) -> tuple[float, float]:
    from convassist.ml.backends.llama import LlamaBackend
    from convassist.ml.models.manifest import ResolvedModel

    backend = LlamaBackend(
        ResolvedModel("bench", model_path, None), sha256="0" * 64, context_size=1024
    )
    prompt = "Them: are we still on for lunch tomorrow\nMe: yes\nThem: where do you want to go\nMe:"
    rates: dict[bool, list[float]] = {False: [], True: []}
    try:
        for seed in range(runs):
            for active in (False, True) if seed % 2 else (True, False):
                backend.set_adapter("lora-bench" if active else None, adapter if active else None)
                started = time.perf_counter()
                done = backend.complete(prompt, Sampling(64, 0.8, 0.95, (), seed))
                rates[active].append(done.completion_tokens / (time.perf_counter() - started))
    finally:
        backend.close()
    return statistics.median(rates[False]), statistics.median(rates[True])


def run_job(model_path: Path, samples: list[Sample], budget_minutes: float) -> dict[str, Any]:
    """A real job through the runner process, in its time budget; its final report (the last
    line it prints)."""
    with tempfile.TemporaryDirectory() as tmp:
        files = JobFiles(Path(tmp) / "job")
        files.directory.mkdir()
        dataset.write_samples(files.samples, samples)
        spec = JobSpec(
            job_id="bench0000",
            base_model="smollm2-135m-instruct",
            base_version="bench",
            model_path=str(model_path),
            budget_minutes=budget_minutes,
        )
        write_json(files.spec, spec.to_json())
        started = time.perf_counter()
        reports = subprocess.run(
            [sys.executable, "-m", "convassist.ml.training.runner", str(files.directory)],
            check=True,
            stdout=subprocess.PIPE,
            # The adapter store under the temporary folder, never the real data dir's.
            env={**os.environ, "CONVASSIST_DATA_DIR": tmp, "ML_SERVICE_REDIS_ENABLED": "false"},
            text=True,
        ).stdout.splitlines()
        state: dict[str, Any] = json.loads(reports[-1]) if reports else {}
        state["wallSeconds"] = round(time.perf_counter() - started, 1)
        return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=128, help="examples per round")
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds of each loop")
    parser.add_argument("--max-length", type=int, default=DEFAULT_MAX_CONTEXT)
    parser.add_argument("--generation-runs", type=int, default=8)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument(
        "--layer-cost",
        action="store_true",
        help="only measure training speed with the LoRA on all, half and a quarter of the layers",
    )
    parser.add_argument(
        "--number-types",
        action="store_true",
        help="only measure the raw loop's training speed in bf16 against float32",
    )
    parser.add_argument("--job", type=int, default=0, help="also run a real job on N replies")
    parser.add_argument(
        "--budget-minutes", type=float, default=DEFAULT_BUDGET_MINUTES, help="the job's budget"
    )
    args = parser.parse_args()

    torch.set_num_threads(2)
    model_path = load_manifest().get("smollm2-135m-instruct").local_path(Path("/nonexistent"))
    samples, source = load_samples(max(args.examples, args.job, 64))
    tok = dataset.LlamaTokenizer(model_path)
    examples = dataset.build_examples(
        samples[: args.examples], tok, args.max_length, own_lines=True
    )
    print(
        f"{len(examples)} replies from the {source}; mean {statistics.mean(map(len, examples)):.0f}"
        f" tokens per example (max {args.max_length}); {cpu()}; bf16: {cpu_bf16_pays()}; threads 2"
    )
    base = trainer.load_model(model_path)
    config = trainer.TrainConfig(epochs=1, threads=2, device="cpu")
    layers = trainer.lora_layer_count(config, base.config.num_hidden_layers)
    print(
        f"Training, LoRA r={config.rank} on {', '.join(config.target_modules)} of the top "
        f"{layers} layers, batch {config.batch_size}:"
    )
    if args.layer_cost:
        total = int(base.config.num_hidden_layers)
        report_layer_cost(bench_layer_cost(base, examples, args.rounds, config), total)
        return
    if args.number_types:
        rates = bench_number_types(base, examples, args.rounds, config)
        isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "unset")
        print(
            f"bf16 {rates['bf16']:7.1f} tokens/s   fp32 {rates['fp32']:7.1f} tokens/s   "
            f"bf16/fp32 {rates['bf16'] / rates['fp32']:.2f}x (ONEDNN_MAX_CPU_ISA={isa})"
        )
        return
    ours_model, ours, raw = bench_training(base, examples, args.rounds, config)
    print(
        f"ours {ours:7.1f} tokens/s   raw peft loop {raw:7.1f} tokens/s   ratio {ours / raw:.2f}x"
    )
    if not args.skip_naive:
        naive = bench_naive(base, samples[: args.examples], tok)
        print(f"naive fp32 loop (DESIGN) {naive:7.1f} tokens/s; ours is {ours / naive:.1f}x that")
    tok.close()
    with tempfile.TemporaryDirectory() as tmp:
        adapter = Path(tmp) / "adapter.gguf"
        export.export_adapter(ours_model, adapter, model_path=model_path, name="bench")
        plain, tuned = bench_generation(model_path, adapter, args.generation_runs)
    print(
        f"generation: base {plain:6.1f} tokens/s   with adapter {tuned:6.1f} tokens/s   "
        f"ratio {tuned / plain:.2f}x"
    )
    if args.job:
        state = run_job(model_path, samples[: args.job], args.budget_minutes)
        metrics = state.get("metrics", {})
        print(
            f"job on {args.job} replies: {state.get('status')} in {state['wallSeconds']} s "
            f"(training {metrics.get('trainSeconds')} s at {metrics.get('tokensPerSecond')} "
            f"tokens/s, {metrics.get('trainTokens')} tokens); held-out NLL "
            f"{metrics.get('baseNll')} -> {metrics.get('adapterNll')}"
        )
        budget = args.budget_minutes * 60
        print(
            f"time budget {budget:.0f} s: the job took {state['wallSeconds']} s here "
            f"({'within' if state['wallSeconds'] <= budget else 'OVER'} its budget; the runner's "
            f"own count {metrics.get('durationSeconds')} s, withinBudget "
            f"{metrics.get('withinBudget')}); plan: {json.dumps(metrics.get('plan'))}"
        )


if __name__ == "__main__":
    main()
