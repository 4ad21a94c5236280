"""An index of the poll runs retention may delete, by start (store/retention.py).

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FOLDABLE = sa.text("new_count = 0 AND quarantined_count = 0")


def upgrade() -> None:
    op.create_index(
        "ix_poll_runs_foldable",
        "poll_runs",
        ["started_at"],
        sqlite_where=_FOLDABLE,
        postgresql_where=_FOLDABLE,
    )


def downgrade() -> None:
    op.drop_index("ix_poll_runs_foldable", table_name="poll_runs")
