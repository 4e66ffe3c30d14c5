"""consent: the owner's per-conversation and per-contact training and suggestion switches

Both default to true (every synced conversation was trained on and suggested in before).
SQLite adds and drops the columns in place (no table rebuild), so migration 0004's triggers
on `messages` and the rows that reference these tables are untouched.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 19:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("conversations", "contacts")


def upgrade() -> None:
    # Plain ADD COLUMN, not batch mode: a constant default needs no rebuild, and a rebuild of
    # `conversations` on SQLite drops the table, which (foreign keys on) deletes its messages.
    for table in TABLES:
        for column in ("training", "suggestions"):
            op.add_column(
                table, sa.Column(column, sa.Boolean(), server_default=sa.true(), nullable=False)
            )


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+), for the same reason.
    for table in TABLES:
        for column in ("suggestions", "training"):
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
