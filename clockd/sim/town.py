"""The synthetic Guanbuqiao town (官埠桥镇) of docs/reports.md ("The demo"), and a district-sized
variant.

`clockd simulate`, `clockd demo`, the tests and the benchmarks need attendance that looks like
the town's: 47 cadres, 16 village terminals, about 3.7 valid village days per cadre per week,
and a handful of cadres falling short now and then. Everything is drawn from one seeded numpy
generator, so a seed always gives the same punches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd

from clockd.config import RuleSettings
from clockd.domain import Cadre, Role
from clockd.rules import PunchRecord
from clockd.workcal import IsoWeek, WorkCalendar


@dataclass(frozen=True, slots=True)
class TownTerminal:
    terminal_id: str
    village: str


@dataclass(frozen=True, slots=True)
class TownPunch:
    terminal_id: str
    user_id: str
    timestamp: datetime  # naive local wall-clock time, whole seconds


VILLAGES = (
    "官埠社区",
    "桥东村",
    "桥西村",
    "黄畈村",
    "杨堡村",
    "刘家桥村",
    "湖山村",
    "龙潭村",
    "新屋村",
    "石门村",
    "南岭村",
    "高桥村",
    "港口村",
    "白沙村",
    "清水村",
    "柳塘村",
)
TERMINALS = tuple(
    TownTerminal(f"t{number:02d}", village) for number, village in enumerate(VILLAGES, start=1)
)

# (name, department, village for a 驻村干部 or None for a 机关干部); user IDs 1001.. in order.
_ROSTER = (
    ("王建国", "党政办", None),
    ("李红梅", "党政办", None),
    ("张志强", "经济发展办", "官埠社区"),
    ("刘小平", "经济发展办", None),
    ("陈文华", "社会事务办", None),
    ("杨春燕", "社会事务办", "桥东村"),
    ("黄德明", "综治办", None),
    ("周海峰", "综治办", None),
    ("吴丽娟", "财政所", None),
    ("徐国栋", "财政所", "桥西村"),
    ("孙晓明", "农业服务中心", None),
    ("胡光荣", "农业服务中心", "黄畈村"),
    ("朱玉兰", "村镇建设办", None),
    ("高建军", "村镇建设办", None),
    ("林秀英", "党政办", "杨堡村"),
    ("何志刚", "经济发展办", None),
    ("郭长青", "社会事务办", None),
    ("马丽华", "综治办", "刘家桥村"),
    ("罗卫东", "财政所", None),
    ("梁晓燕", "农业服务中心", None),
    ("宋德胜", "村镇建设办", "湖山村"),
    ("郑桂芳", "党政办", None),
    ("谢永红", "经济发展办", None),
    ("韩立新", "社会事务办", "龙潭村"),
    ("唐明亮", "综治办", None),
    ("冯爱华", "财政所", None),
    ("董振华", "农业服务中心", "新屋村"),
    ("程晓东", "村镇建设办", None),
    ("曹金凤", "党政办", None),
    ("袁少华", "经济发展办", "石门村"),
    ("邓国平", "社会事务办", None),
    ("许静", "综治办", None),
    ("傅建华", "财政所", "南岭村"),
    ("沈丽萍", "农业服务中心", None),
    ("曾繁荣", "村镇建设办", None),
    ("彭德华", "党政办", "高桥村"),
    ("吕秀兰", "经济发展办", None),
    ("苏文军", "社会事务办", None),
    ("卢春生", "综治办", "港口村"),
    ("蒋玉梅", "财政所", None),
    ("蔡永平", "农业服务中心", None),
    ("贾海燕", "村镇建设办", "白沙村"),
    ("丁志华", "党政办", None),
    ("魏明", "经济发展办", None),
    ("薛红霞", "社会事务办", "清水村"),
    ("叶建平", "综治办", None),
    ("余晓丽", "农业服务中心", "柳塘村"),
)
CADRES = tuple(
    Cadre(
        user_id=str(1001 + index),
        name=name,
        role=Role.ORDINARY if village is None else Role.RESIDENT,
        village=village,
        department=department,
    )
    for index, (name, department, village) in enumerate(_ROSTER)
)


@dataclass(frozen=True)
class Profile:
    """How diligent the town is: per role, the village days a cadre plans in a normal week and
    how likely each count is; and how often some cadres fall short."""

    planned_days: dict[Role, tuple[tuple[int, ...], tuple[float, ...]]]
    shortfall_cadre_share: float
    shortfall_week_rate: float


# Weighted over the town's 31 ordinary and 16 resident cadres this averages about 3.7 village
# days a week (docs/reports.md). A few cadres (about one in seven) sometimes fall short; over a year
# the town sees about six cadres fail about twelve weeks in all, as the 1,200 yuan suggests.
TOWN = Profile(
    planned_days={
        Role.ORDINARY: ((2, 3, 4, 5), (0.15, 0.30, 0.40, 0.15)),
        Role.RESIDENT: ((3, 4, 5), (0.12, 0.40, 0.48)),
    },
    shortfall_cadre_share=0.15,
    shortfall_week_rate=0.033,
)
# The year before: most cadres did the minimum, about 2.9 days a week (3.7 is 27 % more).
YEAR_BEFORE = Profile(
    planned_days={
        Role.ORDINARY: ((2, 3, 4), (0.45, 0.43, 0.12)),
        Role.RESIDENT: ((3, 4), (0.55, 0.45)),
    },
    shortfall_cadre_share=0.0,
    shortfall_week_rate=0.0,
)
_TWO_DAYS_SHORT_RATE = 0.3  # a short week misses two days rather than one
_HALF_DAY_RATE = 0.35  # a week with one extra morning- or afternoon-only visit
_DAY_OFF_VISIT_RATE = 0.08  # a week with a visit on a weekend or holiday (rarely lands on one)
_DOUBLE_PRESS_RATE = 0.08  # a punch pressed again a minute or two later
_OWN_VILLAGE_RATE = 0.85  # a resident's visit is to the village they are posted to
_CONTACT_VILLAGE_RATE = 0.80  # an ordinary cadre's visit is to one of their two contact villages
_SAME_VILLAGE_RATE = 0.85  # the afternoon is spent where the morning was
_UNKNOWN_PUNCHES_PER_CADRE_WEEK = 1 / 150  # staff enrolled on a terminal but not in the roster

# Punch times, in minutes after midnight: (earliest, most likely, latest).
_MORNING_MINUTES = (7 * 60 + 30, 8 * 60 + 30, 11 * 60 + 30)
_AFTERNOON_MINUTES = (13 * 60 + 30, 15 * 60, 18 * 60)

_MORNING, _AFTERNOON = 0, 1


@dataclass(frozen=True)
class _Punches:
    """Generated punches as parallel arrays, sorted by time."""

    terminal: npt.NDArray[np.int64]  # index into the terminals
    user_id: npt.NDArray[np.object_]
    timestamp: npt.NDArray[np.datetime64]  # datetime64[s]


def generate_punches(
    cadres: Sequence[Cadre],
    terminals: Sequence[TownTerminal],
    start: date,
    weeks: int,
    seed: int,
    calendar: WorkCalendar | None = None,
    profile: Profile = TOWN,
) -> list[TownPunch]:
    """`weeks` ISO weeks of punches, the first being the week containing `start`, in time order."""
    punches = _simulate(cadres, terminals, start, weeks, seed, calendar or WorkCalendar(), profile)
    return [
        TownPunch(terminals[terminal].terminal_id, str(user_id), stamp)
        for terminal, user_id, stamp in zip(
            punches.terminal,
            punches.user_id,
            punches.timestamp.astype("datetime64[s]").tolist(),
            strict=True,
        )
    ]


def punch_records(
    punches: Sequence[TownPunch], terminals: Sequence[TownTerminal] = TERMINALS
) -> list[PunchRecord]:
    """The punches as the rules engine takes them, each attributed to its terminal's village."""
    villages = {terminal.terminal_id: terminal.village for terminal in terminals}
    return [
        PunchRecord(punch.user_id, punch.timestamp, punch.terminal_id, villages[punch.terminal_id])
        for punch in punches
    ]


