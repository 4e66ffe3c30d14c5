"""Real-data check: after learning from a person's past replies, does the model write like them?

Data: the BYU Chit-Chat corpus (`../shared/data/chitchat`): real people texting each other,
with sender ids that are stable across conversations, so one person can play the owner.

1. Picks a person (the one in the most conversations, or `--sender`; the quality goal is
   checked on another one, `31267496-…`, the second-most: see docs/ml-service.md) and their
   conversations,
   in file order, until those hold about `--replies` of their replies (a reply: the first
   message of their turn after the other person's, as the server's history counts them).
2. Starts the ML service and the API server in subprocesses (SQLite in a temporary data
   directory, no Redis, the bundled model: what `make up` runs), signs in as the owner,
   approves a device and syncs the conversations through `POST /api/sync/messages`, that
   person's messages as outgoing.
3. `POST /api/training/jobs {"includeHistory": true}` with the API's defaults (or
   `--budget-minutes`, sent as `budgetMinutes`, `--epochs`, `--learning-rate`), following
   its progress to the end; then the job's wall time against its budget.
4. Held-out perplexity: from the job's metrics, NLL and perplexity of the person's replies in
   the conversations the job held out, under the base model and under the new adapter.
   Goal: the adapter's perplexity at least 35 % lower. Also printed when the job reports
   them: its own quality measures (`quality`: base, adapter and the adapter that was active)
   and its gate decision (`gate`: whether the adapter is activated, and why).
5. Suggestions: for up to `--suggestions` held-out replies, `--seeds` suggestions from the
   base model and as many with the job's adapter (switched through `/api/training/adapters`),
   same prompts and seeds, with the server's suggestion settings (temperature 0.7, up to 64
   tokens, the first line), scored against what the person really wrote with chrF
   (sacrebleu). Goal: adapted chrF > base.

No message text is printed, only counts and scores (`--show N` prints N examples).

    .venv/bin/python bench/style_eval.py [--replies 1500] [--suggestions 150] [--json out.json]
        [--setting NAME=VALUE] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sacrebleu.metrics import CHRF

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    CHITCHAT,
    ML_AUTH,
    approved_device,
    load_chitchat,
    ml_and_server,
    owner_headers,
)

from convassist.core.prompt import REPLY_STOP, extract_reply  # noqa: E402
from convassist.core.training import DEFAULT_HOLDOUT_FRACTION  # noqa: E402
from convassist.ml.training.dataset import Sample, read_samples, split_by_conversation, usable  # noqa: E402
from convassist.server.demo.corpus import (  # noqa: E402
    most_conversations,
    pick_conversations,
    sync_payload,
)
from convassist.server.training.jobs import snapshot_path  # noqa: E402

PERPLEXITY_GOAL = 0.35
PERCENT_GOAL = f"{PERPLEXITY_GOAL:.0%}"
SAMPLING = {"n": 1, "maxTokens": 64, "temperature": 0.7, "stop": list(REPLY_STOP)}
"""What the server asks for a suggestion (its defaults), and it keeps the first line."""
FINISHED = ("completed", "failed", "cancelled")

Conversation = dict[str, Any]


def load_corpus() -> dict[str, Conversation]:
    if not CHITCHAT.is_file():
        raise SystemExit(f"The Chit-Chat corpus is not at {CHITCHAT}; see docs/DEVELOPMENT.md.")
    return load_chitchat()


async def sync_all(
    client: httpx.AsyncClient, token: str, payloads: list[dict[str, Any]]
) -> dict[str, int]:
    totals: Counter[str] = Counter()
    auth = {"Authorization": f"Bearer {token}"}
    for payload in payloads:
        resp = await client.post("/api/sync/messages", json=payload, headers=auth)
        if resp.status_code != 200:
            raise SystemExit(f"sync failed ({resp.status_code}): {resp.text[:300]}")
        totals.update({k: v for k, v in resp.json().items() if isinstance(v, int)})
    return dict(totals)


async def train(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    """Start the job and follow it to the end; returns the finished job."""
    resp = await client.post("/api/training/jobs", json=body)
    if resp.status_code != 201:
        raise SystemExit(f"POST /api/training/jobs failed ({resp.status_code}): {resp.text}")
    job: dict[str, Any] = resp.json()
    print(f"job {job['id']}: {job['sampleCount']} samples")
    started, shown = time.perf_counter(), -1
    while job["status"] not in FINISHED:
        await asyncio.sleep(5)
        job = (await client.get(f"/api/training/jobs/{job['id']}")).json()
        metrics = job["metrics"]
        if "step" in metrics and job["progress"] // 10 != shown // 10:
            shown = job["progress"]
            print(
                f"  {job['progress']:3d} %  step {metrics['step']}/{metrics['totalSteps']}  "
                f"loss {metrics['loss']:.3f}  {metrics['tokensPerSecond']} tokens/s  "
                f"{time.perf_counter() - started:.0f} s",
                flush=True,
            )
    if job["status"] != "completed":
        raise SystemExit(f"the job ended {job['status']}: {job['error']}")
    return job


async def suggest(
    ml: httpx.AsyncClient, samples: list[Sample], seeds: int
) -> tuple[list[str], float]:
    """`seeds` suggestions (seeds 0, 1, …) for each sample's prompt, as the server makes them;
    also the mean seconds per request."""
    texts: list[str] = []
    started = time.perf_counter()
    for sample in samples:
        for seed in range(seeds):
            resp = await ml.post(
                "/generate", json={"prompt": sample.prompt, "seed": seed, **SAMPLING}
            )
            if resp.status_code != 200:
                raise SystemExit(f"POST /generate failed ({resp.status_code}): {resp.text[:300]}")
            texts.append(extract_reply(resp.json()["candidates"][0]["text"]))
    return texts, (time.perf_counter() - started) / max(len(texts), 1)


async def switch_adapter(api: httpx.AsyncClient, adapter_id: str | None) -> str:
    path = (
        f"/api/training/adapters/{adapter_id}/activate"
        if adapter_id
        else "/api/training/adapters/deactivate"
    )
    resp = await api.post(path)
    if resp.status_code != 200:
        raise SystemExit(f"POST {path} failed ({resp.status_code}): {resp.text}")
    return str(resp.json().get("modelVersion"))


def words(text: str) -> int:
    return len(text.split())


async def evaluate(
    args: argparse.Namespace, server: str, ml_url: str, data_dir: Path
) -> dict[str, Any]:
    corpus = load_corpus()
    me = args.sender or most_conversations(corpus)
    chosen = pick_conversations(corpus, me, args.replies)
    if not chosen:
        raise SystemExit(f"No two-person conversations of sender {me!r} in the corpus.")
    payloads = [sync_payload(cid, conversation, me) for cid, conversation in chosen]
    result: dict[str, Any] = {"sender": me, "conversations": len(chosen)}
    async with (
        httpx.AsyncClient(base_url=server, timeout=600) as client,
        httpx.AsyncClient(base_url=ml_url, timeout=600, headers=ML_AUTH) as ml,
    ):
        owner = await owner_headers(client)
        device = await approved_device(client, owner)
        started = time.perf_counter()
        synced = await sync_all(client, device["token"], payloads)
        result["syncSeconds"] = round(time.perf_counter() - started, 1)
        result["syncedMessages"] = sum(len(p["messages"]) for p in payloads)
        print(
            f"person {me[:8]}: {len(chosen)} conversations, {result['syncedMessages']} messages "
            f"synced in {result['syncSeconds']} s ({synced.get('inserted', 0)} inserted)"
        )

        body: dict[str, Any] = {"includeHistory": True}
        if args.budget_minutes:
            body["budgetMinutes"] = args.budget_minutes
        if args.epochs:
            body["epochs"] = args.epochs
        if args.learning_rate:
            body["learningRate"] = args.learning_rate
        client.headers.update(owner)
        started = time.perf_counter()
        job = await train(client, body)
        result["jobWallSeconds"] = round(time.perf_counter() - started, 1)
        metrics = job["metrics"]
        result["job"] = {
            k: job[k] for k in ("id", "epochs", "learningRate", "loraRank", "sampleCount")
        }
        result["metrics"] = metrics

        snapshot = snapshot_path(data_dir, uuid.UUID(job["id"]))
        _, heldout = split_by_conversation(usable(read_samples(snapshot)), DEFAULT_HOLDOUT_FRACTION)
        if len(heldout) != metrics["heldOutSamples"]:
            raise SystemExit("the held-out split here differs from the job's")
        heldout = heldout[: args.suggestions]
        outputs: dict[str, list[str]] = {}
        runs = (("base", None), ("adapted", job["adapterId"])) if heldout else ()
        for name, adapter in runs:
            version = await switch_adapter(client, adapter)
            outputs[name], seconds = await suggest(ml, heldout, args.seeds)
            print(
                f"  {len(outputs[name])} {name} suggestions from {version}: "
                f"{seconds * 1000:.0f} ms each"
            )

    references = [sample.completion for sample in heldout for _ in range(args.seeds)]
    result["suggestions"] = score_suggestions(outputs, references) if heldout else None
    for index in range(min(args.show, len(heldout))):
        print(f"\n--- held-out reply {index + 1}\n{heldout[index].prompt}")
        print(f"  real:    {heldout[index].completion!r}")
        for name, texts in outputs.items():
            print(f"  {name + ':':<8} {texts[index * args.seeds]!r}")
    return result


def score_suggestions(outputs: dict[str, list[str]], references: list[str]) -> dict[str, Any]:
    """Corpus chrF of each model's suggestions against the real replies, and per reply which
    model came closer (sentence chrF)."""
    chrf = CHRF()
    scores: dict[str, Any] = {
        name: {
            "chrF": round(chrf.corpus_score(texts, [references]).score, 2),
            "meanWords": round(statistics.mean(map(words, texts)), 2),
        }
        for name, texts in outputs.items()
    }
    scores["real"] = {"meanWords": round(statistics.mean(map(words, references)), 2)}
    sentence = {
        name: [
            chrf.sentence_score(text, [real]).score
            for text, real in zip(texts, references, strict=True)
        ]
        for name, texts in outputs.items()
    }
    pairs = list(zip(sentence["base"], sentence["adapted"], strict=True))
    scores["adaptedCloser"] = sum(adapted > base for base, adapted in pairs)
    scores["baseCloser"] = sum(base > adapted for base, adapted in pairs)
    scores["count"] = len(references)
    return scores


def report(result: dict[str, Any]) -> bool:
    """Print the measures and each goal's pass/fail; True when every goal measured passed."""
    metrics, suggestions = result["metrics"], result["suggestions"]
    drop = 1 - metrics["adapterPerplexity"] / metrics["basePerplexity"]
    print(
        f"\njob: {metrics['trainSamples']} training replies, {metrics['epochs']} epoch(s), "
        f"lr {metrics['learningRate']}, r={metrics['loraRank']}, {metrics['loraLayers']} layers, "
        f"{metrics['maxLength']} tokens: trained in {metrics['trainSeconds']} s at "
        f"{metrics['tokensPerSecond']} tokens/s; {result['jobWallSeconds']} s from POST to "
        f"completed"
    )
    if "plan" in metrics:
        print(f"  plan: {json.dumps(metrics['plan'])}")
    budget = metrics.get("budgetMinutes")
    if budget is not None:
        print(
            f"  budget {budget} min: the job took {metrics['durationSeconds']} s "
            f"(within budget: {metrics.get('withinBudget')})"
        )
    print(
        f"held out: {metrics['heldOutSamples']} replies in {metrics['heldOutConversations']} "
        f"conversations, {metrics['heldOutTokens']} tokens"
    )
    print(
        f"  NLL/token  base {metrics['baseNll']:.3f}  adapted {metrics['adapterNll']:.3f}\n"
        f"  perplexity base {metrics['basePerplexity']:.2f}  adapted "
        f"{metrics['adapterPerplexity']:.2f}  drop {drop:.1%}"
    )
    print_quality(metrics)
    goals = {f"perplexity drop >= {PERCENT_GOAL}": drop >= PERPLEXITY_GOAL}
    if suggestions is not None:
        print(
            f"{suggestions['count']} suggestions on {metrics['heldOutSamples']} held-out "
            "replies, chrF against the real reply:\n"
            f"  base {suggestions['base']['chrF']:.2f}  adapted "
            f"{suggestions['adapted']['chrF']:.2f}  (closer to the real reply: adapted "
            f"{suggestions['adaptedCloser']}, base {suggestions['baseCloser']})\n"
            f"  mean words: real {suggestions['real']['meanWords']}  base "
            f"{suggestions['base']['meanWords']}  adapted {suggestions['adapted']['meanWords']}"
        )
        goals["adapted chrF > base"] = suggestions["adapted"]["chrF"] > suggestions["base"]["chrF"]
    if budget is not None:
        goals[f"job within {budget} min"] = bool(metrics.get("withinBudget"))
    for goal, passed in goals.items():
        print(f"goal {goal}: {'pass' if passed else 'FAIL'}")
    result["perplexityDrop"] = round(drop, 4)
    return all(goals.values())


