"""Proxy-punch signals on a crafted week: the pure function, and the weekly 异常 sheet."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from clockd.config import RuleSettings
from clockd.domain import Punch
from clockd.ingest.poll import Collection, store_collection
from clockd.proxy import SignalKind, proxy_signals
from clockd.reports.weekly import write_weekly_report
from clockd.rules import ANOMALY_COLUMNS, PunchRecord, punch_frame
from clockd.store import db
from clockd.store.models import Outcome, Source
from clockd.workcal import IsoWeek
from tests.report_site import AFTER_W47, make_site, open_workbook, table

# (terminal, village, user, time, verify type); W47 is 2026-11-16 (Mon) .. 2026-11-22.
WEEK = [
    ("t01", "东村", "1001", "2026-11-16 08:00:00", 0),  # password
    ("t02", "西村", "1002", "2026-11-16 09:00:00", 2),  # card
    ("t02", "西村", "1002", "2026-11-16 15:00:00", 15),  # face: fine
    ("t01", "东村", "1001", "2026-11-17 08:00:00", 1),  # burst of three within a minute
    ("t01", "东村", "1002", "2026-11-17 08:00:20", 1),
    ("t01", "东村", "1003", "2026-11-17 08:00:45", 1),
    ("t02", "西村", "1001", "2026-11-18 08:00:00", 1),  # two together: ordinary
    ("t02", "西村", "1002", "2026-11-18 08:00:30", 1),
    ("t01", "东村", "1001", "2026-11-19 09:00:00", 1),  # then 西村 10 minutes later
    ("t02", "西村", "1001", "2026-11-19 09:10:00", 1),
    ("t01", "东村", "1002", "2026-11-19 09:00:00", 1),  # then 西村 30 minutes later: fine
    ("t02", "西村", "1002", "2026-11-19 09:30:00", 1),
]


def frame() -> pd.DataFrame:
    punches = punch_frame(
        PunchRecord(user, dt.datetime.fromisoformat(when), terminal, village)
        for terminal, village, user, when, _ in WEEK
    )
    punches["verify"] = [verify for *_, verify in WEEK]
    quarantined = punch_frame(
        [PunchRecord("1003", dt.datetime(2026, 11, 20, 8), "t01", "东村", quarantined=True)]
    )
    quarantined["verify"] = [0]
    return pd.concat([punches, quarantined], ignore_index=True)


def test_each_signal_on_a_crafted_week() -> None:
    found = proxy_signals(frame(), RuleSettings())
    assert list(found.columns) == list(ANOMALY_COLUMNS)
    listed = [
        (kind, terminal, user, f"{stamp:%m-%d %H:%M:%S}")
        for kind, terminal, user, stamp in zip(
            found["kind"], found["terminal"], found["user_id"], found["timestamp"], strict=True
        )
    ]
    assert listed == [
        (SignalKind.WEAK_VERIFY, "t01", "1001", "11-16 08:00:00"),
        (SignalKind.WEAK_VERIFY, "t02", "1002", "11-16 09:00:00"),
        (SignalKind.BURST, "t01", "1001", "11-17 08:00:00"),
        (SignalKind.BURST, "t01", "1002", "11-17 08:00:20"),
        (SignalKind.BURST, "t01", "1003", "11-17 08:00:45"),
        (SignalKind.TRAVEL, "t02", "1001", "11-19 09:10:00"),
    ]
    texts = found["explanation"].tolist()
    assert texts[0].startswith("以密码方式打卡") and texts[1].startswith("以刷卡方式打卡")
    assert texts[2].startswith("3 名干部在 45 秒内于同一终端打卡：1001、1002、1003")
    assert texts[5].startswith("距其在东村的打卡（09:00:00）仅 10 分钟即在西村打卡")
    assert all(text.endswith("仅供核查，不自动扣款") for text in texts)


def test_the_thresholds_come_from_the_rules() -> None:
    strict = proxy_signals(frame(), RuleSettings(burst_seconds=30, min_travel_minutes=40))
    kinds = strict["kind"].tolist()
    assert kinds.count(SignalKind.BURST) == 0  # 45 s apart is no burst within 30 s
    assert kinds.count(SignalKind.TRAVEL) == 2  # now 30 minutes is too quick as well
    assert proxy_signals(frame().iloc[:0], RuleSettings()).empty


def test_the_weekly_anomaly_sheet_lists_the_signals(tmp_path: Path, sqlite_url: str) -> None:
    site = make_site(tmp_path, sqlite_url)
    for terminal_id in ("t01", "t02", "t03"):
        terminal = site.settings.terminal(terminal_id)
        punches = [
            Punch(terminal.serial, user, dt.datetime.fromisoformat(when), verify)
            for t, _, user, when, verify in WEEK
            if t == terminal_id
        ]
        with db.write_transaction(site.engine) as connection:
            store_collection(
                connection,
                Collection(terminal, terminal.serial, Source.POLL, punches, started_at=AFTER_W47),
                now_local=dt.datetime(2026, 12, 31),
                future_tolerance=dt.timedelta(minutes=10),
                outcome=Outcome.OK,
            )
    outcome = write_weekly_report(
        site.settings, site.cadres, site.engine, IsoWeek(2026, 47), now=AFTER_W47
    )
    rows = table(open_workbook(outcome.path)["异常"], "类型")
    signals = [(row["类型"], row["终端"], row["工号"]) for row in rows if "代打卡" in row["类型"]]
    assert signals == [
        ("疑似代打卡(非指纹)", "t01", "1001"),
        ("疑似代打卡(非指纹)", "t02", "1002"),
        ("疑似代打卡(集中打卡)", "t01", "1001"),
        ("疑似代打卡(集中打卡)", "t01", "1002"),
        ("疑似代打卡(集中打卡)", "t01", "1003"),
        ("疑似代打卡(行程不及)", "t02", "1001"),
    ]
    summary = {row["工号"]: row for row in table(open_workbook(outcome.path)["汇总"], "工号")}
    assert summary["1002"]["有效下村天数"] == 1  # the card punch still counts: listed only
