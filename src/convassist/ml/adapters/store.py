"""Where adapters are kept: one interface, a local directory (`LocalAdapterStore`) and Redis
(`adapters/shared.py`, every instance reads the same adapters).

An adapter id is `lora-` and the first 8 letters or digits of its job id (more in the
unlikely case that another job's adapter has those). Its metadata records the job, the base
model it was trained on (id and `model_version`), when, the training settings, the job's
metrics, its size and the SHA-256 of its GGUF file. `fetch` gives a local file only after
checking that SHA-256: a file that does not match is refused (`ChecksumMismatch`), never
served.

The local store keeps `<root>/<adapter id>/{adapter.gguf,metadata.json}` and `active.json`
(the adapter the ML service serves, so a restarted service comes back with it, and the one
served before it: `previous`, what a rollback serves again).

`previous` is the adapter that was active before the current choice: each change of the
active adapter makes the one it replaces the previous one (None when the base model was
served), so rolling back twice returns to where it started.
"""

from __future__ import annotations

import os
import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convassist.core.limits import ADAPTER_ID_PATTERN
from convassist.core.logging import get_logger
from convassist.ml.models.fingerprint import sha256_file
from convassist.ml.training.files import read_json, utcnow, write_json

log = get_logger("convassist.ml.adapters")

ADAPTER_FILE = "adapter.gguf"
METADATA_FILE = "metadata.json"
ACTIVE_FILE = "active.json"
PREFIX = "lora-"


def adapter_id_for(job_id: str, digits: int = 8) -> str:
    return PREFIX + "".join(c for c in job_id.lower() if c.isascii() and c.isalnum())[:digits]


def valid_id(adapter_id: str) -> bool:
    return re.fullmatch(ADAPTER_ID_PATTERN, adapter_id) is not None


class ChecksumMismatch(Exception):
    """An adapter's bytes do not have the SHA-256 its metadata records."""

    def __init__(self, adapter_id: str) -> None:
        super().__init__(
            f"Adapter {adapter_id}'s file does not match its SHA-256 checksum; it is not served."
        )
        self.adapter_id = adapter_id


@dataclass(frozen=True)
class AdapterInfo:
    id: str
    job_id: str
    base_model: str
    base_version: str
    created_at: str
    metrics: dict[str, Any]
    settings: dict[str, Any]
    size_bytes: int
    sha256: str | None
    """None only for an adapter stored before checksums were recorded (set at its first use)."""
    path: Path
    """Where the file is (or, with a shared store, will be once fetched) on this instance."""

    def metadata(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "jobId": self.job_id,
            "baseModel": self.base_model,
            "baseVersion": self.base_version,
            "createdAt": self.created_at,
            "metrics": self.metrics,
            "settings": self.settings,
            "sizeBytes": self.size_bytes,
            "sha256": self.sha256,
        }

    @classmethod
    def from_metadata(cls, data: dict[str, Any], path: Path) -> AdapterInfo:
        size = data.get("sizeBytes")
        if size is None:  # stored before sizes were recorded
            size = path.stat().st_size if path.is_file() else 0
        return cls(
            id=str(data["id"]),
            job_id=str(data["jobId"]),
            base_model=str(data["baseModel"]),
            base_version=str(data["baseVersion"]),
            created_at=str(data["createdAt"]),
            metrics=dict(data.get("metrics") or {}),
            settings=dict(data.get("settings") or {}),
            size_bytes=int(size),
            sha256=str(data["sha256"]) if data.get("sha256") else None,
            path=path,
        )


