"""How far written reports have been brought up to date with late collections
(store/editions.py, scheduler.py).

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "report_refresh",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("through", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_report_refresh")),
    )


def downgrade() -> None:
    op.drop_table("report_refresh")