@dataclass(frozen=True)
class District:
    """A district-sized town for benchmarks. `punches` has the rules engine's PUNCH_COLUMNS
    (user_id, timestamp, terminal, village, quarantined), in time order."""

    cadres: tuple[Cadre, ...]
    terminals: tuple[TownTerminal, ...]
    punches: pd.DataFrame


_PLACE_FIRST = "东西南北上下前后大小新老黄白青石龙凤桃柳杨李高马沙泉"
_PLACE_SECOND = "湖山河港桥岭冲湾畈塘坪岗铺庙台堡园林洲店"
_SURNAMES = "王李张刘陈杨黄赵周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯董程曹袁邓许傅沈曾彭吕苏卢蒋蔡"
_GIVEN = (
    "建国红梅志强小平文华春燕德明海峰丽娟国栋晓光荣玉兰军秀英刚长青卫东胜桂芳永新亮爱振金凤少静"
)


def generate_district(
    n_cadres: int,
    n_terminals: int,
    start: date,
    weeks: int,
    seed: int,
    calendar: WorkCalendar | None = None,
) -> District:
    """Cadres, terminals and punches shaped like the town's, at any size (numpy throughout).

    Residents make up the town's share (16 of 47), posted round-robin to the villages.
    """
    rng = np.random.default_rng(seed)
    terminals = tuple(
        TownTerminal(f"d{number + 1:04d}", _village_name(number)) for number in range(n_terminals)
    )
    resident_count = round(n_cadres * 16 / 47)
    residents = set(rng.choice(n_cadres, size=resident_count, replace=False).tolist())
    surnames = rng.integers(0, len(_SURNAMES), size=n_cadres)
    given = rng.integers(0, len(_GIVEN), size=(n_cadres, 2))
    departments = ("党政办", "经济发展办", "社会事务办", "综治办", "财政所", "农业服务中心")
    cadres = tuple(
        Cadre(
            user_id=str(100001 + index),
            name=_SURNAMES[surnames[index]] + _GIVEN[given[index, 0]] + _GIVEN[given[index, 1]],
            role=Role.RESIDENT if index in residents else Role.ORDINARY,
            village=terminals[index % n_terminals].village if index in residents else None,
            department=departments[index % len(departments)],
        )
        for index in range(n_cadres)
    )
    punch_seed = int(rng.integers(2**32))
    punches = _simulate(
        cadres, terminals, start, weeks, punch_seed, calendar or WorkCalendar(), TOWN
    )
    terminal_ids = np.array([terminal.terminal_id for terminal in terminals], dtype=object)
    villages = np.array([terminal.village for terminal in terminals], dtype=object)
    frame = pd.DataFrame(
        {
            "user_id": pd.array(punches.user_id, dtype="str"),
            "timestamp": punches.timestamp,
            "terminal": pd.array(terminal_ids[punches.terminal], dtype="str"),
            "village": pd.array(villages[punches.terminal], dtype="str"),
            "quarantined": np.zeros(len(punches.terminal), dtype=bool),
        }
    )
    return District(cadres=cadres, terminals=terminals, punches=frame)


