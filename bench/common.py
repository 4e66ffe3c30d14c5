"""Helpers shared by the benchmarks: ports, services in subprocesses, percentiles."""

from __future__ import annotations

import asyncio
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from convassist.ml.training.dataset import Sample

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "benchmark password"
CHITCHAT = REPO.parent / "shared" / "data" / "chitchat" / "dataset.json.gz"
POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ML_TOKEN = secrets.token_urlsafe(32)
"""The ML service token of the services started here; `ML_AUTH` sends it."""
ML_AUTH = {"Authorization": f"Bearer {ML_TOKEN}"}
HISTORY = 10
"""Messages before a reply in its prompt (the server's history samples)."""


def load_chitchat() -> dict[str, Any]:
    """The BYU Chit-Chat corpus at `CHITCHAT` (see its SOURCE.md), read by the product's one
    loader (`convassist demo`'s): conversation id → {"messages": [turn, …], …}."""
    from convassist.server.demo.corpus import load_corpus

    return load_corpus(CHITCHAT)


def history_samples(corpus: dict[str, Any], me: str, replies: int) -> list[Sample]:
    """What the server's history makes of `me`'s first two-person conversations holding about
    `replies` replies (`pick_conversations`) once synced (server/training/history.py): each
    reply (their first message after the other person's) after the 10 messages before it,
    repeated pairs once; conversation ids are the corpus's."""
    from convassist.core.prompt import ChatLine, clean_text, render_prompt
    from convassist.server.demo.corpus import pick_conversations

    samples: list[Sample] = []
    seen: set[tuple[str, str]] = set()
    for conversation_id, conversation in pick_conversations(corpus, me, replies):
        window: deque[ChatLine] = deque(maxlen=HISTORY)
        incoming = False
        for message in (m for turn in conversation["messages"] for m in turn):
            text = clean_text(message["text"] or "")
            if not text:
                continue
            mine = message["sender"] == me
            prompt = render_prompt(window)
            if mine and incoming and (prompt, text) not in seen:
                seen.add((prompt, text))
                samples.append(Sample(prompt, text, 1.0, conversation_id))
            window.append(ChatLine("me" if mine else "them", text))
            incoming = not mine
    return samples


def cpu() -> str:
    """This machine's CPU model name."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    names = [line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line]
    return names[0] if names else platform.processor()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (1-99), interpolated."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def service_env(**overrides: str) -> dict[str, str]:
    """This environment without Conversation Assistant settings, plus `ML_TOKEN` and
    `overrides`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DB_", "CONVASSIST_", "ML_SERVICE_"))
        and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(ML_SERVICE_TOKEN=ML_TOKEN, **overrides)
    return env


