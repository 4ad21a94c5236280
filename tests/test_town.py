import itertools
from collections import Counter
from datetime import date, time, timedelta
from functools import cache

import pandas as pd
import pytest

from clockd.domain import Role
from clockd.rules import PUNCH_COLUMNS, assess_weeks, punch_frame
from clockd.sim.town import (
    CADRES,
    TERMINALS,
    TownPunch,
    generate_district,
    generate_punches,
    punch_records,
)
from clockd.workcal import IsoWeek, WorkCalendar

START = date(2026, 3, 2)  # a Monday; eight ordinary weeks follow
YEAR_START = date(2026, 1, 5)


@cache
def town_punches(start: date, weeks: int, seed: int) -> tuple[TownPunch, ...]:
    return tuple(generate_punches(CADRES, TERMINALS, start, weeks, seed))


@cache
def town_weeks(start: date, weeks: int, seed: int) -> pd.DataFrame:
    frame = punch_frame(punch_records(town_punches(start, weeks, seed)))
    first = IsoWeek.containing(start)
    return assess_weeks(frame, CADRES, [], WorkCalendar(), [first.shift(n) for n in range(weeks)])


def test_the_sixteen_village_terminals() -> None:
    assert [terminal.terminal_id for terminal in TERMINALS] == [f"t{n:02d}" for n in range(1, 17)]
    assert TERMINALS[0].village == "官埠社区" and TERMINALS[-1].village == "柳塘村"
    assert len({terminal.village for terminal in TERMINALS}) == 16


def test_the_roster_of_47() -> None:
    assert [cadre.user_id for cadre in CADRES] == [str(n) for n in range(1001, 1048)]
    assert len({cadre.name for cadre in CADRES}) == 47
    residents = [cadre for cadre in CADRES if cadre.role is Role.RESIDENT]
    assert len(residents) == 16
    assert sorted(cadre.village or "" for cadre in residents) == sorted(
        t.village for t in TERMINALS
    )
    assert all(cadre.village is None for cadre in CADRES if cadre.role is Role.ORDINARY)
    assert {"党政办", "经济发展办", "社会事务办", "综治办", "财政所"} <= {
        c.department for c in CADRES
    }


def test_same_seed_same_punches_and_another_seed_differs() -> None:
    assert generate_punches(CADRES, TERMINALS, START, 2, seed=3) == list(town_punches(START, 2, 3))
    assert town_punches(START, 2, 3) != town_punches(START, 2, 4)


def test_punches_start_on_the_monday_of_the_first_week_and_come_in_time_order() -> None:
    punches = generate_punches(CADRES, TERMINALS, date(2026, 3, 4), 1, seed=1)
    stamps = [punch.timestamp for punch in punches]
    assert stamps == sorted(stamps)
    assert date(2026, 3, 2) <= stamps[0].date() and stamps[-1].date() <= date(2026, 3, 8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eight_weeks_look_like_the_town(seed: int) -> None:
    results = town_weeks(START, 8, seed)
    assert 3.4 <= results["valid_days"].mean() <= 4.0
    assert results["met"].mean() >= 0.97  # most weeks everyone meets the minimum
    assert results.loc[~results["met"], "user_id"].nunique() <= 6
    assert (results["morning_only_days"] + results["afternoon_only_days"]).sum() > 0


def test_a_year_fails_a_few_cadres_a_few_weeks() -> None:
    results = town_weeks(YEAR_START, 52, 0)
    failed = results[~results["met"]]
    assert 5 <= len(failed) <= 25
    assert 3 <= failed["user_id"].nunique() <= 10
    assert 3.4 <= results["valid_days"].mean() <= 4.0


def test_punch_texture() -> None:
    punches = town_punches(YEAR_START, 52, 0)
    roster = {cadre.user_id for cadre in CADRES}
    assert any(punch.user_id not in roster for punch in punches)
    for punch in punches:
        clock = punch.timestamp.time()
        assert time(7, 30) <= clock <= time(11, 33) or time(13, 30) <= clock <= time(18, 3)
    by_user = sorted(punches, key=lambda punch: (punch.user_id, punch.timestamp))
    double_presses = sum(
        1
        for earlier, later in itertools.pairwise(by_user)
        if earlier.user_id == later.user_id
        and earlier.terminal_id == later.terminal_id
        and timedelta(seconds=60) <= later.timestamp - earlier.timestamp <= timedelta(seconds=180)
    )
    assert double_presses > 100


def test_residents_mostly_punch_at_their_own_village() -> None:
    villages = {terminal.terminal_id: terminal.village for terminal in TERMINALS}
    posted = {cadre.user_id: cadre.village for cadre in CADRES if cadre.role is Role.RESIDENT}
    theirs = [
        villages[p.terminal_id] == posted[p.user_id]
        for p in town_punches(START, 8, 0)
        if p.user_id in posted
    ]
    assert sum(theirs) / len(theirs) >= 0.7


def test_days_off_see_some_punches_but_far_fewer() -> None:
    calendar = WorkCalendar()
    per_day = Counter(punch.timestamp.date() for punch in town_punches(YEAR_START, 52, 0))
    days = [YEAR_START + timedelta(days=n) for n in range(52 * 7)]
    working = [per_day[day] for day in days if calendar.is_workday(day)]
    off = [per_day[day] for day in days if not calendar.is_workday(day)]
    assert sum(off) > 0
    assert sum(off) / len(off) < sum(working) / len(working) / 4


def test_district_scales_with_the_same_shape() -> None:
    district = generate_district(470, 160, START, 4, seed=5)
    assert len(district.cadres) == 470 and len(district.terminals) == 160
    assert len({cadre.user_id for cadre in district.cadres}) == 470
    assert sum(cadre.role is Role.RESIDENT for cadre in district.cadres) == 160
    assert list(district.punches.columns) == list(PUNCH_COLUMNS)
    assert district.punches["timestamp"].is_monotonic_increasing
    assert 470 * 4 * 7 <= len(district.punches) <= 470 * 4 * 11
    results = assess_weeks(
        district.punches,
        district.cadres,
        [],
        WorkCalendar(),
        [IsoWeek.containing(START).shift(n) for n in range(4)],
    )
    assert 3.4 <= results["valid_days"].mean() <= 4.0
    assert results["met"].mean() >= 0.97
    again = generate_district(470, 160, START, 4, seed=5)
    assert again.punches.equals(district.punches)
