"""Configuration from the environment (and an optional `.env` file).

The seed's variable names (`DB_HOST`, `REDIS_URL`, `ML_SERVICE_URL`, …) are honoured as they
are; our own settings carry a `CONVASSIST_` prefix. With nothing set, the server uses an
embedded SQLite file in the user data directory and no Redis.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from platformdirs import user_cache_dir, user_data_dir
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from convassist.core.private import private_dir

APP_NAME = "convassist"

LogFormat = Literal["auto", "console", "json"]

ML_TOKEN_FILE = "ml_service_token"  # noqa: S105 (a file name, not a secret)


def default_data_dir() -> Path:
    return Path(user_data_dir(APP_NAME, appauthor=False))


def default_cache_dir() -> Path:
    return Path(user_cache_dir(APP_NAME, appauthor=False))


class CommonSettings(BaseSettings):
    """Settings shared by every process (server, ML service, worker, agent)."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,  # `KEY=` (as in .env.example) means "use the default"
        extra="ignore",
        populate_by_name=True,
    )

    data_dir: Path = Field(
        default_factory=default_data_dir,
        validation_alias="CONVASSIST_DATA_DIR",
        description="Where the SQLite database, secrets, adapters and training data live.",
    )
    log_level: str = Field(
        "INFO", validation_alias="CONVASSIST_LOG_LEVEL", description="DEBUG, INFO, WARNING…"
    )
    log_format: LogFormat = Field(
        "auto",
        validation_alias="CONVASSIST_LOG_FORMAT",
        description="console, json, or auto (console in a terminal, JSON otherwise).",
    )
    redis_url: str | None = Field(
        None,
        validation_alias="REDIS_URL",
        description="Redis for the response cache and job queues; unset = in-process.",
    )
    ml_service_token: str | None = Field(
        None,
        validation_alias="ML_SERVICE_TOKEN",
        min_length=16,
        description="Shared secret the server sends the ML service as a bearer token; "
        "generated and kept in the data dir when unset (server and ML service on one machine).",
    )

    def ensure_data_dir(self) -> Path:
        """The data dir, created 0700 (or tightened to 0700: it is the owner's only)."""
        return private_dir(self.data_dir)

    def ml_token(self) -> str:
        """The ML service's bearer token: configured, or generated once into the data dir."""
        return self.ml_service_token or read_or_create_secret(
            self.ensure_data_dir() / ML_TOKEN_FILE
        )


