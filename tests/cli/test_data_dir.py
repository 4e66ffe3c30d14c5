"""The data dir is the owner's only (0700 folders, 0600 files), whatever the umask."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from convassist.core.private import exposed_paths, private_dir
from convassist.core.settings import ML_TOKEN_FILE
from tests.support.cli import set_password
from tests.support.services import clean_env, free_port, running

PASSWORD = "correct horse battery staple"


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """This process (and the children it starts) under `mask`."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def modes(root: Path) -> dict[str, int]:
    """Permission bits of `root`'s entries, by path relative to it."""
    return {
        str(path.relative_to(root)): stat.S_IMODE(path.lstat().st_mode)
        for path in root.rglob("*")
        if not path.is_symlink()
    }


def test_private_dir_creates_and_tightens(tmp_path: Path) -> None:
    with umask(0o022):
        fresh = private_dir(tmp_path / "a" / "data")
        loose = tmp_path / "loose"
        loose.mkdir(mode=0o755)
        (loose / "old.sqlite3").write_text("x")  # an earlier version's 0644 file
        assert exposed_paths(loose) == [loose, loose / "old.sqlite3"]
        private_dir(loose)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    assert exposed_paths(loose) == [loose / "old.sqlite3"]  # reported, for `doctor`
    assert exposed_paths(tmp_path / "missing") == []


def _wait_for_job(client: httpx.Client, job_id: str, owner: dict[str, str]) -> dict[str, object]:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        job: dict[str, object] = client.get(f"/api/training/jobs/{job_id}", headers=owner).json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(1)
    raise AssertionError(f"training job {job_id} did not finish")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_server_and_ml_service_write_only_owner_only_files(tmp_path: Path) -> None:
    """Under umask 022, in a data dir an earlier version left 0755: the owner password, the
    server and ML service (sharing the dir and its generated token), a training job's samples
    and the adapter it produces; every file ends up 0600 and every folder 0700."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    ml_port, server_port = free_port(), free_port()
    ml, server = f"http://127.0.0.1:{ml_port}", f"http://127.0.0.1:{server_port}"
    env = clean_env(
        CONVASSIST_DATA_DIR=str(data),
        CONVASSIST_LOG_FORMAT="json",
        ML_SERVICE_URL=ml,
        ML_SERVICE_MODELS_DIR=str(tmp_path / "models"),
        ML_SERVICE_TRAIN_MAX_CONTEXT="64",
        ML_SERVICE_TRAIN_BATCH_SIZE="4",
        ML_SERVICE_TRAIN_THREADS="2",
    )
    with umask(0o022):
        set_password(env, PASSWORD)
        with (
            running(["ml", "--port", str(ml_port)], f"{ml}/health", env, tmp_path / "ml.log"),
            running(
                ["server", "--port", str(server_port)],
                f"{server}/api/health",
                env,
                tmp_path / "server.log",
            ),
            httpx.Client(base_url=server, timeout=60) as client,
        ):
            login = client.post("/api/auth/login", json={"password": PASSWORD})
            owner = {"Authorization": f"Bearer {login.json()['token']}"}
            for n in range(8):
                sample = {"inputContext": f"Them: lunch at {n}?\nMe:", "expectedOutput": "sure"}
                resp = client.post("/api/training/samples", json=sample, headers=owner)
                assert resp.status_code == 201, resp.text
            created = client.post("/api/training/jobs", json={"epochs": 1}, headers=owner)
            assert created.status_code == 201, (
                created.text
            )  # the ML service took the server's token
            job = _wait_for_job(client, created.json()["id"], owner)
            assert job["status"] == "completed", job
            running_modes = modes(data)
    written = {name.split("/")[0] for name in running_modes}
    assert {"convassist.sqlite3", "convassist.sqlite3-wal", ML_TOKEN_FILE, "secret_key"} <= written
    assert {"training", "ml", "adapters"} <= written
    assert any(name.endswith("samples.jsonl") for name in running_modes)
    for mode in (running_modes, modes(data)):
        loose = {
            name: oct(bits)
            for name, bits in mode.items()
            if bits != (0o700 if (data / name).is_dir() else 0o600)
        }
        assert loose == {}
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert exposed_paths(data) == []
