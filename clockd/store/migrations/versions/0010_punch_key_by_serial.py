"""The punches' unique key leads with the terminal: (serial, punched_at, user_id).

Led by the time, each terminal's rows were scattered across the whole index, so every
terminal's insert transaction rewrote index pages all over it; led by the serial, a terminal's
rows sit together. Period queries probe each serial's time range of the same index
(store/periods.py). SQLite rebuilds the table (batch mode); row ids, and so the hash chains,
are kept.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("punches") as batch:
        batch.drop_constraint("uq_punches_punched_at_serial_user_id", type_="unique")
        batch.create_unique_constraint(
            "uq_punches_serial_punched_at_user_id", ["serial", "punched_at", "user_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("punches") as batch:
        batch.drop_constraint("uq_punches_serial_punched_at_user_id", type_="unique")
        batch.create_unique_constraint(
            "uq_punches_punched_at_serial_user_id", ["punched_at", "serial", "user_id"]
        )
