"""`convassist eval`: held-out NLL and perplexity of replies, base model vs an adapter."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from convassist.cli.common import fail, setup_logging
from convassist.core.training import DEFAULT_HOLDOUT_FRACTION, EVAL_MAX_CONTEXT
from convassist.ml.errors import ModelError
from convassist.ml.settings import MLSettings

if TYPE_CHECKING:
    from convassist.ml.training.evaluate import Score


def _adapter_path(settings: MLSettings, adapter: str | None) -> tuple[str, Path] | None:
    """(label, file) of the adapter to score: an id, a file, or the active one by default."""
    from convassist.ml.adapters.factory import make_adapter_store
    from convassist.ml.adapters.store import ChecksumMismatch

    store = make_adapter_store(settings)
    name = adapter or store.active()
    if name is None:
        return None
    info = store.get(name)
    if info is not None:
        try:
            return info.id, store.fetch(info)
        except ChecksumMismatch as exc:
            fail(str(exc))
    path = Path(name).expanduser()
    if path.is_file():
        return path.name, path
    fail(f"No adapter {name!r}: give an adapter id (see GET /adapters) or a .gguf file.")


def evaluate(
    samples: Path = typer.Option(
        ..., "--samples", exists=True, dir_okay=False, help="Samples JSONL (the server's export)."
    ),
    adapter: str | None = typer.Option(
        None, "--adapter", help="Adapter id or .gguf file (default: the active adapter, if any)."
    ),
    holdout_fraction: float = typer.Option(
        DEFAULT_HOLDOUT_FRACTION,
        "--holdout-fraction",
        min=0.0,
        max=1.0,
        help="Score the conversations a training job with this fraction holds out; 1 = all.",
    ),
    max_context: int = typer.Option(
        EVAL_MAX_CONTEXT,
        "--max-context",
        min=32,
        help="Tokens per example (a job scores its held-out replies at the default).",
    ),
) -> None:
    """Mean NLL per reply token and perplexity, under the base model and an adapter."""
    from convassist.ml.models.manifest import resolve_model
    from convassist.ml.training import dataset
    from convassist.ml.training import evaluate as evaluation

    settings = MLSettings()
    setup_logging(settings, "eval")
    try:
        model = resolve_model(settings)
    except ModelError as exc:
        fail(str(exc))
    chosen = _adapter_path(settings, adapter)
    how = evaluation.EvalSettings(
        holdout_fraction=holdout_fraction,
        max_length=max_context,
        threads=settings.threads,
    )
    try:
        read = dataset.read_samples(samples)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    try:
        report = evaluation.evaluate(model.path, read, how, chosen[1] if chosen else None)
    except ModelError as exc:
        fail(str(exc))
    if not report.base.examples:
        fail(
            "No usable sample in the held-out conversations: use --holdout-fraction 1 to "
            "score every sample."
        )
    rows: list[tuple[str, Score]] = [(model.model_id, report.base)]
    if chosen is not None and report.adapter is not None:
        rows.append((f"+ {chosen[0]}", report.adapter))
    _print(rows, report.conversations)


def _print(rows: list[tuple[str, Score]], conversations: int) -> None:
    table = Table(title=f"Held-out replies ({conversations} conversations)")
    for column in ("model", "replies", "tokens", "NLL / token", "perplexity", "vs base"):
        table.add_column(column, justify="left" if column == "model" else "right")
    base: Score | None = None
    for label, score in rows:
        change = ""
        if base is not None and base.perplexity and score.perplexity:
            change = f"{100 * (score.perplexity / base.perplexity - 1):+.1f} %"
        table.add_row(
            label,
            str(score.examples),
            str(score.tokens),
            f"{score.nll:.4f}" if score.nll is not None else "-",
            f"{score.perplexity:.2f}" if score.perplexity is not None else "-",
            change,
        )
        base = base or score
    Console().print(table)
