"""Workers and terminal leases, so that several `clockd run` processes can share a database;
and the time range of the punches each poll run added.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("poll_runs") as batch:
        batch.add_column(sa.Column("new_from", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("new_to", sa.DateTime(), nullable=True))
    op.create_index(op.f("ix_poll_runs_finished_at"), "poll_runs", ["finished_at"], unique=False)
    op.create_table(
        "leases",
        sa.Column("terminal_id", sa.String(length=32), nullable=False),
        sa.Column("worker_id", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("terminal_id", name=op.f("pk_leases")),
    )
    op.create_table(
        "workers",
        sa.Column("worker_id", sa.String(length=128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_workers")),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_poll_runs_finished_at"), table_name="poll_runs")
    with op.batch_alter_table("poll_runs") as batch:
        batch.drop_column("new_to")
        batch.drop_column("new_from")
    op.drop_table("workers")
    op.drop_table("leases")
