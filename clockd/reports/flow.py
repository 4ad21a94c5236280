"""The one way an edition of a report is written, whichever the report (weekly or monthly).

Load the period and decide the revision (period.gather), compute the figures, find what the
edition being corrected published (report_figures; reconstructed from the punches and leave
as they stood then only for an edition written before figures were recorded), claim and write
the file (revisions.publish), and say what was done. docs/editions.md tells the whole story.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import pandas as pd
from sqlalchemy import Engine

from clockd.config import Settings
from clockd.domain import Cadre, Leave
from clockd.reports.period import Basis, Period, gather
from clockd.reports.revisions import Output, ReportOutcome, publish, published_figures
from clockd.reports.xlsx import Book, discard_workbook, stored_save

F = TypeVar("F")


@dataclass(frozen=True)
class ReportKindSpec(Generic[F]):
    """What distinguishes one report from another; `F` is its figures.

    assess: the figures from one version of the period's punches, leave and work results
        ((user ID, day) pairs that count);
    published: the per-cadre figures it publishes (revisions.FIGURE_COLUMNS);
    average: valid village days per assessed cadre-week, for the command line;
    build: the workbook, given the figures and those of the edition it corrects (or None);
    documents: further files of the edition beside the workbook (the monthly notice);
    beside: where those files are, to tell whether the edition is in place already.
    """

    assess: Callable[[Basis, pd.DataFrame, Sequence[Leave], Sequence[tuple[str, dt.date]]], F]
    published: Callable[[F], pd.DataFrame]
    average: Callable[[F], float | None]
    build: Callable[[Basis, F, pd.DataFrame | None], Book]
    documents: Callable[[Basis, F, pd.DataFrame | None], Sequence[Output]] = lambda *_: ()
    beside: Sequence[Path] = ()


def write_edition(
    engine: Engine,
    settings: Settings,
    cadres: Sequence[Cadre],
    period: Period,
    path: Path,
    spec: ReportKindSpec[F],
    now: dt.datetime,
) -> ReportOutcome:
    """Write (or rewrite, or revise) one period's report; see revisions.py for the rules."""
    basis = gather(engine, settings, cadres, period, now)
    data = basis.data
    figures = spec.assess(basis, data.punches, data.leave(), data.work_results())
    current = spec.published(figures)
    previous = None
    compared = basis.plan.compared
    if compared is not None:
        previous = published_figures(engine, period.kind, period.label, compared.revision)
        if previous is None:
            era = basis.plan.compared_era
            assert era is not None
            previous = spec.published(
                spec.assess(basis, data.punches_at(era), data.leave(era), data.work_results(era))
            )
    outcome = publish(
        engine,
        kind=period.kind,
        period=period.label,
        plan=basis.plan,
        path=path,
        fingerprint=basis.fingerprint,
        figures=current,
        beside=spec.beside,
        build=lambda: _outputs(spec, path, basis, figures, previous),
        zone=settings.zone,
    )
    return ReportOutcome(
        kind=period.kind,
        period=period.label,
        path=path,
        revision=basis.plan.revision,
        status=basis.plan.status,
        written=outcome.written,
        cadres=len(current),
        failed=int((current["failed_weeks"] > 0).sum()) if len(current) else 0,
        failed_weeks=int(current["failed_weeks"].sum()) if len(current) else 0,
        deduction_total=int(current["deduction"].sum()) if len(current) else 0,
        average_days=spec.average(figures),
        missing_villages=tuple(basis.completeness.missing_villages()),
        note=outcome.note,
    )


def _outputs(
    spec: ReportKindSpec[F],
    path: Path,
    basis: Basis,
    figures: F,
    previous: pd.DataFrame | None,
) -> list[Output]:
    """The edition's files, the workbook first. The documents are built before the streamed
    workbook, which must be saved once begun."""
    documents = spec.documents(basis, figures, previous)
    workbook = spec.build(basis, figures, previous).workbook
    return [Output(path, stored_save(workbook), lambda: discard_workbook(workbook)), *documents]
