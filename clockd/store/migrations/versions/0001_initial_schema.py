"""Initial schema: terminals, cadres, punches, quarantine, poll runs, leave, report runs.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# Integer on SQLite so ids are rowids; BIGINT elsewhere.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cadres",
        sa.Column("user_id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("village", sa.String(length=64), nullable=True),
        sa.Column("department", sa.String(length=64), nullable=True),
        sa.Column("active_from", sa.Date(), nullable=True),
        sa.Column("active_to", sa.Date(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_cadres")),
    )
    op.create_table(
        "leave",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=24), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leave")),
    )
    op.create_index(op.f("ix_leave_user_id"), "leave", ["user_id"], unique=False)
    op.create_table(
        "poll_runs",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("terminal_id", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("records_on_device", sa.Integer(), nullable=True),
        sa.Column("record_capacity", sa.Integer(), nullable=True),
        sa.Column("users_on_device", sa.Integer(), nullable=True),
        sa.Column("new_count", sa.Integer(), nullable=False),
        sa.Column("duplicate_count", sa.Integer(), nullable=False),
        sa.Column("quarantined_count", sa.Integer(), nullable=False),
        sa.Column("drift_seconds", sa.Float(), nullable=True),
        sa.Column("clock_synced", sa.Boolean(), nullable=False),
        sa.Column("cleared", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_poll_runs")),
    )
    op.create_index(
        op.f("ix_poll_runs_terminal_id_finished_at"),
        "poll_runs",
        ["terminal_id", "finished_at"],
        unique=False,
    )
    op.create_table(
        "report_runs",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("generated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("input_fingerprint", sa.String(length=128), nullable=False),
        sa.Column("deduction_total", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_runs")),
        sa.UniqueConstraint(
            "kind", "period", "revision", name=op.f("uq_report_runs_kind_period_revision")
        ),
    )
    op.create_table(
        "terminals",
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("terminal_id", sa.String(length=32), nullable=False),
        sa.Column("village", sa.String(length=64), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("firmware", sa.String(length=64), nullable=True),
        sa.Column("platform", sa.String(length=64), nullable=True),
        sa.Column("device_name", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_terminals")),
    )
    op.create_table(
        "leave_audit",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("leave_id", BIG_ID, nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["leave_id"], ["leave.id"], name=op.f("fk_leave_audit_leave_id_leave")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leave_audit")),
    )
    op.create_index(op.f("ix_leave_audit_leave_id"), "leave_audit", ["leave_id"], unique=False)
    op.create_table(
        "punches",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=24), nullable=False),
        sa.Column("punched_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("punch_state", sa.SmallInteger(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("poll_run_id", BIG_ID, nullable=True),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["poll_run_id"], ["poll_runs.id"], name=op.f("fk_punches_poll_run_id_poll_runs")
        ),
        sa.ForeignKeyConstraint(
            ["serial"], ["terminals.serial"], name=op.f("fk_punches_serial_terminals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_punches")),
        sa.UniqueConstraint(
            "punched_at", "serial", "user_id", name=op.f("uq_punches_punched_at_serial_user_id")
        ),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("punch_id", BIG_ID, nullable=True),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("raw_record", sa.LargeBinary(), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("poll_run_id", BIG_ID, nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["poll_run_id"], ["poll_runs.id"], name=op.f("fk_quarantine_poll_run_id_poll_runs")
        ),
        sa.ForeignKeyConstraint(
            ["punch_id"], ["punches.id"], name=op.f("fk_quarantine_punch_id_punches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
        sa.UniqueConstraint("punch_id", name=op.f("uq_quarantine_punch_id")),
    )
    op.create_index(op.f("ix_quarantine_serial"), "quarantine", ["serial"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_quarantine_serial"), table_name="quarantine")
    op.drop_table("quarantine")
    op.drop_table("punches")
    op.drop_index(op.f("ix_leave_audit_leave_id"), table_name="leave_audit")
    op.drop_table("leave_audit")
    op.drop_table("terminals")
    op.drop_table("report_runs")
    op.drop_index(op.f("ix_poll_runs_terminal_id_finished_at"), table_name="poll_runs")
    op.drop_table("poll_runs")
    op.drop_index(op.f("ix_leave_user_id"), table_name="leave")
    op.drop_table("leave")
    op.drop_table("cadres")
