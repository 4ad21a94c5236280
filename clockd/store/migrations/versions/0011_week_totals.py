"""The monthly statistics' per-week totals, kept between reports (store/week_totals.py).

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "week_totals",
        sa.Column("week", sa.String(length=8), nullable=False),
        sa.Column("inputs", sa.String(length=64), nullable=False),
        sa.Column("punch_count", sa.BigInteger(), nullable=False),
        sa.Column("punch_sum", sa.BigInteger(), nullable=False),
        sa.Column("punch_xor", sa.BigInteger(), nullable=False),
        sa.Column("person_weeks", sa.Integer(), nullable=False),
        sa.Column("valid_days", sa.Integer(), nullable=False),
        sa.Column("deduction", sa.BigInteger(), nullable=False),
        sa.Column("failing", sa.Text(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("week", name=op.f("pk_week_totals")),
    )


def downgrade() -> None:
    op.drop_table("week_totals")
