"""The server's data model: the seed's seven entities plus what security needs.

Migrations in `convassist/server/migrations` are the only way this schema is created; a
test fails if these models and the migrations drift apart.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from convassist.server.model_base import Base as Base
from convassist.server.model_base import JSONType, Timestamps, UUIDPrimaryKey, str_enum
from convassist.server.model_base import utcnow as utcnow


class Direction(enum.StrEnum):
    INCOMING = "incoming"
    OUTGOING = "outgoing"


class MessageType(enum.StrEnum):
    TEXT = "text"
    ATTACHMENT = "attachment"
    STICKER = "sticker"
    APP = "app"
    REACTION = "reaction"
    OTHER = "other"


class ResponseStatus(enum.StrEnum):
    GENERATING = "generating"
    COMPLETED = "completed"
    ACCEPTED = "accepted"
    EDITED = "edited"
    REJECTED = "rejected"
    FAILED = "failed"


class SampleSource(enum.StrEnum):
    ACCEPTED = "accepted"
    EDITED = "edited"
    MANUAL = "manual"
    HISTORY = "history"
    # The owner answered from the phone (or Messages on the Mac) instead of a suggestion.
    REPLIED = "replied"


class OutboxStatus(enum.StrEnum):
    """queued → sending (claimed by a device) → sent → confirmed (seen in chat.db);
    failed, or expired when no device sent it in time."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CONFIRMED = "confirmed"
    EXPIRED = "expired"


class TrainingStatus(enum.StrEnum):
    QUEUED = "queued"
    TRAINING = "training"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Owner(Timestamps, Base):
    """The single owner account. `session_generation` revokes every owner session at once."""

    __tablename__ = "owners"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    session_generation: Mapped[int] = mapped_column(Integer, default=1)


class RateLimitBucket(Base):
    """A fixed-window counter (failed logins, wrong approval codes, registrations)."""

    __tablename__ = "rate_limit_buckets"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_started_at: Mapped[datetime]
    count: Mapped[int] = mapped_column(Integer, default=0)


class Device(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "devices"

    name: Mapped[str] = mapped_column(String(200))
    hardware_id: Mapped[str] = mapped_column(String(200), unique=True)
    platform: Mapped[str] = mapped_column(String(50))
    os_version: Mapped[str] = mapped_column(String(50))
    # Pending authorization: HMAC of the 6-digit code (never the code itself).
    code_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    code_expires_at: Mapped[datetime | None]
    code_attempts: Mapped[int] = mapped_column(Integer, default=0)
    approved_at: Mapped[datetime | None]
    last_poll_at: Mapped[datetime | None]
    # A known device's re-registration: applied when the owner approves its code.
    pending_name: Mapped[str | None] = mapped_column(String(200))
    pending_platform: Mapped[str | None] = mapped_column(String(50))
    pending_os_version: Mapped[str | None] = mapped_column(String(50))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Bumped on re-registration and deactivation: tokens carry it and die with it.
    token_generation: Mapped[int] = mapped_column(Integer, default=1)
    deactivated_at: Mapped[datetime | None]
    last_sync_at: Mapped[datetime | None]
    messages_synced: Mapped[int] = mapped_column(Integer, default=0)
    # The owner's permission for this device to send replies from the outbox (off by default).
    may_send: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    @property
    def status(self) -> str:
        """pending (code shown), approved (agent not yet collected its token), active, inactive.

        An active device that re-registers stays active until the owner approves its code."""
        if self.code_hash and self.code_expires_at and self.code_expires_at > utcnow():
            if self.approved_at:
                return "approved"
            if not (self.verified and self.is_active):
                return "pending"
        if self.verified:
            return "active" if self.is_active else "inactive"
        return "expired"

    @property
    def pending_registration(self) -> str | None:
        """The name a re-registration asks for, while its code waits for the owner."""
        live = self.code_hash and self.code_expires_at and self.code_expires_at > utcnow()
        return self.pending_name if live and not self.approved_at else None


class Contact(UUIDPrimaryKey, Timestamps, Base):
    """A person's name for one iMessage handle (`apple_id`: phone number or email)."""

    __tablename__ = "contacts"

    apple_id: Mapped[str] = mapped_column(String(320), unique=True)
    phone_number: Mapped[str | None] = mapped_column(String(64), index=True)
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    display_name: Mapped[str | None] = mapped_column(String(300))
    avatar_hash: Mapped[str | None] = mapped_column(String(128))
    # The owner's consent: learn from it, suggest replies in it (`conversations/consent.py`).
    training: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    suggestions: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class Conversation(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "conversations"

    imessage_id: Mapped[str] = mapped_column(String(300), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(300))
    is_group: Mapped[bool] = mapped_column(Boolean, default=False)
    service: Mapped[str | None] = mapped_column(String(32))
    last_message_at: Mapped[datetime | None]
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    # When the newest message that needs the owner's reply arrived (the suggestion gate's
    # verdict, kept by sync); None when nothing waits: the owner replied, or dismissed it.
    awaiting_reply_since: Mapped[datetime | None] = mapped_column(index=True)
    # The owner's consent: learn from it, suggest replies in it (`conversations/consent.py`).
    training: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    suggestions: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    participants: Mapped[list[ConversationParticipant]] = relationship(
        back_populates="conversation", cascade="all, delete-orphan", lazy="raise"
    )

    __table_args__ = (Index("ix_conversations_last_message_at_id", "last_message_at", "id"),)


class ConversationParticipant(UUIDPrimaryKey, Base):
    __tablename__ = "conversation_participants"

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    handle: Mapped[str] = mapped_column(String(320), index=True)

    conversation: Mapped[Conversation] = relationship(back_populates="participants")

    __table_args__ = (UniqueConstraint("conversation_id", "handle"),)


class Message(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "messages"

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    imessage_guid: Mapped[str] = mapped_column(String(128), unique=True)
    sender_id: Mapped[str | None] = mapped_column(String(320))
    direction: Mapped[Direction] = mapped_column(str_enum(Direction, "direction"))
    message_type: Mapped[MessageType] = mapped_column(
        str_enum(MessageType, "message_type"), default=MessageType.TEXT
    )
    text: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime]
    edited_at: Mapped[datetime | None]
    is_unsent: Mapped[bool] = mapped_column(Boolean, default=False)
    reply_to_guid: Mapped[str | None] = mapped_column(String(128))
    service: Mapped[str | None] = mapped_column(String(32))
    device_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL")
    )

    __table_args__ = (
        Index("ix_messages_conversation_id_sent_at_id", "conversation_id", "sent_at", "id"),
    )


class GeneratedResponse(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "generated_responses"

    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    prompt: Mapped[str] = mapped_column(Text)
    response: Mapped[str | None] = mapped_column(Text)
    # [{"text": str, "confidence": float}, ...] best first; `response` is candidates[0] until
    # the owner chooses (chosen_index) or edits (edited_response).
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    chosen_index: Mapped[int | None] = mapped_column(Integer)
    edited_response: Mapped[str | None] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float)
    model_version: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[ResponseStatus] = mapped_column(str_enum(ResponseStatus, "response_status"))
    error: Mapped[str | None] = mapped_column(Text)
    ml_job_id: Mapped[str | None] = mapped_column(String(64))
    generated_at: Mapped[datetime | None]
    acted_at: Mapped[datetime | None]
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    # Queued by the server when a sync brought the message (not asked for by the owner).
    auto: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Set when a newer incoming message or the owner's own reply made these suggestions moot.
    retired_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_generated_responses_created_at", "created_at"),
        # One live automatic suggestion per message, however many servers sweep at once.
        Index(
            "uq_generated_responses_auto_message_id",
            "message_id",
            unique=True,
            sqlite_where=text("auto AND status != 'failed'"),
            postgresql_where=text("auto AND status != 'failed'"),
        ),
    )


