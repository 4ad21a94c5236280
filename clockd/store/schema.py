"""The schema version this clockd expects, read from the migration files with the standard
library alone (every command checks it; `clockd devices` does without SQLAlchemy)."""

from __future__ import annotations

import re
from pathlib import Path

MIGRATIONS = Path(__file__).with_name("migrations")

_REVISION_LINE = re.compile(
    r"^(?P<name>revision|down_revision)\b[^=\n]*=\s*(?:\"(?P<value>[^\"]+)\"|None)", re.MULTILINE
)


def expected_revision() -> str | None:
    """The head of the migration chain read straight from the version files, without Alembic.

    Every command checks the schema version before it touches the database; importing Alembic
    for that took longer than the rest of a short command. None when the files do not form a
    single chain this simple reading can follow (the caller then asks Alembic).
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = {m["name"]: m["value"] for m in _REVISION_LINE.finditer(path.read_text("utf-8"))}
        if "revision" not in found or found["revision"] is None:
            return None
        revisions.add(found["revision"])
        if found.get("down_revision"):
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None