def print_quality(metrics: dict[str, Any]) -> None:
    """The job's own quality measures (`quality`) and gate decision (`gate`), when present."""
    quality, gate = metrics.get("quality"), metrics.get("gate")
    if quality:
        print(
            f"job quality on {quality.get('replies')} held-out replies "
            f"({quality.get('ownReplies', 0)} of the owner's stock replies offered):"
        )
        for name in ("owner", "base", "adapter", "active"):
            if name in quality:
                shown = "  ".join(f"{k} {v}" for k, v in quality[name].items())
                print(f"  {name:<8} {shown}")
        if "closerThanBase" in quality:
            print(f"  adapter closer than base: {quality['closerThanBase']}")
    if gate:
        print(
            f"gate: activate={gate.get('activate')} (compared with {gate.get('comparedWith')}): "
            f"{gate.get('reason')}"
        )


def setting(text: str) -> tuple[str, str]:
    """`--setting NAME=VALUE`, as (NAME, VALUE)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sender", help="Chit-Chat sender id (default: most conversations)")
    parser.add_argument("--model", help="manifest id to serve (default: the default model)")
    parser.add_argument("--replies", type=int, default=1500, help="about this many replies")
    parser.add_argument("--budget-minutes", type=float, help="job budget (default: the API's)")
    parser.add_argument("--epochs", type=int, help="default: the API's")
    parser.add_argument("--learning-rate", type=float, help="default: the API's")
    parser.add_argument(
        "--suggestions", type=int, default=150, help="held-out replies (0: no suggestions)"
    )
    parser.add_argument("--seeds", type=int, default=3, help="suggestions per held-out reply")
    parser.add_argument("--show", type=int, default=0, help="print N examples (message text)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        type=setting,
        metavar="NAME=VALUE",
        help="a setting for the services, e.g. ML_SERVICE_TRAIN_LORA_LAYERS=30 (repeatable)",
    )
    parser.add_argument(
        "--keep", type=Path, help="copy the data dir here at the end (snapshots, adapters)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="convassist-style-") as tmp_name:
        tmp = Path(tmp_name)
        settings = dict(args.setting)
        if args.model:
            settings["ML_SERVICE_MODEL_ID"] = args.model
        with ml_and_server(tmp, **settings) as (ml_url, server):
            result = asyncio.run(evaluate(args, server, ml_url, tmp / "data"))
        if args.keep:
            shutil.copytree(tmp / "data", args.keep, dirs_exist_ok=True)
    met = report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