class TrainingSample(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "training_samples"

    input_context: Mapped[str] = mapped_column(Text)
    expected_output: Mapped[str] = mapped_column(Text)
    source: Mapped[SampleSource] = mapped_column(str_enum(SampleSource, "sample_source"))
    quality: Mapped[float] = mapped_column(Float)
    response_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("generated_responses.id", ondelete="SET NULL"), unique=True
    )
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL"), index=True
    )

    __table_args__ = (
        CheckConstraint("quality >= 0 AND quality <= 1", name="quality_range"),
        Index("ix_training_samples_created_at", "created_at"),
    )


class OutboxMessage(UUIDPrimaryKey, Timestamps, Base):
    """A reply the owner chose, waiting for (or sent by) a device allowed to send.

    A device claims an entry before it sends it; the claim is sticky: only the device that
    claimed an entry may send it again (it alone can tell from its chat.db whether it did)."""

    __tablename__ = "outbox_messages"

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    text: Mapped[str] = mapped_column(Text)
    response_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("generated_responses.id", ondelete="SET NULL"), unique=True
    )
    candidate_index: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[OutboxStatus] = mapped_column(
        str_enum(OutboxStatus, "outbox_status"), default=OutboxStatus.QUEUED
    )
    expires_at: Mapped[datetime]
    device_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), index=True
    )
    claimed_at: Mapped[datetime | None]
    claim_expires_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    message_guid: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (Index("ix_outbox_messages_status_created_at", "status", "created_at"),)


class TrainingJob(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "training_jobs"

    base_model: Mapped[str] = mapped_column(String(200))
    status: Mapped[TrainingStatus] = mapped_column(
        str_enum(TrainingStatus, "training_status"), default=TrainingStatus.QUEUED
    )
    progress: Mapped[int] = mapped_column(Integer, default=0)
    epochs: Mapped[int | None] = mapped_column(Integer)
    """At most this many passes; None: the plan chose (the passes made are in `metrics`)."""
    budget_minutes: Mapped[float | None] = mapped_column(Float)
    """None for jobs from before budgets (migration 0006)."""
    learning_rate: Mapped[float] = mapped_column(Float)
    lora_rank: Mapped[int] = mapped_column(Integer, default=16)
    min_quality: Mapped[float] = mapped_column(Float, default=0.0)
    include_history: Mapped[bool] = mapped_column(Boolean, default=False)
    sample_count: Mapped[int] = mapped_column(Integer, default=0)
    output_path: Mapped[str | None] = mapped_column(String(1024))
    error: Mapped[str | None] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    ml_job_id: Mapped[str | None] = mapped_column(String(64))
    adapter_id: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]

    __table_args__ = (CheckConstraint("progress >= 0 AND progress <= 100", name="progress_range"),)
