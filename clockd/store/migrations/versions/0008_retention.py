"""Poll-run retention: one summary row per terminal per local day for runs older than
`retention.poll_runs_days` (see store/retention.py).

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    instant = sa.DateTime(timezone=True)
    op.create_table(
        "poll_run_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("terminal_id", sa.String(length=32), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("ok_runs", sa.Integer(), nullable=False),
        sa.Column("failed_runs", sa.Integer(), nullable=False),
        sa.Column("mismatch_runs", sa.Integer(), nullable=False),
        sa.Column("new_count", sa.Integer(), nullable=False),
        sa.Column("duplicate_count", sa.Integer(), nullable=False),
        sa.Column("quarantined_count", sa.Integer(), nullable=False),
        sa.Column("new_from", sa.DateTime(timezone=False), nullable=True),
        sa.Column("new_to", sa.DateTime(timezone=False), nullable=True),
        sa.Column("first_started_at", instant, nullable=False),
        sa.Column("last_finished_at", instant, nullable=True),
        sa.Column("first_ok_finished_at", instant, nullable=True),
        sa.Column("last_ok_finished_at", instant, nullable=True),
        sa.Column("last_outcome", sa.String(length=16), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("serial", sa.String(length=64), nullable=True),
        sa.Column("records_on_device", sa.Integer(), nullable=True),
        sa.Column("record_capacity", sa.Integer(), nullable=True),
        sa.Column("drift_seconds", sa.Float(), nullable=True),
        sa.Column("last_run_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "terminal_id", name=op.f("pk_poll_run_days")),
    )
    op.create_index(
        "ix_poll_run_days_terminal_id_day", "poll_run_days", ["terminal_id", "day"], unique=False
    )
    op.create_index("ix_poll_runs_started_at", "poll_runs", ["started_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_poll_runs_started_at", table_name="poll_runs")
    op.drop_table("poll_run_days")
