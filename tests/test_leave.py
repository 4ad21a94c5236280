"""Leave: add, list, import (all or nothing) and revoke, every change in the audit trail."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import Engine, select

from clockd.domain import LeaveKind
from clockd.errors import ConfigError, UserError
from clockd.leave import add_leave, import_leave, list_leave, parse_day, revoke_leave
from clockd.store.models import LeaveAudit, LeaveRow
from tests.report_site import Site, make_site

D = dt.date


@pytest.fixture
def site(tmp_path: Path, engine: Engine) -> Site:
    return make_site(tmp_path, engine.url.render_as_string(hide_password=False))


def audit(site: Site) -> list[tuple[int, str, str]]:
    with site.engine.connect() as connection:
        rows = connection.execute(
            select(LeaveAudit.leave_id, LeaveAudit.action, LeaveAudit.actor).order_by(LeaveAudit.id)
        )
        return [(row.leave_id, row.action, row.actor) for row in rows]


def test_add_list_and_revoke_with_the_audit_trail(site: Site) -> None:
    entry = add_leave(
        site.engine, site.cadres, "1001", D(2026, 11, 16), D(2026, 11, 18), note="病假", actor="hr"
    )
    assert (entry.user_id, entry.days, entry.kind.label, entry.created_by) == (
        "1001",
        3,
        "请假",
        "hr",
    )
    trip = add_leave(
        site.engine,
        site.cadres,
        "1002",
        D(2026, 11, 20),
        D(2026, 11, 20),
        kind=LeaveKind.parse("出差"),
        actor="hr",
    )
    assert [e.id for e in list_leave(site.engine)] == [entry.id, trip.id]
    assert [e.id for e in list_leave(site.engine, user_id="1002")] == [trip.id]
    assert [e.id for e in list_leave(site.engine, start=D(2026, 11, 19))] == [trip.id]
    assert [e.id for e in list_leave(site.engine, end=D(2026, 11, 17))] == [entry.id]

    revoked = revoke_leave(site.engine, entry.id, "主任")
    assert revoked.revoked_by == "主任" and revoked.revoked_at is not None
    assert audit(site) == [
        (entry.id, "add", "hr"),
        (trip.id, "add", "hr"),
        (entry.id, "revoke", "主任"),
    ]
    with pytest.raises(UserError, match="already revoked by 主任"):
        revoke_leave(site.engine, entry.id, "hr")
    with pytest.raises(UserError, match="no leave entry #999"):
        revoke_leave(site.engine, 999, "hr")
    with site.engine.connect() as connection:  # revoked, never deleted
        assert (
            connection.scalar(select(LeaveRow.revoked_by).where(LeaveRow.id == entry.id)) == "主任"
        )


def test_mistakes_are_clear_errors(site: Site) -> None:
    with pytest.raises(UserError, match="user 9999 is not in the roster"):
        add_leave(site.engine, site.cadres, "9999", D(2026, 1, 1), D(2026, 1, 2), actor="hr")
    with pytest.raises(UserError, match="from 2026-01-03 is after to 2026-01-02"):
        add_leave(site.engine, site.cadres, "1001", D(2026, 1, 3), D(2026, 1, 2), actor="hr")
    add_leave(site.engine, site.cadres, "1001", D(2026, 1, 1), D(2026, 1, 2), actor="hr")
    with pytest.raises(UserError, match="already recorded as #1"):
        add_leave(site.engine, site.cadres, "1001", D(2026, 1, 1), D(2026, 1, 2), actor="hr")
    with pytest.raises(UserError, match="is not a date"):
        parse_day("2026-02-30", "FROM")
    assert parse_day("2026年11月18日", "FROM") == D(2026, 11, 18)
    with pytest.raises(ValueError, match="unknown leave kind"):
        LeaveKind.parse("vacation")


def test_import_csv_with_chinese_headers(site: Site, tmp_path: Path) -> None:
    sheet = tmp_path / "leave.csv"
    sheet.write_text(
        "工号,开始日期,结束日期,类型,备注\n"
        "1001,2026-11-16,2026-11-17,请假,家中有事\n"
        "1002,2026/11/18,2026/11/20,出差,市里培训\n"
        "1002,2026/11/18,2026/11/20,出差,重复的一行\n",
        encoding="gbk",
    )
    result = import_leave(site.engine, site.cadres, sheet, "hr")
    assert [(e.user_id, e.start, e.end, e.kind) for e in result.added] == [
        ("1001", D(2026, 11, 16), D(2026, 11, 17), LeaveKind.LEAVE),
        ("1002", D(2026, 11, 18), D(2026, 11, 20), LeaveKind.BUSINESS_TRIP),
    ]
    assert result.already_recorded == 1
    assert [action for _, action, _ in audit(site)] == ["import", "import"]
    again = import_leave(site.engine, site.cadres, sheet, "hr")
    assert again.added == [] and again.already_recorded == 3


def test_import_is_all_or_nothing_with_row_and_column_errors(site: Site, tmp_path: Path) -> None:
    sheet = tmp_path / "leave.csv"
    sheet.write_text(
        "user_id,from,to,kind,note\n"
        "1001,2026-11-16,2026-11-17,leave,\n"
        "1002,2026-11-20,2026-11-18,leave,\n"
        "1003,2026-11-31,2026-12-01,leave,\n"
        "1004,2026-11-16,2026-11-17,holiday,\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as raised:
        import_leave(site.engine, site.cadres, sheet, "hr")
    problems = "\n".join(raised.value.problems)
    assert "row 3, column (row): from 2026-11-20 is after to 2026-11-18" in problems
    assert "row 4, column from:" in problems  # named as the documentation names it
    assert "row 5, column kind: unknown leave kind 'holiday'" in problems
    assert list_leave(site.engine) == []

    unknown = tmp_path / "unknown.csv"
    unknown.write_text("user_id,from,to\n1001,2026-11-16,2026-11-17\n8888,2026-11-16,2026-11-17\n")
    with pytest.raises(ConfigError, match="row 3, column user_id: 8888 is not in the roster"):
        import_leave(site.engine, site.cadres, unknown, "hr")
    assert list_leave(site.engine) == []

    misspelt = tmp_path / "misspelt.csv"
    misspelt.write_text("user_id,from,till\n1001,2026-11-16,2026-11-17\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        import_leave(site.engine, site.cadres, misspelt, "hr")
    assert raised.value.problems == [
        "column C: unknown column 'till' (expected from, kind, note, to, user_id)"
    ]


def test_import_xlsx_and_yaml(site: Site, tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["工号", "开始日期", "结束日期", "类型"])
    sheet.append([1001, dt.datetime(2026, 11, 16), dt.datetime(2026, 11, 16), "其他"])
    workbook.save(tmp_path / "leave.xlsx")
    from_xlsx = import_leave(site.engine, site.cadres, tmp_path / "leave.xlsx", "hr")
    assert [(e.user_id, e.kind) for e in from_xlsx.added] == [("1001", LeaveKind.OTHER)]

    (tmp_path / "leave.yaml").write_text(
        "leave:\n  - {user_id: '1002', from: 2026-11-16, to: 2026-11-17, kind: business_trip}\n",
        encoding="utf-8",
    )
    from_yaml = import_leave(site.engine, site.cadres, tmp_path / "leave.yaml", "hr")
    assert [(e.user_id, e.days) for e in from_yaml.added] == [("1002", 2)]
