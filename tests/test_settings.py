"""Configuration: seed variable names, database resolution, secrets, .env.example."""

from __future__ import annotations

import importlib
import pkgutil
import re
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings
from sqlalchemy.engine import make_url

import convassist
from convassist.core.settings import ServerSettings, read_or_create_secret

REPO = Path(__file__).resolve().parents[1]


def _settings_classes() -> list[type[BaseSettings]]:
    for module in pkgutil.walk_packages(convassist.__path__, "convassist."):
        if module.name.endswith(".settings"):
            importlib.import_module(module.name)
    found: list[type[BaseSettings]] = []
    pending: list[type[BaseSettings]] = [BaseSettings]
    while pending:
        for sub in pending.pop().__subclasses__():
            pending.append(sub)
            if sub.__module__.startswith("convassist."):
                found.append(sub)
    return found


def test_env_example_lists_every_setting() -> None:
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (REPO / ".env.example").read_text(), re.M))
    names = {
        str(field.validation_alias)
        for cls in _settings_classes()
        for field in cls.model_fields.values()
        if field.validation_alias
    }
    assert "DATABASE_URL" in names and "REDIS_URL" in names
    missing = names - documented
    assert not missing, f".env.example is missing: {sorted(missing)}"
    unknown = documented - names
    assert not unknown, f".env.example lists unknown settings: {sorted(unknown)}"


def test_every_setting_has_an_env_name_and_a_description() -> None:
    for cls in _settings_classes():
        for name, field in cls.model_fields.items():
            assert field.validation_alias, f"{cls.__name__}.{name} has no environment name"
            assert field.description, f"{cls.__name__}.{name} has no description"


def test_embedded_sqlite_is_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("DATABASE_URL", "DB_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CONVASSIST_DATA_DIR", str(tmp_path))
    settings = ServerSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path}/convassist.sqlite3"


def test_seed_db_variables_build_a_postgresql_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DB_HOST", "db.internal")
    monkeypatch.setenv("DB_PORT", "6543")
    monkeypatch.setenv("DB_USER", "ca")
    monkeypatch.setenv("DB_PASSWORD", "p@ss word")
    monkeypatch.setenv("DB_NAME", "assistant")
    url = make_url(ServerSettings(_env_file=None).resolved_database_url)  # type: ignore[call-arg]
    assert url.drivername == "postgresql+asyncpg"
    assert (url.host, url.port, url.username, url.database) == (
        "db.internal",
        6543,
        "ca",
        "assistant",
    )
    assert url.password == "p@ss word"


def test_database_url_wins_and_gets_an_async_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_HOST", "ignored")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h:5432/d")
    assert ServerSettings(_env_file=None).resolved_database_url == "postgresql+asyncpg://u@h:5432/d"  # type: ignore[call-arg]


def test_seed_service_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_SERVICE_URL", "http://ml:9000")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6380")
    settings = ServerSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.ml_service_url == "http://ml:9000"
    assert settings.redis_url == "redis://cache:6380"


def test_secret_is_generated_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "secret_key"
    first = read_or_create_secret(path)
    assert len(first) >= 48
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_create_secret(path) == first
    settings = ServerSettings(data_dir=tmp_path / "d", secret_key=None)
    generated = settings.jwt_secret()
    assert generated == ServerSettings(data_dir=tmp_path / "d", secret_key=None).jwt_secret()
    assert generated not in (REPO / ".env.example").read_text()


def test_several_urls_are_read_from_ml_service_url(tmp_path: Path) -> None:
    settings = ServerSettings(
        _env_file=None,
        data_dir=tmp_path,
        ml_service_url=" http://10.0.0.1:8100/, http://10.0.0.2:8100 ",
    )
    assert settings.ml_service_urls == ["http://10.0.0.1:8100", "http://10.0.0.2:8100"]
    one = ServerSettings(_env_file=None, data_dir=tmp_path, ml_service_url="http://ml:8100")
    assert one.ml_service_url == "http://ml:8100"
    assert one.ml_service_urls == ["http://ml:8100"]


@pytest.mark.parametrize("value", ["localhost:8100", "http://a:1,ftp://b", " , "])
def test_a_malformed_ml_service_url_is_refused_at_start_up(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValidationError) as raised:
        ServerSettings(_env_file=None, data_dir=tmp_path, ml_service_url=value)
    assert "ML_SERVICE_URL" in str(raised.value)
