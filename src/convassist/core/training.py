"""Training-job defaults, shared by the API server, its web UI and the ML service.

Chosen with `bench/style_eval.py` and `bench/train.py` (docs/ml-service.md, "Training speed"):
one pass over a first job's ~1,500 history replies cuts the held-out perplexity of the
owner's replies by more than a fifth, in about ten minutes on two CPU cores. The training
examples also learn from the owner's earlier lines in each context (`dataset.build_example`'s
`own_lines`): at equal compute that cut the perplexity 1.5 times as much as the reply alone.
"""

from __future__ import annotations

ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")

DEFAULT_EPOCHS = 1
"""Passes when the owner asks for no number. A second pass over the same replies made the
held-out perplexity worse, not better (docs/ml-service.md, "Time budget"): on a fast machine
the job finishes early instead."""
DEFAULT_LEARNING_RATE = 2e-3
DEFAULT_LORA_RANK = 16
DEFAULT_BATCH_SIZE = 8
DEFAULT_TARGET_MODULES = ATTENTION_MODULES + MLP_MODULES
"""Every linear layer of each block (llama names); the tied embeddings are never adapted."""
DEFAULT_LORA_LAYER_SHARE = 0.5
"""Unless a layer count is set, the LoRA adapts the top half of the layers: the backward pass
stops there, so a step is about 1.45x faster, for a little less learning."""
DEFAULT_MAX_CONTEXT = 64
"""Tokens per training example (context + reply): older context is cut. Shorter contexts did
as well as longer ones or better every time they were compared, in less time (64 against 96
tokens: +0.7 and +2.4 points of held-out perplexity drop; docs/ml-service.md, "Time
budget")."""
EVAL_MAX_CONTEXT = 128
"""Tokens per held-out example a job (and `convassist eval`) scores, whatever it trained
on: jobs with different training lengths are measured the same way."""
DEFAULT_HOLDOUT_FRACTION = 0.1
"""Share of conversations (not messages) a job holds out to measure itself on."""
DEFAULT_BUDGET_MINUTES = 10
MIN_BUDGET_MINUTES = 1
MAX_BUDGET_MINUTES = 240
"""A job's time budget (`budgetMinutes`): the trainer plans what fits (ml/training/budget.py)."""
