"""Report editions as published: the status stored as an English value (final, provisional,
corrected; the reports show 正式/临时/更正), and each edition's per-cadre figures, which a
later revision's 更正说明 compares with (see docs/editions.md).

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LABELS = {"final": "正式", "provisional": "临时", "corrected": "更正"}


def _relabel(mapping: dict[str, str]) -> None:
    runs = sa.table("report_runs", sa.column("status", sa.String()))
    for old, new in mapping.items():
        op.execute(runs.update().where(runs.c.status == old).values(status=new))


def upgrade() -> None:
    with op.batch_alter_table("report_runs") as batch:
        batch.alter_column("status", existing_type=sa.String(length=8), type_=sa.String(length=16))
        batch.add_column(
            sa.Column("figures_recorded", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    _relabel({label: value for value, label in LABELS.items()})
    op.create_table(
        "report_figures",
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("user_id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("required_days", sa.Integer(), nullable=True),
        sa.Column("valid_days", sa.Integer(), nullable=False),
        sa.Column("failed_weeks", sa.Integer(), nullable=False),
        sa.Column("deduction", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["report_runs.id"],
            name=op.f("fk_report_figures_run_id_report_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "user_id", name=op.f("pk_report_figures")),
    )


def downgrade() -> None:
    op.drop_table("report_figures")
    _relabel(LABELS)
    with op.batch_alter_table("report_runs") as batch:
        batch.drop_column("figures_recorded")
        batch.alter_column("status", existing_type=sa.String(length=16), type_=sa.String(length=8))
