"""The integrity ledger: hash chains over every terminal's punches (chain_seq, chain_hash),
chain heads, and the audit ledger of leave, quarantine and report editions; chains are built
for the rows already stored (docs/integrity.md).

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from clockd.store import chains, db
from clockd.store.models import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("punches") as batch:
        batch.add_column(sa.Column("chain_seq", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("chain_hash", sa.LargeBinary(length=32), nullable=True))
    op.create_table(
        "chain_heads",
        sa.Column("chain", sa.String(length=100), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("chain", name=op.f("pk_chain_heads")),
    )
    op.create_table(
        "ledger",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("chain", sa.String(length=100), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("row_id", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("state", sa.Text(), nullable=True),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger")),
    )
    op.create_index(op.f("ix_ledger_chain_row_id"), "ledger", ["chain", "row_id"])
    connection = op.get_bind()
    chains.build_punch_chains(connection)
    actor = f"clockd migration 0006 {db.process_name()}"[:64]
    present = sa.inspect(connection)
    for name in chains.AUDITED:
        if not present.has_table(name):
            continue  # created by a later migration, empty then
        table = sa.Table(name, sa.MetaData(), autoload_with=connection)
        ids = list(connection.scalars(sa.select(table.c.id).order_by(table.c.id)))
        chains.record(connection, name, ids, "migrate", actor, source=table)


def downgrade() -> None:
    op.drop_index(op.f("ix_ledger_chain_row_id"), table_name="ledger")
    op.drop_table("ledger")
    op.drop_table("chain_heads")
    with op.batch_alter_table("punches") as batch:
        batch.drop_column("chain_hash")
        batch.drop_column("chain_seq")
