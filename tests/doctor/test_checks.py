"""The doctor's checks against real things: SQLite files, Redis, the model, llama.cpp."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from convassist.agent.client import TokenGrant
from convassist.agent.registration import save_grant
from convassist.core.cpu import cpu_flags
from convassist.core.db import create_engine, create_sessionmaker
from convassist.core.settings import ServerSettings
from convassist.doctor import CHECKS
from convassist.doctor.agent import check_agent_server, check_agent_token, check_chat_db
from convassist.doctor.local import (
    check_cpu,
    check_disk,
    check_generation,
    check_model,
    check_permissions,
    check_python,
)
from convassist.doctor.result import Check, Context, Outcome, Status, failed, run_checks
from convassist.doctor.services import check_database, check_owner, check_redis
from convassist.ml.models.native import has_amx
from convassist.ml.settings import MLSettings
from convassist.ml.training.device import cpu_bf16_pays
from convassist.server import migrate
from convassist.server.auth.service import set_owner_password
from tests.agent.faults import web_page
from tests.conftest import OWNER_PASSWORD, TEST_REDIS_URL
from tests.support.services import free_port


def context(tmp_path: Path, *, database_url: str | None = None, **ml: Any) -> Context:
    data = tmp_path / "data"
    url = database_url or f"sqlite+aiosqlite:///{data / 'convassist.sqlite3'}"
    server = ServerSettings(_env_file=None, data_dir=data, database_url=url)
    ml_settings = MLSettings(_env_file=None, data_dir=data, models_dir=tmp_path / "models", **ml)
    return Context(server=server, ml=ml_settings, platform="linux")


def migrated(tmp_path: Path) -> Context:
    ctx = context(tmp_path)
    ctx.server.data_dir.mkdir(mode=0o700)
    migrate.upgrade(ctx.server.resolved_database_url)
    return ctx


def test_python_is_ok() -> None:
    outcome = check_python(Context(server=ServerSettings(), ml=MLSettings()))
    assert outcome.status is Status.OK
    assert "3.1" in outcome.summary


def test_a_migrated_database_is_ok(tmp_path: Path) -> None:
    outcome = check_database(migrated(tmp_path))
    assert outcome.status is Status.OK, outcome
    assert migrate.head() in outcome.summary


def test_an_unmigrated_database_fails_with_the_command_that_fixes_it(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    ctx.server.data_dir.mkdir()
    sqlite3.connect(ctx.server.data_dir / "convassist.sqlite3").close()  # empty, no schema
    outcome = check_database(ctx)
    assert outcome.status is Status.FAIL
    assert "revision none" in outcome.summary
    assert outcome.fix is not None and "convassist db upgrade" in outcome.fix


def test_a_missing_sqlite_file_fails_and_is_not_created(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    outcome = check_database(ctx)
    assert outcome.status is Status.FAIL
    assert "no database" in outcome.summary
    assert not (ctx.server.data_dir / "convassist.sqlite3").exists()
    assert check_owner(ctx).status is Status.SKIP


def test_an_unreachable_postgresql_fails_with_what_to_check(tmp_path: Path) -> None:
    ctx = context(tmp_path, database_url="postgresql+asyncpg://nobody:secret@127.0.0.1:1/nothing")
    outcome = check_database(ctx)
    assert outcome.status is Status.FAIL
    assert "cannot reach postgresql+asyncpg://nobody:***@127.0.0.1:1/nothing" in outcome.summary
    assert "secret" not in outcome.summary
    assert outcome.fix is not None and "DATABASE_URL" in outcome.fix


def test_the_owner_password_warns_until_it_is_set(tmp_path: Path) -> None:
    ctx = migrated(tmp_path)
    missing = check_owner(ctx)
    assert missing.status is Status.WARN
    assert missing.fix is not None and "convassist admin set-password" in missing.fix

    async def set_password() -> None:
        engine = create_engine(ctx.server.resolved_database_url)
        async with create_sessionmaker(engine)() as session:
            await set_owner_password(session, OWNER_PASSWORD)
            await session.commit()
        await engine.dispose()

    asyncio.run(set_password())
    assert check_owner(ctx).status is Status.OK


def test_the_default_model_matches_its_checksum(tmp_path: Path) -> None:
    outcome = check_model(context(tmp_path))
    assert outcome.status is Status.OK, outcome
    assert "smollm2-135m-instruct" in outcome.summary
    assert "matches the manifest" in outcome.summary


def test_a_missing_model_path_fails_and_generation_is_skipped(tmp_path: Path) -> None:
    ctx = context(tmp_path, model_path=tmp_path / "nowhere.gguf")
    outcome = check_model(ctx)
    assert outcome.status is Status.FAIL
    assert outcome.fix is not None and "ML_SERVICE_MODEL_PATH" in outcome.fix
    assert check_generation(ctx).status is Status.SKIP


def test_a_corrupt_download_fails_its_checksum(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mistral-7b-instruct-v0.2.Q4_K_M.gguf").write_bytes(b"GGUF" + b"0" * 64)
    outcome = check_model(context(tmp_path, model_id="mistral-7b"))
    assert outcome.status is Status.FAIL
    assert outcome.fix is not None and "convassist models pull mistral-7b" in outcome.fix


def test_the_cpu_check_names_llama_s_config_and_training_s_number_type(tmp_path: Path) -> None:
    outcome = check_cpu(context(tmp_path))
    assert outcome.status is Status.OK, outcome
    if has_amx(cpu_flags()):  # llama.cpp's AMX repack crashes: off, and the reason named
        assert "extra buffer types off (the CPU has Intel AMX (amx_" in outcome.summary
    else:
        assert "extra buffer types on" in outcome.summary
    assert ("runs in bf16" if cpu_bf16_pays() else "runs in fp32 (no AMX") in outcome.summary
    forced = check_cpu(context(tmp_path, llama_extra_bufts="off"))
    assert "extra buffer types off (ML_SERVICE_LLAMA_EXTRA_BUFTS=off)" in forced.summary


@pytest.mark.slow
def test_generation_decodes_a_few_tokens_with_the_real_model(tmp_path: Path) -> None:
    outcome = check_generation(context(tmp_path, threads=2))
    assert outcome.status is Status.OK, outcome
    assert "decoded 4 tokens with smollm2-135m-instruct" in outcome.summary


@pytest.mark.slow
def test_generation_with_a_file_llama_cpp_rejects_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(4096))
    outcome = check_generation(context(tmp_path, model_path=bad, threads=1))
    assert outcome.status is Status.FAIL
    assert "could not decode with bad.gguf" in outcome.summary


def test_redis_when_configured(tmp_path: Path) -> None:
    assert check_redis(context(tmp_path)).status is Status.SKIP
    assert check_redis(context(tmp_path, redis_url=TEST_REDIS_URL)).status is Status.OK
    down = check_redis(context(tmp_path, redis_url="redis://:pw@127.0.0.1:1/0"))
    assert down.status is Status.FAIL
    assert "redis://127.0.0.1:1/0" in down.summary and "pw" not in down.summary


def test_data_dir_permissions(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    assert check_permissions(ctx).status is Status.WARN  # not created yet
    data = ctx.server.data_dir
    data.mkdir(mode=0o700)
    (data / "secret_key").write_text("x")
    (data / "secret_key").chmod(0o600)
    assert check_permissions(ctx).status is Status.OK
    (data / "training").mkdir()
    (data / "training").chmod(0o755)  # explicit: the process umask may already be 077
    (data / "training" / "samples.jsonl").write_text("{}")
    (data / "training" / "samples.jsonl").chmod(0o644)
    loose = check_permissions(ctx)
    assert loose.status is Status.FAIL
    assert "2 path(s)" in loose.summary and "samples.jsonl (-rw-r--r--)" in loose.summary
    assert loose.fix == f"chmod -R go-rwx {data}"


def test_free_disk_is_reported(tmp_path: Path) -> None:
    outcome = check_disk(context(tmp_path))
    assert outcome.status in (Status.OK, Status.WARN)
    assert "GB free" in outcome.summary


def test_agent_checks_are_skipped_off_the_mac(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    for check in (check_chat_db, check_agent_token, check_agent_server):
        outcome = check(ctx)
        assert outcome.status is Status.SKIP
        assert "not applicable on Linux" in outcome.summary


def test_agent_checks_on_a_mac_without_messages_or_registration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVASSIST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CONVASSIST_AGENT_DB_PATH", str(tmp_path / "no-chat.db"))
    ctx = context(tmp_path)
    ctx.platform = "darwin"
    chat = check_chat_db(ctx)
    assert chat.status is Status.FAIL
    assert chat.fix is not None and "Messages database not found" in chat.fix
    token = check_agent_token(ctx)
    assert token.status is Status.WARN
    assert token.fix is not None and "convassist agent register" in token.fix
    assert check_agent_server(ctx).status is Status.SKIP


def registered_mac(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server_url: str) -> Context:
    """A "Mac" (the platform is the one thing faked) whose agent registered with `server_url`."""
    monkeypatch.setenv("CONVASSIST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CONVASSIST_AGENT_TOKEN_STORE", "file")
    monkeypatch.setenv("CONVASSIST_AGENT_RETRIES", "0")
    ctx = context(tmp_path)
    ctx.platform = "darwin"
    grant = TokenGrant("device-1", "a-device-token", datetime.now(UTC) + timedelta(days=7))
    save_grant(ctx.agent, server_url, "Test Mac", grant)
    return ctx


def test_the_agents_server_must_be_a_conversation_assistant_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with web_page(b"<html><title>Router admin</title></html>") as url:
        ctx = registered_mac(tmp_path, monkeypatch, url)
        token = check_agent_token(ctx)
        assert token.status is Status.OK, token
        assert f"Test Mac is registered with {url}" in token.summary
        outcome = check_agent_server(ctx)
    assert outcome.status is Status.FAIL
    assert "is not a Conversation Assistant server" in outcome.summary
    assert "<html" not in outcome.summary


def test_the_agents_server_not_answering_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = registered_mac(tmp_path, monkeypatch, f"http://127.0.0.1:{free_port()}")
    outcome = check_agent_server(ctx)
    assert outcome.status is Status.FAIL
    assert "connection refused" in outcome.summary
    assert outcome.fix is not None and "convassist up" in outcome.fix


def test_a_check_that_raises_fails_without_hiding_the_others(tmp_path: Path) -> None:
    def broken(_: Context) -> Outcome:
        raise RuntimeError("boom")

    checks = [Check("broken", "Broken", broken), Check("python", "Python", check_python)]
    results = run_checks(checks, context(tmp_path))
    assert [r.outcome.status for r in results] == [Status.FAIL, Status.OK]
    assert "RuntimeError: boom" in results[0].outcome.summary
    assert failed(results)


def test_every_check_has_a_unique_id() -> None:
    ids = [check.id for check in CHECKS]
    assert len(ids) == len(set(ids))
