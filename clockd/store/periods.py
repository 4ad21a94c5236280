"""What the store holds about a reporting period: punches, leave and the terminals' poll history.

Reports are written again when late data arrives, and each edition must be reproducible, so every
query can answer "as it stood at" an earlier edition's time: punches carry the edition era they
arrived in, leave keeps its created/revoked times, and poll history is cut at a given instant
(docs/editions.md tells how editions, eras and cuts fit together).

A district month is millions of punches, so punches come out of one query probing each
terminal's time range of the punches' key, in chunks, straight into numpy arrays and
categoricals (no per-row objects).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    CTE,
    JSON,
    BigInteger,
    ColumnElement,
    Connection,
    CursorResult,
    ScalarSelect,
    String,
    and_,
    case,
    cast,
    column,
    extract,
    func,
    insert,
    literal,
    select,
)

from clockd.domain import Leave, LeaveKind, TerminalSite
from clockd.store import chains
from clockd.store.facts import TerminalFacts
from clockd.store.models import (
    LeaveRow,
    Outcome,
    PollRun,
    PunchRow,
    Quarantine,
    ReportFigure,
    ReportRun,
)
from clockd.store.punches import each_terminal
from clockd.store.retention import fill_from_folded, folded_problems

if TYPE_CHECKING:
    import pandas as pd

# numpy and pandas are imported where frames are built: `clockd devices` and the alerts read
# terminal facts only, and importing pandas took longer than their queries.

RELEASE = "release"
NEVER = 3  # release era of a punch whose quarantine was never released
MAX_CUTS = 2  # eras fit in two bits each (see load_punches)
_CHUNK = 500_000


# --- punches -----------------------------------------------------------------------------------


def load_punches(
    connection: Connection,
    start: dt.date,
    end: dt.date,
    terminals: Sequence[TerminalSite],
    cuts: Sequence[dt.datetime] = (),
) -> pd.DataFrame:
    """Punches dated `start`..`end` (inclusive), in the rules engine's punch-frame shape.

    Columns: serial, user_id, terminal (configured id, else the serial), village (missing when
    the serial is not configured: such punches are never counted), all categorical; timestamp
    (naive local, datetime64[s]); verify (the verify type, for proxy-punch signals); quarantined
    (now: a quarantine entry not released); and, for
    reconstructing earlier editions at up to two instants `cuts` (ascending): kept (a
    quarantine entry exists), arrival (how many cuts precede the punch's ingestion) and release
    (how many cuts precede the release of its quarantine, NEVER if not released). As of cut i
    a punch was stored iff arrival <= i, and quarantined iff kept and release > i.
    """
    if len(cuts) > MAX_CUTS:
        raise ValueError(f"at most {MAX_CUTS} cuts")
    punches, quarantine = PunchRow.__table__, Quarantine.__table__
    kept = case((quarantine.c.id.is_not(None), 1), else_=0)
    release = case(
        (quarantine.c.decision == RELEASE, _era(quarantine.c.decided_at, cuts)), else_=NEVER
    )
    # The three small numbers travel packed in one column, kept + 2*arrival + 8*release (two
    # bits each, hence at most two cuts): fewer Python objects per row. See docs/editions.md.
    flags = kept + 2 * _era(punches.c.ingested_at, cuts) + 8 * release
    query = (
        select(
            punches.c.serial,
            punches.c.user_id,
            _epoch_seconds(connection, punches.c.punched_at),
            flags,
            punches.c.verify,
        )
        .select_from(punches.outerjoin(quarantine, quarantine.c.punch_id == punches.c.id))
        .where(
            each_terminal(connection),
            punches.c.punched_at >= dt.datetime.combine(start, dt.time()),
            punches.c.punched_at < dt.datetime.combine(end + dt.timedelta(days=1), dt.time()),
        )
    )
    batches: Iterable[Sequence[Any]]
    if connection.dialect.name == "sqlite":
        batches = _driver_chunks(connection.execute(query))
    else:
        # Options on the statement, not the connection: Connection.execution_options changes
        # the connection itself, and a caller's later INSERT must not run server-side.
        options = query.execution_options(stream_results=True, yield_per=_CHUNK)
        batches = connection.execute(options).partitions()
    chunks = [_chunk_frame(list(zip(*rows, strict=True))) for rows in batches]
    return _attribute(_concat(chunks), terminals)


def _driver_chunks(result: CursorResult[Any]) -> Iterator[Sequence[Any]]:
    """SQLite's rows as the driver returns them, _CHUNK at a time: every column is a plain
    string or integer, and SQLAlchemy's row objects cost more than the query itself. The
    driver steps through the result as it is fetched (no server-side cursor to ask for),
    and an unbuffered result has read no row before this (a streamed one would have)."""
    cursor = result.cursor
    try:
        while rows := cursor.fetchmany(_CHUNK):
            yield rows
    finally:
        result.close()


def _epoch_seconds(
    connection: Connection, column: ColumnElement[dt.datetime]
) -> ColumnElement[int]:
    """Naive wall-clock time as seconds since 1970-01-01 00:00 of the same clock (no zone)."""
    if connection.dialect.name == "sqlite":
        if connection.dialect.dbapi.sqlite_version_info >= (3, 38):  # type: ignore[union-attr]
            return cast(func.unixepoch(column), BigInteger)  # an integer, not text to convert
        return cast(func.strftime("%s", column), BigInteger)
    return cast(func.floor(extract("epoch", column)), BigInteger)


def _era(column: ColumnElement[dt.datetime], cuts: Sequence[dt.datetime]) -> ColumnElement[int]:
    """How many of `cuts` precede the column's instant (0 without cuts or for NULL)."""
    era: ColumnElement[int] = cast(0, BigInteger)
    for cut in cuts:
        era = era + case((column > cut, 1), else_=0)
    return era


def _chunk_frame(columns: list[tuple[object, ...]]) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    serials, user_ids, seconds, flags, verify = columns if columns else ((), (), (), (), ())
    packed = np.array(flags, dtype=np.int8)
    return pd.DataFrame(
        {
            "serial": pd.Categorical(serials),
            "user_id": pd.Categorical(user_ids),
            "timestamp": np.array(seconds, dtype=np.int64).astype("datetime64[s]"),
            "kept": (packed & 1).astype(bool),
            "arrival": (packed >> 1) & 3,
            "release": packed >> 3,
            "verify": np.array(verify, dtype=np.int16),
        }
    )


def _concat(chunks: list[pd.DataFrame]) -> pd.DataFrame:
    import pandas as pd
    from pandas.api.types import union_categoricals

    if not chunks:
        return _chunk_frame([])
    if len(chunks) == 1:
        return chunks[0]
    frame = pd.concat(
        [chunk.drop(columns=["serial", "user_id"]) for chunk in chunks], ignore_index=True
    )
    for name in ("serial", "user_id"):
        frame[name] = union_categoricals([chunk[name] for chunk in chunks])
    return frame


def _attribute(frame: pd.DataFrame, terminals: Sequence[TerminalSite]) -> pd.DataFrame:
    """Village and terminal id by serial through devices.yaml; quarantine as it stands now."""
    import numpy as np
    import pandas as pd

    by_serial = {terminal.serial: terminal for terminal in terminals}
    serials = frame["serial"].cat.categories
    villages = [by_serial[s].village if s in by_serial else None for s in serials]
    ids = [by_serial[s].id if s in by_serial else s for s in serials]
    codes = frame["serial"].cat.codes.to_numpy()
    frame["terminal"] = pd.Categorical.from_codes(codes, categories=pd.Index(_unique(ids)))
    village_codes = pd.Index(_unique(v for v in villages if v is not None))
    mapped = np.array(
        [village_codes.get_loc(v) if v is not None else -1 for v in villages], dtype=np.int64
    )
    frame["village"] = pd.Categorical.from_codes(
        mapped[codes] if len(codes) else codes, categories=village_codes
    )
    frame["quarantined"] = frame["kept"].to_numpy() & (frame["release"].to_numpy() == NEVER)
    return frame


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def punches_as_of(frame: pd.DataFrame, era: int) -> pd.DataFrame:
    """The punch frame as it stood at cut number `era` (see `load_punches`)."""
    stored = frame[frame["arrival"].to_numpy() <= era].copy()
    stored["quarantined"] = stored["kept"].to_numpy() & (stored["release"].to_numpy() > era)
    return stored


# --- leave -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaveRecord:
    """A leave entry with the times that decide whether it was in force at an instant."""

    leave_id: int
    leave: Leave
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    def in_force(self, at: dt.datetime | None = None) -> bool:
        """In force now (`at` None), or at the instant `at`."""
        if at is None:
            return self.revoked_at is None
        return self.created_at <= at and (self.revoked_at is None or self.revoked_at > at)


@dataclass(frozen=True)
class KeptRecord:
    """A quarantined record that has no punch row: bytes a terminal or an export sent that did
    not decode as a punch (e.g. a user ID that is not printable ASCII)."""

    serial: str
    raw: bytes
    reason: str
    detected_at: dt.datetime


def kept_records(connection: Connection) -> list[KeptRecord]:
    """Every quarantined record without a punch row, in detection order. They are few (a
    terminal's garbage, once each), so they are read whole; where each belongs is in its
    bytes, which the reports read (zk.wire.read_kept_record)."""
    rows = connection.execute(
        select(Quarantine.serial, Quarantine.raw_record, Quarantine.reason, Quarantine.detected_at)
        .where(Quarantine.punch_id.is_(None), Quarantine.raw_record.is_not(None))
        .order_by(Quarantine.id)
    )
    return [
        KeptRecord(serial, bytes(raw), reason, detected_at)
        for serial, raw, reason, detected_at in rows
        if raw is not None
    ]


def load_leave(connection: Connection, start: dt.date, end: dt.date) -> list[LeaveRecord]:
    """Every leave entry touching `start`..`end`, revoked ones included, by id."""
    rows = connection.execute(
        select(LeaveRow)
        .where(LeaveRow.start_date <= end, LeaveRow.end_date >= start)
        .order_by(LeaveRow.id)
    )
    return [
        LeaveRecord(
            leave_id=row.id,
            leave=Leave(row.user_id, row.start_date, row.end_date, LeaveKind(row.kind), row.note),
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )
        for row in rows
    ]


# --- the terminals' poll history --------------------------------------------------------------


def _listed(
    connection: Connection, items: Sequence[str] | Sequence[int], name: str, kind: Any
) -> CTE:
    """`items` as a one-column table (column `name`, of type `kind`) bound as ONE JSON
    parameter: a VALUES or IN list of a district's 3,400 ids took SQLAlchemy longer to compile
    and render than the queries took to run."""
    listed = json.dumps(list(items))
    if connection.dialect.name == "postgresql":
        rows = func.json_array_elements_text(cast(literal(listed, String), JSON))
        value: ColumnElement[Any] = cast(rows.table_valued(column("value", String)).c.value, kind)
    else:
        value = func.json_each(listed).table_valued(column("value", kind)).c.value
    return select(value.label(name)).cte(f"listed_{name}")


def terminal_facts(
    connection: Connection,
    terminals: Sequence[TerminalSite],
    period_end: dt.datetime,
    as_of: dt.datetime,
) -> list[TerminalFacts]:
    """Per configured terminal, in config order: its poll history up to `as_of`.

    `period_end` is the instant the period ended; `collected_after` is the first successful
    collection (poll or USB) started at or after it, which is what makes the period's data
    from that terminal complete.
    """
    runs = PollRun.__table__
    finished = and_(runs.c.finished_at.is_not(None), runs.c.finished_at <= as_of)
    ids = [terminal.id for terminal in terminals]
    wanted = _listed(connection, ids, "terminal_id", String)
    in_config = runs.c.terminal_id.in_(select(wanted.c.terminal_id))

    # Each terminal's newest runs are found by walking its (terminal_id, finished_at) index
    # backwards, all three in one statement: a year of a district's runs is millions of rows,
    # and `clockd devices` must not read them all (docs/performance.md).

    def pick(*conditions: ColumnElement[bool]) -> ScalarSelect[int]:
        return (
            select(runs.c.id)
            .where(runs.c.terminal_id == wanted.c.terminal_id, finished, *conditions)
            .order_by(runs.c.finished_at.desc(), runs.c.id.desc())
            .limit(1)
            .correlate(wanted)
            .scalar_subquery()
        )

    picked = (
        connection.execute(
            select(
                pick(),
                pick(runs.c.outcome == Outcome.OK),
                pick(runs.c.records_on_device.is_not(None)),
            ).select_from(wanted)
        ).all()
        if ids
        else []
    )
    chosen = sorted({run_id for row in picked for run_id in row if run_id is not None})
    chosen_ids = _listed(connection, chosen, "id", BigInteger)
    by_id = (
        {
            row.id: dict(row._mapping)
            for row in connection.execute(select(runs).where(runs.c.id.in_(select(chosen_ids))))
        }
        if chosen
        else {}
    )

    def newest(column_index: int) -> dict[str, dict[str, object]]:
        found = (by_id.get(row[column_index]) for row in picked)
        return {str(run["terminal_id"]): run for run in found if run is not None}

    latest = newest(0)
    latest_ok = newest(1)
    latest_device = newest(2)
    first_after = dict(
        connection.execute(
            select(runs.c.terminal_id, func.min(runs.c.finished_at))
            .where(
                finished,
                in_config,
                runs.c.outcome == Outcome.OK,
                runs.c.started_at >= period_end,
                # Implied by the line above; it bounds the (terminal_id, finished_at) index range.
                runs.c.finished_at >= period_end,
            )
            .group_by(runs.c.terminal_id)
        ).all()
    )
    # Runs older than retention.poll_runs_days live on as one row per terminal and day.
    fill_from_folded(
        connection, ids, period_end, as_of, latest, latest_ok, latest_device, first_after
    )
    facts = []
    for terminal in terminals:
        attempt = latest.get(terminal.id, {})
        success = latest_ok.get(terminal.id, {})
        device = latest_device.get(terminal.id, {})
        facts.append(
            TerminalFacts(
                terminal=terminal,
                last_success=_instant(success.get("finished_at")),
                collected_after=_instant(first_after.get(terminal.id)),
                reported_serial=_text(device.get("serial")),
                records_on_device=_number(device.get("records_on_device")),
                record_capacity=_number(device.get("record_capacity")),
                drift_seconds=_real(device.get("drift_seconds")),
                last_outcome=_text(attempt.get("outcome")),
                last_error=_text(attempt.get("error")),
            )
        )
    return facts


@dataclass(frozen=True)
class PollProblem:
    """A failed poll, or a device reporting a serial other than the configured one."""

    terminal_id: str
    outcome: str  # failed | mismatch
    started_at: dt.datetime
    error: str


def poll_problems(
    connection: Connection,
    terminals: Sequence[TerminalSite],
    start: dt.datetime,
    end: dt.datetime,
    as_of: dt.datetime,
) -> list[PollProblem]:
    """Failed and serial-mismatch runs of configured terminals started in [start, end)."""
    runs = PollRun.__table__
    rows = connection.execute(
        select(runs.c.terminal_id, runs.c.outcome, runs.c.started_at, runs.c.error)
        .where(
            runs.c.terminal_id.in_([terminal.id for terminal in terminals]),
            runs.c.outcome.in_((Outcome.FAILED, Outcome.MISMATCH)),
            runs.c.started_at >= start,
            runs.c.started_at < end,
            runs.c.finished_at.is_not(None),
            runs.c.finished_at <= as_of,
        )
        .order_by(runs.c.started_at, runs.c.id)
    )
    problems = [
        PollProblem(row.terminal_id, row.outcome, row.started_at, row.error or "") for row in rows
    ]
    folded = folded_problems(connection, [terminal.id for terminal in terminals], start, end, as_of)
    problems += [PollProblem(f.terminal_id, f.outcome, f.started_at, f.error) for f in folded]
    return sorted(problems, key=lambda problem: problem.started_at) if folded else problems


def _instant(value: object) -> dt.datetime | None:
    if value is None:
        return None
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _number(value: object) -> int | None:
    return None if value is None else int(str(value))


def _real(value: object) -> float | None:
    return None if value is None else float(str(value))


# --- report runs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Edition:
    """A report_runs row: one revision of one period's report."""

    revision: int
    status: str
    generated_at: dt.datetime
    path: str
    fingerprint: str
    deduction_total: int


def report_editions(connection: Connection, kind: str, period: str) -> list[Edition]:
    """Every recorded revision of a report, oldest first."""
    rows = connection.execute(
        select(ReportRun)
        .where(ReportRun.kind == kind, ReportRun.period == period)
        .order_by(ReportRun.revision)
    )
    return [
        Edition(
            revision=row.revision,
            status=row.status,
            generated_at=row.generated_at,
            path=row.path,
            fingerprint=row.input_fingerprint,
            deduction_total=row.deduction_total,
        )
        for row in rows
    ]


# The per-cadre figures an edition publishes, as report_figures stores them (docs/editions.md).
FIGURE_COLUMNS = (
    "user_id",
    "name",
    "category",
    "required_days",
    "valid_days",
    "failed_weeks",
    "deduction",
)


def record_edition(
    connection: Connection,
    kind: str,
    period: str,
    edition: Edition,
    worker: str,
    figures: Sequence[Mapping[str, object]],
) -> None:
    """Insert an edition's report_runs row and the per-cadre figures it publishes (dicts with
    FIGURE_COLUMNS). Raises IntegrityError when that revision is already claimed."""
    run_id = connection.execute(
        insert(ReportRun)
        .values(
            kind=kind,
            period=period,
            revision=edition.revision,
            status=edition.status,
            generated_at=edition.generated_at,
            path=edition.path,
            input_fingerprint=edition.fingerprint,
            deduction_total=edition.deduction_total,
            worker=worker,
            figures_recorded=True,
        )
        .returning(ReportRun.id)
    ).scalar_one()
    if figures:
        connection.execute(insert(ReportFigure), [{"run_id": run_id, **row} for row in figures])
    chains.record(connection, "report_runs", [run_id], "claim", worker)


def edition_figures(
    connection: Connection, kind: str, period: str, revision: int
) -> pd.DataFrame | None:
    """The per-cadre figures (FIGURE_COLUMNS) an edition published, as published; None when
    the edition is unknown or was written before figures were recorded."""
    import pandas as pd

    run = connection.execute(
        select(ReportRun.id, ReportRun.figures_recorded).where(
            ReportRun.kind == kind, ReportRun.period == period, ReportRun.revision == revision
        )
    ).first()
    if run is None or not run.figures_recorded:
        return None
    rows = connection.execute(
        select(*(getattr(ReportFigure, name) for name in FIGURE_COLUMNS)).where(
            ReportFigure.run_id == run.id
        )
    ).all()
    return pd.DataFrame([tuple(row) for row in rows], columns=list(FIGURE_COLUMNS))
