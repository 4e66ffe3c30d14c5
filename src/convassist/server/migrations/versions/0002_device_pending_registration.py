"""device re-registration waits for approval: the pending name, platform and OS version

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 11:25:35.825157
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pending_name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("pending_platform", sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column("pending_os_version", sa.String(length=50), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("pending_os_version")
        batch_op.drop_column("pending_platform")
        batch_op.drop_column("pending_name")
