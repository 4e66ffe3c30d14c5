"""The adapter store: `<data dir>/adapters/<adapter id>/{adapter.gguf,metadata.json}`.

An adapter id is `lora-` and the first 8 letters or digits of its job id (more in the
unlikely case that another job's adapter has those). `metadata.json` records the
job, the base model it was trained on (id and `model_version`), when, the training settings
and the job's metrics. `active.json` names the adapter the ML service serves, so a restarted
service comes back with it.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convassist.core.limits import ADAPTER_ID_PATTERN
from convassist.ml.training.files import read_json, utcnow, write_json

ADAPTER_FILE = "adapter.gguf"
METADATA_FILE = "metadata.json"
ACTIVE_FILE = "active.json"
PREFIX = "lora-"


def adapter_id_for(job_id: str, digits: int = 8) -> str:
    return PREFIX + "".join(c for c in job_id.lower() if c.isascii() and c.isalnum())[:digits]


@dataclass(frozen=True)
class AdapterInfo:
    id: str
    job_id: str
    base_model: str
    base_version: str
    created_at: str
    metrics: dict[str, Any]
    settings: dict[str, Any]
    path: Path

    @property
    def size_bytes(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0


class AdapterStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, adapter_id: str) -> Path:
        if not re.fullmatch(ADAPTER_ID_PATTERN, adapter_id):
            raise KeyError(adapter_id)
        return self.root / adapter_id

    def new_id(self, job_id: str) -> str:
        """The job's adapter id: 8 characters of its id, more if another job has those."""
        for digits in (8, 12, 16, 64):
            candidate = adapter_id_for(job_id, digits)
            existing = self.get(candidate)
            if existing is None or existing.job_id == job_id:
                return candidate
        raise ValueError(f"no free adapter id for job {job_id}")

    def save(
        self,
        source: Path,
        *,
        job_id: str,
        base_model: str,
        base_version: str,
        metrics: dict[str, Any],
        settings: dict[str, Any],
        adapter_id: str | None = None,
    ) -> AdapterInfo:
        """Move the exported `source` file into the store under the job's adapter id
        (`adapter_id` when the caller already took it from `new_id`)."""
        adapter_id = adapter_id or self.new_id(job_id)
        directory = self._dir(adapter_id)
        tmp = self.root / f".{adapter_id}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.move(source, tmp / ADAPTER_FILE)
        metadata = {
            "id": adapter_id,
            "jobId": job_id,
            "baseModel": base_model,
            "baseVersion": base_version,
            "createdAt": utcnow(),
            "metrics": metrics,
            "settings": settings,
        }
        write_json(tmp / METADATA_FILE, metadata)
        shutil.rmtree(directory, ignore_errors=True)
        tmp.replace(directory)
        info = self.get(adapter_id)
        assert info is not None
        return info

    def get(self, adapter_id: str) -> AdapterInfo | None:
        try:
            directory = self._dir(adapter_id)
        except KeyError:
            return None
        data = read_json(directory / METADATA_FILE)
        if data is None or not (directory / ADAPTER_FILE).is_file():
            return None
        return AdapterInfo(
            id=adapter_id,
            job_id=str(data["jobId"]),
            base_model=str(data["baseModel"]),
            base_version=str(data["baseVersion"]),
            created_at=str(data["createdAt"]),
            metrics=dict(data.get("metrics") or {}),
            settings=dict(data.get("settings") or {}),
            path=directory / ADAPTER_FILE,
        )

    def list(self) -> list[AdapterInfo]:
        """Every stored adapter, newest first."""
        if not self.root.is_dir():
            return []
        found = [self.get(entry.name) for entry in self.root.iterdir() if entry.is_dir()]
        adapters = [info for info in found if info is not None]
        return sorted(adapters, key=lambda info: info.created_at, reverse=True)

    def active(self) -> str | None:
        data = read_json(self.root / ACTIVE_FILE)
        value = data.get("active") if data else None
        return str(value) if value else None

    def set_active(self, adapter_id: str | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(self.root / ACTIVE_FILE, {"active": adapter_id})