def _village_name(number: int) -> str:
    first, second = divmod(number, len(_PLACE_SECOND))
    name = _PLACE_FIRST[first % len(_PLACE_FIRST)] + _PLACE_SECOND[second]
    repeat = first // len(_PLACE_FIRST)
    return f"{name}{repeat + 1 if repeat else ''}村"


def _simulate(
    cadres: Sequence[Cadre],
    terminals: Sequence[TownTerminal],
    start: date,
    weeks: int,
    seed: int,
    calendar: WorkCalendar,
    profile: Profile,
) -> _Punches:
    rng = np.random.default_rng(seed)
    first_monday = IsoWeek.containing(start).start
    days = [first_monday + timedelta(days=offset) for offset in range(weeks * 7)]
    is_workday = np.array([calendar.is_workday(day) for day in days], dtype=bool).reshape(weeks, 7)
    active = _active_days(cadres, days).reshape(len(cadres), weeks, 7)
    full_day, half_day = _plan_visits(cadres, is_workday, active, rng, profile)

    full_cadre, full_week, full_weekday = np.nonzero(full_day)
    half_cadre, half_week, half_weekday = np.nonzero(half_day)
    home, contacts = _villages_of(cadres, terminals, rng)
    morning_village = _pick_villages(full_cadre, home, contacts, len(terminals), rng)
    afternoon_village = np.where(
        rng.random(len(full_cadre)) < _SAME_VILLAGE_RATE,
        morning_village,
        _pick_villages(full_cadre, home, contacts, len(terminals), rng),
    )
    cadre = np.concatenate([full_cadre, full_cadre, half_cadre])
    day = np.concatenate([full_week * 7 + full_weekday] * 2 + [half_week * 7 + half_weekday])
    side = np.concatenate(
        [
            np.full(len(full_cadre), _MORNING),
            np.full(len(full_cadre), _AFTERNOON),
            rng.integers(0, 2, size=len(half_cadre)),
        ]
    )
    terminal = np.concatenate(
        [
            morning_village,
            afternoon_village,
            _pick_villages(half_cadre, home, contacts, len(terminals), rng),
        ]
    )
    user_ids = np.array([c.user_id for c in cadres], dtype=object)[cadre]
    user_ids, day, side, terminal = _add_unknown_users(
        user_ids, day, side, terminal, cadres, is_workday, len(terminals), rng
    )
    seconds = day * 86400 + _times_of_day(side, rng)
    seconds, user_ids, terminal = _add_double_presses(seconds, user_ids, terminal, rng)

    order = np.argsort(seconds, kind="stable")
    return _Punches(
        terminal=terminal[order],
        user_id=user_ids[order],
        timestamp=np.datetime64(first_monday, "s") + seconds[order].astype("timedelta64[s]"),
    )


