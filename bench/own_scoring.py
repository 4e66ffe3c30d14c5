"""Benchmark: picking the likeliest of the owner's stock replies after a prompt (llama).

A real person's texting (Chit-Chat's most frequent sender, as `bench/style_eval.py` picks
by default, or `--sender`): their `--limit` most used stock replies (`core.replies`, over
all their conversations) and the prompts of their first `--prompts` replies, as the server
builds them. For each prompt, in the same run, it times

* pruned: `LlamaBackend.likeliest`, the service's way: the prompt's last token decoded once,
  replies scored in the order of the best mean they can still reach, those that cannot win
  never decoded;
* every:  the raw baseline, each reply scored in full, one decode of the prompt's last token
  and the reply's tokens, and the likeliest mean taken (what the service did before);

warmed up, alternating, `--repeat` times each; medians over all prompts are compared, and
the two must pick the same reply.

    .venv/bin/python bench/own_scoring.py [--prompts 20] [--limit 5] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import cpu, history_samples, load_chitchat  # noqa: E402

from convassist.core.replies import Tally, frequent_replies  # noqa: E402
from convassist.ml.backends.llama import LlamaBackend  # noqa: E402
from convassist.ml.settings import MLSettings  # noqa: E402
from convassist.server.demo.corpus import most_conversations  # noqa: E402


def stock_replies(corpus: dict[str, dict], me: str, limit: int) -> list[str]:
    uses: Counter[str] = Counter()
    where: dict[str, set[str]] = {}
    for conversation_id, conversation in corpus.items():
        for message in (m for turn in conversation["messages"] for m in turn):
            if message["sender"] == me and message["text"]:
                uses[message["text"]] += 1
                where.setdefault(message["text"], set()).add(conversation_id)
    tallies = (Tally(text, count, len(where[text])) for text, count in uses.items())
    return frequent_replies(tallies, limit=limit)


def every(backend: LlamaBackend, prompt: str, continuations: list[str]) -> int:
    """Each continuation scored in full; the index of the likeliest mean."""
    llm = backend._llm
    prompt_tokens = backend._tokenize(prompt)
    means = []
    for text in continuations:
        tokens = list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
        cached = llm.longest_token_prefix(llm.input_ids[: llm.n_tokens], prompt_tokens)
        llm.n_tokens = min(cached, len(prompt_tokens) - 1)
        llm.eval(prompt_tokens[llm.n_tokens : -1])
        rows = backend._decode_every_position([prompt_tokens[-1], *tokens[:-1]])
        logprobs = [backend._logprob(row, token) for row, token in zip(rows, tokens, strict=True)]
        means.append(sum(logprobs) / len(logprobs))
    return max(range(len(means)), key=means.__getitem__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sender")
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--limit", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    corpus = load_chitchat()
    me = args.sender or most_conversations(corpus)
    replies = stock_replies(corpus, me, args.limit)
    continuations = [f" {reply}\n" for reply in replies]
    prompts = [s.prompt for s in history_samples(corpus, me, args.prompts * 2)][: args.prompts]
    backend = LlamaBackend.from_settings(MLSettings())
    load_1, load_5, _ = os.getloadavg()
    print(
        f"CPU: {cpu()} ({os.cpu_count()} cores, load average {load_1:.1f} / {load_5:.1f}); "
        f"{backend.model_version}; {len(prompts)} prompts, {len(replies)} stock replies"
    )
    pruned_times, every_times, same = [], [], 0
    for prompt in prompts:
        for _ in range(2):
            backend.likeliest(prompt, continuations)
            every(backend, prompt, continuations)
        for _ in range(args.repeat):
            started = time.perf_counter()
            likeliest = backend.likeliest(prompt, continuations)
            pruned_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            index = every(backend, prompt, continuations)
            every_times.append(time.perf_counter() - started)
        same += likeliest is not None and likeliest.index == index
    pruned, full = statistics.median(pruned_times), statistics.median(every_times)
    print(
        f"pruned {pruned * 1000:.0f} ms, every reply {full * 1000:.0f} ms (medians): "
        f"{full / pruned:.2f}x; same pick on {same} of {len(prompts)} prompts"
    )


if __name__ == "__main__":
    main()
