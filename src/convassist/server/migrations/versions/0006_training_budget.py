"""training budget: a job's time budget in minutes; epochs may be left to the plan

`training_jobs.budget_minutes` is null for the jobs made before budgets. `epochs` becomes
nullable: null means the trainer's plan chose the passes (ml/training/budget.py). SQLite
rebuilds `training_jobs` to relax the NOT NULL (batch mode; no table references it).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 20:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("budget_minutes", sa.Float(), nullable=True))
        batch_op.alter_column("epochs", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE training_jobs SET epochs = 1 WHERE epochs IS NULL")
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.alter_column("epochs", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("budget_minutes")
