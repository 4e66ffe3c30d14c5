"""SHA-256 of model files, remembered in a sidecar keyed by path, size and mtime.

Hashing a multi-gigabyte GGUF takes seconds; start-up should not. The first load hashes the
file and records the result under `<models_dir>/.sha256/`; later loads reuse it while the
file's size and modification time are unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(path: Path, cache_dir: Path) -> Path:
    name = hashlib.sha1(str(path.resolve()).encode(), usedforsecurity=False).hexdigest()
    return cache_dir / ".sha256" / f"{name}.json"


def remember(path: Path, cache_dir: Path, sha256: str) -> None:
    """Record a known hash for `path` (after a verified download)."""
    stat = path.stat()
    sidecar = _sidecar(path, cache_dir)
    record = {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    with contextlib.suppress(OSError):  # a read-only cache only costs a re-hash next time
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        tmp = sidecar.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**record, "sha256": sha256}))
        tmp.replace(sidecar)


def cached_sha256(path: Path, cache_dir: Path) -> str:
    """The file's SHA-256, from the sidecar when the file is unchanged, else computed."""
    stat = path.stat()
    sidecar = _sidecar(path, cache_dir)
    try:
        record = json.loads(sidecar.read_text())
        if record["size"] == stat.st_size and record["mtime_ns"] == stat.st_mtime_ns:
            return str(record["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    sha256 = sha256_file(path)
    remember(path, cache_dir, sha256)
    return sha256