class AdapterStore(ABC):
    """The stored adapters and the active one. Blocking calls (file or Redis I/O)."""

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
        """Store the exported `source` file (moved, not copied) under the job's adapter id
        (`adapter_id` when the caller already took it from `new_id`)."""
        adapter_id = adapter_id or self.new_id(job_id)
        info = AdapterInfo(
            id=adapter_id,
            job_id=job_id,
            base_model=base_model,
            base_version=base_version,
            created_at=utcnow(),
            metrics=metrics,
            settings=settings,
            size_bytes=source.stat().st_size,
            sha256=sha256_file(source),
            path=self.path(adapter_id),
        )
        self.put(source, info)
        return info

    @abstractmethod
    def path(self, adapter_id: str) -> Path:
        """Where the adapter's file is (or, fetched, will be) on this instance."""

    @abstractmethod
    def put(self, source: Path, info: AdapterInfo) -> None:
        """Move `source` in as `info`'s file, with its metadata."""

    @abstractmethod
    def get(self, adapter_id: str) -> AdapterInfo | None: ...

    @abstractmethod
    def list(self) -> list[AdapterInfo]:
        """Every stored adapter, newest first."""

    @abstractmethod
    def fetch(self, info: AdapterInfo) -> Path:
        """The adapter's file on this machine, its SHA-256 checked (else ChecksumMismatch)."""

    @abstractmethod
    def active(self) -> str | None: ...

    @abstractmethod
    def previous(self) -> str | None:
        """The adapter active before the current choice (None: the base model or unknown)."""

    @abstractmethod
    def set_active(self, adapter_id: str | None) -> None:
        """Make this adapter (None: the base model) the active one; the one it replaces
        becomes `previous` (unchanged when it is the same)."""

    def changes(self) -> AsyncIterator[None]:
        """Ticks when another instance may have changed the active adapter; none locally."""
        return _no_changes()

    def close(self) -> None:  # noqa: B027 (nothing to release locally)
        """Release connections."""


async def _no_changes() -> AsyncIterator[None]:
    return
    yield  # pragma: no cover - makes this an (empty) async generator


class LocalAdapterStore(AdapterStore):
    """Adapters in a directory of this machine (the ML service without Redis)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, adapter_id: str) -> Path:
        if not valid_id(adapter_id):
            raise KeyError(adapter_id)
        return self.root / adapter_id

    def path(self, adapter_id: str) -> Path:
        return self._dir(adapter_id) / ADAPTER_FILE

    def put(self, source: Path, info: AdapterInfo) -> None:
        """Move `source` in as `info`'s file, with its metadata (atomically: a reader sees the
        old adapter or the new one)."""
        directory = self._dir(info.id)
        tmp = self.root / f".{info.id}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.move(source, tmp / ADAPTER_FILE)
        write_json(tmp / METADATA_FILE, info.metadata())
        shutil.rmtree(directory, ignore_errors=True)
        try:
            tmp.replace(directory)
        except OSError:  # another process sharing this directory put it there first
            shutil.rmtree(tmp, ignore_errors=True)
            if not directory.is_dir():
                raise

    def get(self, adapter_id: str) -> AdapterInfo | None:
        try:
            directory = self._dir(adapter_id)
        except KeyError:
            return None
        data = read_json(directory / METADATA_FILE)
        if data is None or not (directory / ADAPTER_FILE).is_file():
            return None
        return AdapterInfo.from_metadata({**data, "id": adapter_id}, directory / ADAPTER_FILE)

    def list(self) -> list[AdapterInfo]:
        if not self.root.is_dir():
            return []
        found = [self.get(entry.name) for entry in self.root.iterdir() if entry.is_dir()]
        adapters = [info for info in found if info is not None]
        return sorted(adapters, key=lambda info: info.created_at, reverse=True)

    def fetch(self, info: AdapterInfo) -> Path:
        actual = sha256_file(info.path)
        if info.sha256 is None:  # stored before checksums: recorded now, checked from now on
            write_json(info.path.parent / METADATA_FILE, {**info.metadata(), "sha256": actual})
            log.info("adapter_checksum_recorded", adapter_id=info.id)
        elif actual != info.sha256:
            log.error("adapter_checksum_mismatch", adapter_id=info.id, where="local")
            raise ChecksumMismatch(info.id)
        return info.path

    def matches(self, info: AdapterInfo) -> bool:
        """Whether this directory holds `info`'s file, with its SHA-256."""
        return info.path.is_file() and sha256_file(info.path) == info.sha256

    def _choice(self, key: str) -> str | None:
        data = read_json(self.root / ACTIVE_FILE)
        value = data.get(key) if data else None
        return str(value) if value else None

    def active(self) -> str | None:
        return self._choice("active")

    def previous(self) -> str | None:
        return self._choice("previous")

    def set_active(self, adapter_id: str | None) -> None:
        current = self.active()
        previous = current if current != adapter_id else self.previous()
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(self.root / ACTIVE_FILE, {"active": adapter_id, "previous": previous})
