"""Signals of proxy punching (代打卡), for a human to look at; never counted against anyone.

Three patterns (SPEC §10), each a row in the weekly 异常 sheet, in the anomaly frame's shape
(rules.ANOMALY_COLUMNS):

- a punch made by password or card rather than a finger or a face, which anyone holding the
  card or the PIN can make for someone else;
- a burst: at least BURST_CADRES different cadres on one terminal within
  `rules.burst_seconds`, as when one person punches a stack of cards;
- impossible travel: the same cadre at two villages closer in time than
  `rules.min_travel_minutes`.

Pure: a punch frame in (with a `verify` column; frames without one have no verify signal), a
frame out. Quarantined punches and terminals not attributed to a village are left out: they
are anomalies already.
"""

from __future__ import annotations

import enum

import numpy as np
import pandas as pd

from clockd.config import RuleSettings
from clockd.rules import ANOMALY_COLUMNS

BURST_CADRES = 3  # two cadres arriving together is ordinary; three within a minute is not
# Verify types a person need not be present for (ZKTeco: 1 fingerprint and 15 face are not).
WEAK_VERIFY = {0: "密码", 2: "刷卡"}


class SignalKind(enum.StrEnum):
    WEAK_VERIFY = "weak_verify"
    BURST = "burst"
    TRAVEL = "travel"

    @property
    def label(self) -> str:
        return SIGNAL_LABELS[self]


SIGNAL_LABELS = {
    SignalKind.WEAK_VERIFY: "疑似代打卡(非指纹)",
    SignalKind.BURST: "疑似代打卡(集中打卡)",
    SignalKind.TRAVEL: "疑似代打卡(行程不及)",
}
NOTE = "仅供核查，不自动扣款"


def proxy_signals(punches: pd.DataFrame, rules: RuleSettings) -> pd.DataFrame:
    """Every signal in the punch frame, sorted by time, as anomaly rows."""
    usable = punches[~punches["quarantined"].to_numpy(dtype=bool) & punches["village"].notna()]
    frame = pd.DataFrame(
        {
            "terminal": usable["terminal"].astype(str).to_numpy(),
            "user_id": usable["user_id"].astype(str).to_numpy(),
            "timestamp": usable["timestamp"].to_numpy(dtype="datetime64[s]"),
            "village": usable["village"].astype(str).to_numpy(),
            "verify": (
                usable["verify"].to_numpy(dtype=np.int64)
                if "verify" in usable
                else np.ones(len(usable), dtype=np.int64)
            ),
        }
    )
    rows = [*_weak_verify(frame), *_bursts(frame, rules), *_travel(frame, rules)]
    result = pd.DataFrame(
        rows, columns=["kind", "type", "terminal", "user_id", "timestamp", "explanation"]
    )
    result["timestamp"] = pd.to_datetime(result["timestamp"])
    return result.sort_values(["timestamp", "terminal", "user_id"], ignore_index=True)[
        list(ANOMALY_COLUMNS)
    ]


Row = tuple[str, str, str, str, pd.Timestamp, str]


def _row(kind: SignalKind, terminal: str, user_id: str, stamp: np.datetime64, text: str) -> Row:
    return (kind.value, kind.label, terminal, user_id, pd.Timestamp(stamp), f"{text}；{NOTE}")


def _weak_verify(frame: pd.DataFrame) -> list[Row]:
    weak = frame[frame["verify"].isin(list(WEAK_VERIFY))]
    return [
        _row(SignalKind.WEAK_VERIFY, terminal, user_id, stamp, f"以{WEAK_VERIFY[verify]}方式打卡")
        for terminal, user_id, stamp, verify in zip(
            weak["terminal"], weak["user_id"], weak["timestamp"], weak["verify"], strict=True
        )
    ]


def _bursts(frame: pd.DataFrame, rules: RuleSettings) -> list[Row]:
    """Punches of clusters where BURST_CADRES or more cadres punched within burst_seconds.

    Each terminal's punches in time order, all terminals in one array: a window is found by
    one binary search over (terminal, time) keys, and only windows holding BURST_CADRES
    punches or more are looked into (a district month is hundreds of thousands of punches)."""
    ordered = frame.sort_values("timestamp")
    ordered = ordered.iloc[np.argsort(ordered["terminal"].to_numpy(), kind="stable")]
    terminals = ordered["terminal"].to_numpy()
    stamps = ordered["timestamp"].to_numpy()
    users = ordered["user_id"].to_numpy()
    if len(stamps) < BURST_CADRES:
        return []
    group = np.concatenate(([0], np.cumsum(terminals[1:] != terminals[:-1])))
    seconds = (stamps - stamps.min()) // np.timedelta64(1, "s")
    span = rules.burst_seconds
    keys = group * (int(seconds.max()) + span + 1) + seconds  # a window never leaves its terminal
    ends = np.searchsorted(keys, keys + span, side="right")
    flags = np.zeros(len(stamps) + 1, dtype=np.int64)  # +1 where a flagged window starts, -1 after
    for start in np.flatnonzero(ends - np.arange(len(ends)) >= BURST_CADRES).tolist():
        end = int(ends[start])
        if len(set(users[start:end].tolist())) >= BURST_CADRES:
            flags[start] += 1
            flags[end] -= 1
    flagged = np.cumsum(flags[:-1]) > 0
    # Consecutive flagged punches of one terminal form one burst; each is listed with the
    # others' IDs.
    first = flagged & np.concatenate(([True], ~flagged[:-1] | (group[1:] != group[:-1])))
    rows: list[Row] = []
    for index in np.flatnonzero(first).tolist():
        last = index
        while last + 1 < len(stamps) and flagged[last + 1] and group[last + 1] == group[index]:
            last += 1
        members = list(dict.fromkeys(users[index : last + 1].tolist()))
        burst = int((stamps[last] - stamps[index]) / np.timedelta64(1, "s"))
        text = f"{len(members)} 名干部在 {burst} 秒内于同一终端打卡：" + "、".join(
            str(member) for member in members
        )
        terminal = str(terminals[index])
        for position in range(index, last + 1):
            rows.append(_row(SignalKind.BURST, terminal, users[position], stamps[position], text))
    return rows


def _travel(frame: pd.DataFrame, rules: RuleSettings) -> list[Row]:
    """A punch at another village sooner after the cadre's previous one than travel allows."""
    ordered = frame.sort_values(["user_id", "timestamp"], kind="stable")
    users = ordered["user_id"].to_numpy()
    stamps = ordered["timestamp"].to_numpy()
    villages = ordered["village"].to_numpy()
    terminals = ordered["terminal"].to_numpy()
    if len(users) < 2:
        return []
    gap = (stamps[1:] - stamps[:-1]) / np.timedelta64(1, "m")
    moved = (
        (users[1:] == users[:-1])
        & (villages[1:] != villages[:-1])
        & (gap < rules.min_travel_minutes)
    )
    rows = []
    for position in np.flatnonzero(moved).tolist():
        before, after = position, position + 1
        text = (
            f"距其在{villages[before]}的打卡（{pd.Timestamp(stamps[before]):%H:%M:%S}）"
            f"仅 {gap[position]:.0f} 分钟即在{villages[after]}打卡，"
            f"少于两村间最短行程 {rules.min_travel_minutes} 分钟"
        )
        rows.append(_row(SignalKind.TRAVEL, terminals[after], users[after], stamps[after], text))
    return rows