class ServerSettings(CommonSettings):
    """The API server (port 3100)."""

    database_url: str | None = Field(
        None,
        validation_alias="DATABASE_URL",
        description="Full SQLAlchemy/PostgreSQL URL; wins over the DB_* variables.",
    )
    db_host: str | None = Field(
        None, validation_alias="DB_HOST", description="PostgreSQL host (seed); enables PostgreSQL."
    )
    db_port: int = Field(5433, validation_alias="DB_PORT", description="PostgreSQL port (seed).")
    db_user: str = Field("postgres", validation_alias="DB_USER", description="PostgreSQL user.")
    db_password: str = Field(
        "devpassword", validation_alias="DB_PASSWORD", description="PostgreSQL password."
    )
    db_name: str = Field(
        "conversation_assistant", validation_alias="DB_NAME", description="PostgreSQL database."
    )
    ml_service_url: str = Field(
        "http://localhost:8100",
        validation_alias="ML_SERVICE_URL",
        description="ML service; several instances: their URLs separated by commas.",
    )
    ml_service_timeout: float = Field(
        60.0,
        validation_alias="ML_SERVICE_TIMEOUT",
        gt=0,
        description="Seconds to wait for the ML service before answering 504.",
    )
    host: str = Field("127.0.0.1", validation_alias="CONVASSIST_HOST", description="Bind host.")
    port: int = Field(3100, validation_alias="CONVASSIST_PORT", description="Bind port.")
    secret_key: str | None = Field(
        None,
        validation_alias="CONVASSIST_SECRET_KEY",
        description="JWT signing key; generated and stored in the data dir when unset.",
    )
    device_token_days: int = Field(
        7, validation_alias="CONVASSIST_DEVICE_TOKEN_DAYS", gt=0, description="Device JWT life."
    )
    device_poll_interval: float = Field(
        2.0,
        validation_alias="CONVASSIST_DEVICE_POLL_INTERVAL",
        ge=0,
        description="Seconds an agent must wait between verify polls (faster gets slow_down).",
    )
    owner_session_hours: int = Field(
        24 * 7,
        validation_alias="CONVASSIST_OWNER_SESSION_HOURS",
        gt=0,
        description="Owner login session life.",
    )
    cookie_secure: bool = Field(
        False,
        validation_alias="CONVASSIST_COOKIE_SECURE",
        description="Mark cookies Secure (set when serving over HTTPS).",
    )
    max_body_bytes: int = Field(
        8 * 1024 * 1024,
        validation_alias="CONVASSIST_MAX_BODY_BYTES",
        gt=0,
        description="Largest accepted request body.",
    )
    sync_max_batch: int = Field(
        1000,
        validation_alias="CONVASSIST_SYNC_MAX_BATCH",
        gt=0,
        description="Most messages accepted in one sync request.",
    )
    auto_suggest: bool = Field(
        True,
        validation_alias="CONVASSIST_AUTO_SUGGEST",
        description="Queue suggestions for a message that waits on the owner's reply, as it syncs.",
    )
    suggest_groups: Literal["never", "participating", "always"] = Field(
        "participating",
        validation_alias="CONVASSIST_SUGGEST_GROUPS",
        description="Group chats that wait on a reply: never, participating (the owner has "
        "written in them), always.",
    )
    suggest_max_age_hours: float = Field(
        24.0,
        validation_alias="CONVASSIST_SUGGEST_MAX_AGE_HOURS",
        gt=0,
        description="Messages older than this when they sync (history) never wait on a reply.",
    )
    train_on_groups: bool = Field(
        False,
        validation_alias="CONVASSIST_TRAIN_ON_GROUPS",
        description="Training jobs also learn from the owner's replies in group chats.",
    )
    outbox_expiry_seconds: float = Field(
        600.0,
        validation_alias="CONVASSIST_OUTBOX_EXPIRY_SECONDS",
        gt=0,
        description="Seconds a queued reply may wait for a device; later it is never sent.",
    )
    outbox_sends_per_minute: int = Field(
        30,
        validation_alias="CONVASSIST_OUTBOX_SENDS_PER_MINUTE",
        gt=0,
        description="Most replies the owner may queue for sending in one minute.",
    )

    @field_validator("ml_service_url")
    @classmethod
    def _ml_service_urls(cls, value: str) -> str:
        urls = split_urls(value)
        if not urls:
            raise ValueError("ML_SERVICE_URL is empty: give the ML service's URL")
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(
                    f"ML_SERVICE_URL has {url!r}, which is not an http(s)://host[:port] URL "
                    "(several instances: separate their URLs with commas)"
                )
        return ",".join(urls)

    @property
    def ml_service_urls(self) -> list[str]:
        """Each configured ML service instance (`ML_SERVICE_URL`, comma-separated)."""
        return split_urls(self.ml_service_url)

    @property
    def resolved_database_url(self) -> str:
        """`DATABASE_URL` > `DB_HOST` (+ the other DB_* variables) > embedded SQLite."""
        if self.database_url:
            return normalize_database_url(self.database_url)
        if self.db_host:
            from sqlalchemy.engine import URL

            return URL.create(
                "postgresql+asyncpg",
                username=self.db_user,
                password=self.db_password,
                host=self.db_host,
                port=self.db_port,
                database=self.db_name,
            ).render_as_string(hide_password=False)
        return f"sqlite+aiosqlite:///{self.data_dir / 'convassist.sqlite3'}"

    def jwt_secret(self) -> str:
        """The signing key: configured, or generated once and kept in the data directory."""
        return self.secret_key or read_or_create_secret(self.ensure_data_dir() / "secret_key")


def split_urls(value: str) -> list[str]:
    """A comma-separated list of URLs, each without its trailing slash."""
    return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]


def normalize_database_url(url: str) -> str:
    """Pick the async drivers for the plain URL schemes people paste."""
    for plain, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def read_or_create_secret(path: Path) -> str:
    """Read a secret file, creating it (mode 0600) with a fresh random key if missing.

    Creation is atomic (`link` fails if another process won the race), so concurrent first
    starts agree on one key.
    """
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()