def _plan_visits(
    cadres: Sequence[Cadre],
    is_workday: npt.NDArray[np.bool_],
    active: npt.NDArray[np.bool_],
    rng: np.random.Generator,
    profile: Profile,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """[cadre, week, weekday] masks of full village days and of half-day visits."""
    cadre_count, weeks = active.shape[:2]
    is_resident = np.array([cadre.role is Role.RESIDENT for cadre in cadres], dtype=bool)
    base_days = RuleSettings().base_days
    available = (is_workday[None, :, :] & active).sum(axis=2)
    required = np.minimum(
        np.where(is_resident, base_days[Role.RESIDENT], base_days[Role.ORDINARY])[:, None],
        available,
    )
    planned = np.minimum(
        np.where(
            is_resident[:, None],
            _planned_days(profile, Role.RESIDENT, (cadre_count, weeks), rng),
            _planned_days(profile, Role.ORDINARY, (cadre_count, weeks), rng),
        ),
        available,
    )
    shortfall_cadres = np.zeros(cadre_count, dtype=bool)
    shortfall_cadres[
        rng.choice(
            cadre_count, size=round(cadre_count * profile.shortfall_cadre_share), replace=False
        )
    ] = True
    short_week = (
        shortfall_cadres[:, None]
        & (rng.random((cadre_count, weeks)) < profile.shortfall_week_rate)
        & (required > 0)
    )
    missed = 1 + (rng.random((cadre_count, weeks)) < _TWO_DAYS_SHORT_RATE)
    planned = np.where(short_week, np.maximum(required - missed, 0), planned)

    # Rank the days of each week: working days first in random order, then days off, and
    # days outside the active period never. The first `planned` days are the visits.
    preference = rng.random((cadre_count, weeks, 7)) + np.where(is_workday, 0.0, 1.0)
    preference[~active] = np.inf
    rank = preference.argsort(axis=2).argsort(axis=2)
    full_day = rank < planned[:, :, None]
    half_day = (
        (rank == planned[:, :, None])
        & active
        & (rng.random((cadre_count, weeks)) < _HALF_DAY_RATE)[:, :, None]
    )
    day_off_visit = (
        (rng.integers(0, 7, size=(cadre_count, weeks))[:, :, None] == np.arange(7))
        & ~is_workday[None, :, :]
        & active
        & ~(full_day | half_day)
        & ~short_week[:, :, None]
        & (rng.random((cadre_count, weeks)) < _DAY_OFF_VISIT_RATE)[:, :, None]
    )
    return full_day | day_off_visit, half_day


def _planned_days(
    profile: Profile, role: Role, shape: tuple[int, int], rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    counts, likelihoods = profile.planned_days[role]
    return rng.choice(np.array(counts), p=likelihoods, size=shape)


def _active_days(cadres: Sequence[Cadre], days: Sequence[date]) -> npt.NDArray[np.bool_]:
    """[cadre, day] whether the cadre is active; only cadres with bounds cost a loop."""
    active = np.ones((len(cadres), len(days)), dtype=bool)
    for index, cadre in enumerate(cadres):
        if cadre.active_from is not None or cadre.active_to is not None:
            active[index] = [cadre.active_on(day) for day in days]
    return active


def _villages_of(
    cadres: Sequence[Cadre], terminals: Sequence[TownTerminal], rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per cadre: the terminal of the village a resident is posted to (-1 for none), and two
    contact villages that an ordinary cadre visits most."""
    by_village = {terminal.village: index for index, terminal in enumerate(terminals)}
    home = np.array([by_village.get(cadre.village or "", -1) for cadre in cadres], dtype=np.int64)
    contacts = rng.integers(0, len(terminals), size=(len(cadres), 2))
    return home, contacts


def _pick_villages(
    cadre: npt.NDArray[np.int64],
    home: npt.NDArray[np.int64],
    contacts: npt.NDArray[np.int64],
    terminal_count: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.int64]:
    anywhere = rng.integers(0, terminal_count, size=len(cadre))
    contact = contacts[cadre, rng.integers(0, 2, size=len(cadre))]
    usual = np.where(home[cadre] >= 0, home[cadre], contact)
    rate = np.where(home[cadre] >= 0, _OWN_VILLAGE_RATE, _CONTACT_VILLAGE_RATE)
    return np.where(rng.random(len(cadre)) < rate, usual, anywhere)


def _times_of_day(side: npt.NDArray[np.int64], rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """Seconds after midnight of a morning or afternoon punch."""
    minutes = np.where(
        side == _MORNING,
        rng.triangular(*_MORNING_MINUTES, size=len(side)),
        rng.triangular(*_AFTERNOON_MINUTES, size=len(side)),
    )
    return (minutes * 60).astype(np.int64)


def _add_unknown_users(
    user_ids: npt.NDArray[np.object_],
    day: npt.NDArray[np.int64],
    side: npt.NDArray[np.int64],
    terminal: npt.NDArray[np.int64],
    cadres: Sequence[Cadre],
    is_workday: npt.NDArray[np.bool_],
    terminal_count: int,
    rng: np.random.Generator,
) -> tuple[
    npt.NDArray[np.object_], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]
]:
    """A few punches by PINs in no roster, on working days."""
    count = rng.poisson(len(cadres) * is_workday.shape[0] * _UNKNOWN_PUNCHES_PER_CADRE_WEEK)
    workdays = np.flatnonzero(is_workday.ravel())
    if count == 0 or len(workdays) == 0:
        return user_ids, day, side, terminal
    known = {cadre.user_id for cadre in cadres}
    highest = max((int(uid) for uid in known if uid.isdigit()), default=1000)
    strangers = [pin for pin in map(str, range(highest + 1, highest + 200)) if pin not in known]
    pins = rng.choice(np.array(strangers[:3], dtype=object), size=count)  # the same few strangers
    return (
        np.concatenate([user_ids, pins]),
        np.concatenate([day, rng.choice(workdays, size=count)]),
        np.concatenate([side, rng.integers(0, 2, size=count)]),
        np.concatenate([terminal, rng.integers(0, terminal_count, size=count)]),
    )


def _add_double_presses(
    seconds: npt.NDArray[np.int64],
    user_ids: npt.NDArray[np.object_],
    terminal: npt.NDArray[np.int64],
    rng: np.random.Generator,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.object_], npt.NDArray[np.int64]]:
    """Some punches pressed again 60–180 s later, on the same terminal and in the same half."""
    again = np.flatnonzero(rng.random(len(seconds)) < _DOUBLE_PRESS_RATE)
    delay = rng.integers(60, 181, size=len(again))
    return (
        np.concatenate([seconds, seconds[again] + delay]),
        np.concatenate([user_ids, user_ids[again]]),
        np.concatenate([terminal, terminal[again]]),
    )
