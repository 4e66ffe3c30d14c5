"""Configuration of the sync agent (`convassist agent …`), from `CONVASSIST_AGENT_*` variables."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import Field

from convassist.agent.chatdb import default_chat_db_path
from convassist.core.settings import CommonSettings

TokenStoreKind = Literal["auto", "keyring", "file"]
SenderKind = Literal["messages", "dry-run"]


def _default_sender() -> SenderKind:
    return "messages" if sys.platform == "darwin" else "dry-run"


class AgentSettings(CommonSettings):
    """The agent that reads chat.db and syncs it to the server."""

    server_url: str | None = Field(
        None,
        validation_alias="CONVASSIST_AGENT_SERVER_URL",
        description="The server to sync to; unset = the one `convassist agent register` used.",
    )
    db_path: Path = Field(
        default_factory=default_chat_db_path,
        validation_alias="CONVASSIST_AGENT_DB_PATH",
        description="The Messages database to read (~/Library/Messages/chat.db).",
    )
    state_dir: Path | None = Field(
        None,
        validation_alias="CONVASSIST_AGENT_STATE_DIR",
        description="Where the agent keeps its state database; unset = <data dir>/agent.",
    )
    poll_interval: float = Field(
        300.0,
        validation_alias="CONVASSIST_AGENT_POLL_INTERVAL",
        gt=0,
        description="Seconds between syncs of `agent run` when chat.db does not change.",
    )
    debounce: float = Field(
        2.0,
        validation_alias="CONVASSIST_AGENT_DEBOUNCE",
        ge=0,
        description="Seconds chat.db must stay quiet after a change before `agent run` syncs.",
    )
    batch_size: int = Field(
        500,
        validation_alias="CONVASSIST_AGENT_BATCH_SIZE",
        gt=0,
        description="Most messages per sync request (capped by the server's maximum).",
    )
    concurrency: int = Field(
        2,
        validation_alias="CONVASSIST_AGENT_CONCURRENCY",
        ge=1,
        le=16,
        description="Sync requests in flight at once.",
    )
    default_country_code: str = Field(
        "1",
        validation_alias="CONVASSIST_AGENT_DEFAULT_COUNTRY_CODE",
        pattern=r"^\+?\d{1,4}$",
        description="Country code for contact numbers written without one (1 = US/Canada).",
    )
    addressbook_dir: Path | None = Field(
        None,
        validation_alias="CONVASSIST_AGENT_ADDRESSBOOK_DIR",
        description="The Contacts data folder; unset = ~/Library/Application Support/AddressBook.",
    )
    token_store: TokenStoreKind = Field(
        "auto",
        validation_alias="CONVASSIST_AGENT_TOKEN_STORE",
        description="auto (the OS keychain, else a 0600 file), keyring, or file.",
    )
    http_timeout: float = Field(
        30.0,
        validation_alias="CONVASSIST_AGENT_HTTP_TIMEOUT",
        gt=0,
        description="Seconds to wait for one server response.",
    )
    retries: int = Field(
        5,
        validation_alias="CONVASSIST_AGENT_RETRIES",
        ge=0,
        description="Retries of a request after a network error, 5xx or 429.",
    )
    retry_backoff: float = Field(
        1.0,
        validation_alias="CONVASSIST_AGENT_RETRY_BACKOFF",
        ge=0,
        description="First retry delay in seconds; doubles on each retry (with jitter, max 60).",
    )
    sender: SenderKind = Field(
        default_factory=_default_sender,
        validation_alias="CONVASSIST_AGENT_SENDER",
        description="How `agent run` sends the owner's replies: messages (AppleScript, macOS) "
        "or dry-run (append them to the sent log, send nothing); default: messages on macOS.",
    )
    sent_log: Path | None = Field(
        None,
        validation_alias="CONVASSIST_AGENT_SENT_LOG",
        description="The dry-run sender's JSON-lines file; unset = <state dir>/sent.jsonl.",
    )
    outbox_wait: float = Field(
        20.0,
        validation_alias="CONVASSIST_AGENT_OUTBOX_WAIT",
        ge=0,
        le=25,
        description="Seconds one outbox check may wait on the server for a message (long poll).",
    )

    @property
    def resolved_state_dir(self) -> Path:
        return (self.state_dir or self.data_dir / "agent").expanduser()

    @property
    def resolved_sent_log(self) -> Path:
        return (self.sent_log or self.resolved_state_dir / "sent.jsonl").expanduser()
