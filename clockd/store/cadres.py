"""Keep the cadres table in step with the roster file, which stays the source of truth."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from clockd.domain import Cadre
from clockd.store.db import upsert_insert
from clockd.store.models import CadreRow, utcnow


def sync_cadres(connection: Connection, cadres: Sequence[Cadre]) -> None:
    """Upsert every roster entry; cadres who left the file keep their row for old reports."""
    if not cadres:
        return
    now = utcnow()
    rows = [
        {
            "user_id": c.user_id,
            "name": c.name,
            "role": c.role.value,
            "village": c.village,
            "department": c.department,
            "active_from": c.active_from,
            "active_to": c.active_to,
            "updated_at": now,
        }
        for c in cadres
    ]
    statement = upsert_insert(connection, CadreRow)
    statement = statement.on_conflict_do_update(
        index_elements=["user_id"],
        set_={column: statement.excluded[column] for column in rows[0] if column != "user_id"},
    )
    connection.execute(statement, rows)
