"""Resumable, verified model downloads (`convassist models pull`).

Bytes go to `<file>.part`; an interrupted pull resumes from its size with an HTTP Range
request. The finished file is checked against the manifest's SHA-256 (or, when the manifest
does not pin one, the SHA-256 the hub announces in `X-Linked-Etag`) before it is renamed into
place, so a file under its final name is always complete and verified.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from convassist.ml.errors import DownloadError
from convassist.ml.models import fingerprint
from convassist.ml.models.manifest import ModelSpec, assemble

Progress = Callable[[int, int | None], None]
"""Called with (bytes done, total bytes or None) as the download advances."""

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def pull(
    spec: ModelSpec,
    models_dir: Path,
    *,
    progress: Progress | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> tuple[Path, str]:
    """Download `spec` into `models_dir` (resuming a partial file); return (path, sha256)."""
    if spec.packaged:
        path = assemble(spec, models_dir) if spec.assembled else spec.local_path(models_dir)
        return path, fingerprint.cached_sha256(path, models_dir)
    dest = models_dir / spec.filename
    if dest.is_file():
        sha256 = fingerprint.cached_sha256(dest, models_dir)
        if not spec.sha256 or sha256 == spec.sha256:
            return dest, sha256
        dest.unlink()  # a stale or corrupt copy: fetch it again
    models_dir.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    announced = _fetch(spec.source, part, progress, connect_timeout)
    expected = spec.sha256 or announced
    if not expected:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"No checksum is known for {spec.id}: the manifest pins none and the server "
            "announced none, so the download cannot be verified."
        )
    sha256 = fingerprint.sha256_file(part)
    if sha256 != expected:
        part.unlink()
        raise DownloadError(
            f"Checksum mismatch for {spec.id}: expected {expected}, got {sha256}. "
            "The partial file was removed; run the pull again."
        )
    part.replace(dest)
    fingerprint.remember(dest, models_dir, sha256)
    return dest, sha256


def _fetch(url: str, part: Path, progress: Progress | None, connect_timeout: float) -> str:
    """Append the missing bytes of `url` to `part`; return the announced SHA-256 or ''."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    timeout = httpx.Timeout(READ_TIMEOUT, connect=connect_timeout)
    host = urlsplit(url).hostname or url
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=True) as client,
            client.stream("GET", url, headers=headers) as response,
        ):
            announced = _announced_sha256(response)
            if response.status_code == 416 and offset:
                return announced  # the part file already holds every byte
            if response.status_code not in (200, 206):
                raise DownloadError(f"{url} answered HTTP {response.status_code}.")
            if response.status_code == 200:
                offset = 0  # the server ignored the Range header: start over
            total = _total_size(response, offset)
            done = offset
            with part.open("ab" if offset else "wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
            if total is not None and done < total:
                raise DownloadError(
                    f"The download of {url} stopped at {done} of {total} bytes; "
                    "run the same command again to resume."
                )
            return announced
    except httpx.ConnectError as exc:
        raise DownloadError(
            f"Cannot reach {host}: no network? Download {url} yourself and set "
            f"ML_SERVICE_MODEL_PATH to the file ({exc})."
        ) from exc
    except httpx.TimeoutException as exc:
        raise DownloadError(
            f"{host} did not answer in time: no network? Download {url} yourself and set "
            "ML_SERVICE_MODEL_PATH to the file. A partial download resumes on the next pull."
        ) from exc
    except httpx.HTTPError as exc:
        raise DownloadError(
            f"The download from {host} was interrupted ({type(exc).__name__}); "
            "run the same command again to resume."
        ) from exc


def _announced_sha256(response: httpx.Response) -> str:
    etag = response.headers.get("x-linked-etag", "").strip('"').lower()
    return etag if _SHA256.match(etag) else ""


def _total_size(response: httpx.Response, offset: int) -> int | None:
    content_range = response.headers.get("content-range", "")
    if "/" in content_range and not content_range.endswith("/*"):
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("content-length")
    return offset + int(length) if length and length.isdigit() else None
