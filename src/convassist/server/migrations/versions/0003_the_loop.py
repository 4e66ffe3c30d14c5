"""the loop: outbox, send permission, automatic and retired suggestions, replies awaited

Revision ID: 034c047c742a
Revises: 0002
Create Date: 2026-12-01 17:19:21.603490
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


OLD_SOURCES = ("accepted", "edited", "manual", "history")
NEW_SOURCES = (*OLD_SOURCES, "replied")


def _sample_sources(values: tuple[str, ...]) -> None:
    """Redefine the CHECK constraint of `training_samples.source` (SQLite: table rebuilt)."""
    allowed = ", ".join(f"'{value}'" for value in values)
    with op.batch_alter_table("training_samples", recreate="auto") as batch_op:
        batch_op.drop_constraint(op.f("ck_training_samples_sample_source"), type_="check")
        batch_op.create_check_constraint("sample_source", sa.text(f"source IN ({allowed})"))


def upgrade() -> None:
    _sample_sources(NEW_SOURCES)
    op.create_table(
        "outbox_messages",
        sa.Column("conversation_id", sa.Uuid(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("response_id", sa.Uuid(), nullable=True),
        sa.Column("candidate_index", sa.Integer(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "sending",
                "sent",
                "failed",
                "confirmed",
                "expired",
                name="outbox_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("device_id", sa.Uuid(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claim_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("message_guid", sa.String(length=128), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_outbox_messages_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_outbox_messages_device_id_devices"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["response_id"],
            ["generated_responses.id"],
            name=op.f("fk_outbox_messages_response_id_generated_responses"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_messages")),
        sa.UniqueConstraint("response_id", name=op.f("uq_outbox_messages_response_id")),
    )
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_outbox_messages_conversation_id"), ["conversation_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_outbox_messages_device_id"), ["device_id"], unique=False
        )
        batch_op.create_index(
            "ix_outbox_messages_status_created_at", ["status", "created_at"], unique=False
        )

    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("awaiting_reply_since", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_conversations_awaiting_reply_since"),
            ["awaiting_reply_since"],
            unique=False,
        )

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("may_send", sa.Boolean(), server_default=sa.false(), nullable=False)
        )

    with op.batch_alter_table("generated_responses", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("auto", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_generated_responses_created_at", ["created_at"], unique=False)
        live_auto = sa.text("auto AND status != 'failed'")
        batch_op.create_index(
            "uq_generated_responses_auto_message_id",
            ["message_id"],
            unique=True,
            sqlite_where=live_auto,
            postgresql_where=live_auto,
        )


def downgrade() -> None:
    op.execute("DELETE FROM training_samples WHERE source = 'replied'")
    _sample_sources(OLD_SOURCES)
    with op.batch_alter_table("generated_responses", schema=None) as batch_op:
        batch_op.drop_index("uq_generated_responses_auto_message_id")
        batch_op.drop_index("ix_generated_responses_created_at")
        batch_op.drop_column("retired_at")
        batch_op.drop_column("auto")

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("may_send")

    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_conversations_awaiting_reply_since"))
        batch_op.drop_column("awaiting_reply_since")

    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_messages_status_created_at")
        batch_op.drop_index(batch_op.f("ix_outbox_messages_device_id"))
        batch_op.drop_index(batch_op.f("ix_outbox_messages_conversation_id"))

    op.drop_table("outbox_messages")
