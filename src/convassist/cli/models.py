"""`convassist models list|pull|path`: the model manifest and the local model cache."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from convassist.cli.common import console, fail
from convassist.ml.errors import ModelError
from convassist.ml.models.manifest import ModelSpec, load_manifest
from convassist.ml.settings import MLSettings
from convassist.ml.training.architectures import trainable_label

app = typer.Typer(help="Models: list, download, locate.", no_args_is_help=True)


def _spec(model_id: str) -> ModelSpec:
    try:
        return load_manifest().get(model_id)
    except ModelError as exc:
        fail(str(exc))


@app.command("list")
def list_models() -> None:
    """The manifest's models, which are available locally, and which can be trained."""
    settings = MLSettings()
    manifest = load_manifest()
    table = Table("id", "name", "licence", "available", "source", "trainable")
    for spec in manifest.models.values():
        available = spec.is_available(settings.models_dir)
        label = spec.id + (" (default)" if spec.id == manifest.default else "")
        source = "package" if spec.packaged else "download"
        trainable = trainable_label(spec.architecture_of(settings.models_dir))
        table.add_row(
            label, spec.name, spec.license, "yes" if available else "no", source, trainable
        )
    Console().print(table)


@app.command("pull")
def pull(
    model_id: str = typer.Argument(..., help="Model id from `convassist models list`."),
) -> None:
    """Download a model into the cache (resumes a partial download, verifies its SHA-256)."""
    from convassist.ml.models.download import pull as download

    settings = MLSettings()
    spec = _spec(model_id)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(spec.id, total=spec.size)

        def advance(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        try:
            path, sha256 = download(spec, settings.models_dir, progress=advance)
        except ModelError as exc:
            fail(str(exc))
    console.print(f"{spec.id}: {path} (sha256 {sha256})", highlight=False)


@app.command("path")
def path(
    model_id: str = typer.Argument(..., help="Model id from `convassist models list`."),
) -> None:
    """Print where a model's file is (or will be once pulled); exit 1 if it is not there."""
    settings = MLSettings()
    spec = _spec(model_id)
    try:
        location = spec.local_path(settings.models_dir)
    except ModelError as exc:
        fail(str(exc))
    typer.echo(str(location))
    if not location.is_file():
        fail(f"{spec.id} is not downloaded yet: run `convassist models pull {spec.id}`.")