@contextmanager
def convassist(args: list[str], health_url: str, env: dict[str, str], log: Path) -> Iterator[None]:
    """Run `python -m convassist ARGS` until the block ends (its output goes to `log`)."""
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "convassist", *args], env=env, stdout=out, stderr=out
        )
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise SystemExit(f"`convassist {' '.join(args)}` exited; see {log}")
                try:
                    if httpx.get(health_url, timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            else:
                raise SystemExit(f"`convassist {' '.join(args)}` did not start; see {log}")
            yield
        finally:
            process.terminate()
            process.wait(timeout=30)


@contextmanager
def ml_and_server(tmp: Path, **settings: str) -> Iterator[tuple[str, str]]:
    """The ML service and the API server in subprocesses until the block ends (data in
    `tmp/data`, logs in `tmp`, the database migrated, the owner password `PASSWORD`, plus
    `settings`); yields their base URLs: (ML service, API server)."""
    ml_port, server_port = free_port(), free_port()
    ml, server = f"http://127.0.0.1:{ml_port}", f"http://127.0.0.1:{server_port}"
    env = service_env(
        CONVASSIST_DATA_DIR=str(tmp / "data"),
        CONVASSIST_LOG_FORMAT="json",
        CONVASSIST_LOG_LEVEL="WARNING",
        ML_SERVICE_URL=ml,
        **settings,
    )
    for command in (["db", "upgrade"], ["admin", "set-password", "--password-stdin"]):
        subprocess.run(
            [sys.executable, "-m", "convassist", *command],
            input=PASSWORD + "\n",
            text=True,
            env=env,
            check=True,
            capture_output=True,
        )
    with (
        convassist(["ml", "--port", str(ml_port)], f"{ml}/health", env, tmp / "ml.log"),
        convassist(
            ["server", "--port", str(server_port)], f"{server}/api/health", env, tmp / "server.log"
        ),
    ):
        yield ml, server


async def create_database(name: str) -> str:
    """A new, empty PostgreSQL database; returns its asyncpg-style URL."""
    import asyncpg

    conn = await asyncpg.connect(POSTGRES)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return POSTGRES.rsplit("/", 1)[0] + f"/{name}"


async def drop_database(name: str) -> None:
    """Drop the PostgreSQL database `name` (created by `create_database`), if it exists."""
    import asyncpg

    conn = await asyncpg.connect(POSTGRES)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextmanager
def bench_database(tmp: Path, name: str, *, sqlite: bool) -> Iterator[str]:
    """A new database for one run: a SQLite file in `tmp`, or the PostgreSQL database `name`
    (dropped when the block ends); yields its URL."""
    if sqlite:
        yield f"sqlite:///{tmp / 'bench.sqlite3'}"
        return
    url = asyncio.run(create_database(name))
    try:
        yield url
    finally:
        asyncio.run(drop_database(name))


@contextmanager
def server_on(database_url: str, data: Path, **settings: str) -> Iterator[str]:
    """The API server on a migrated database (data dir and `server.log` in `data`), plus
    `settings`, until the block ends; yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(
        DATABASE_URL=database_url,
        CONVASSIST_DATA_DIR=str(data),
        CONVASSIST_LOG_FORMAT="json",
        CONVASSIST_LOG_LEVEL="WARNING",
        **settings,
    )
    server = ["server", "--port", str(port), "--no-migrate"]
    with convassist(server, f"{base}/api/health", env, data / "server.log"):
        yield base


def timed(client: httpx.Client, path: str, **kwargs: Any) -> float:
    """GET `path`: its time in ms; exits on any answer but 200."""
    start = time.perf_counter()
    resp = client.get(path, **kwargs)
    elapsed = (time.perf_counter() - start) * 1000
    if resp.status_code != 200:
        raise SystemExit(f"GET {path}: {resp.status_code} {resp.text[:300]}")
    return elapsed


async def set_owner(database_url: str) -> None:
    """Set the owner password (`PASSWORD`) in the database at `database_url`."""
    from convassist.core.db import create_engine, create_sessionmaker
    from convassist.server.auth.service import set_owner_password

    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            await set_owner_password(session, PASSWORD)
            await session.commit()
    finally:
        await engine.dispose()


async def owner_headers(client: httpx.AsyncClient) -> dict[str, str]:
    """Sign in as the owner (`PASSWORD`); the bearer header for the owner's requests."""
    login = await client.post("/api/auth/login", json={"password": PASSWORD})
    if login.status_code != 200:
        raise SystemExit(f"owner sign-in failed: {login.text}")
    return {"Authorization": f"Bearer {login.json()['token']}"}


async def approved_device(client: httpx.AsyncClient, owner: dict[str, str]) -> dict[str, str]:
    """Register a device, approve it as the owner, verify it: the verify answer (with `token`)."""
    device = {"name": "bench", "hardwareId": "bench-hw", "platform": "macOS", "osVersion": "15"}
    reg = (await client.post("/api/devices/register", json=device)).json()
    approved = await client.post("/api/devices/approve", json={"code": reg["code"]}, headers=owner)
    verified = await client.post(
        "/api/devices/verify", json={"deviceId": reg["deviceId"], "code": reg["code"]}
    )
    if approved.status_code != 200 or verified.status_code != 200:
        raise SystemExit(f"device approval failed: {approved.text} {verified.text}")
    body: dict[str, str] = verified.json()
    return body
