"""Punch fields named for what they are: `verify` (was `status`), `state` (was
`punch_state`), and the terminal's `workcode`, which was read and dropped before.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("punches") as batch:
        batch.alter_column("status", new_column_name="verify")
        batch.alter_column("punch_state", new_column_name="state")
        batch.add_column(sa.Column("workcode", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("punches") as batch:
        batch.drop_column("workcode")
        batch.alter_column("state", new_column_name="punch_state")
        batch.alter_column("verify", new_column_name="status")
