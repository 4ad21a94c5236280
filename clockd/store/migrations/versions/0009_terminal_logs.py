"""What clockd last stored of each terminal's log: the re-poll fast path (store/logs.py).

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "terminal_logs",
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("record_size", sa.SmallInteger(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("users_digest", sa.LargeBinary(length=32), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_terminal_logs")),
    )


def downgrade() -> None:
    op.drop_table("terminal_logs")
