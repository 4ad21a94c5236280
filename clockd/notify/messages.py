"""What clockd says, in short Chinese: which township and village, what happened, what to do.

One function per event. Text that came from a device or a peer (serials, addresses) passes
through `shown` so a control character cannot forge lines in a chat or a mail.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from clockd.config import Settings, TerminalConfig
from clockd.workcal import IsoWeek, YearMonth

WEEKDAY_NAMES = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
# WeCom's robot takes at most 2048 bytes of text content; keep every message under that.
MAX_TEXT_BYTES = 2000


class Kind(enum.StrEnum):
    """Event types; the `json` webhook format carries them as `event`."""

    TERMINAL_STALE = "terminal_stale"
    TERMINAL_RECOVERED = "terminal_recovered"
    SERIAL_MISMATCH = "serial_mismatch"
    SERIAL_CONFIRMED = "serial_confirmed"
    CAPACITY_HIGH = "capacity_high"
    CAPACITY_NORMAL = "capacity_normal"
    REPORT_PROVISIONAL = "report_provisional"
    REPORT_FINAL = "report_final"
    REPORT_REVISED = "report_revised"
    REMINDER = "reminder"
    LEDGER_FAILED = "ledger_failed"
    LEDGER_INTACT = "ledger_intact"
    DATABASE_DOWN = "database_down"
    DATABASE_BACK = "database_back"
    UNKNOWN_TERMINAL = "unknown_terminal"
    UNKNOWN_TERMINAL_ADDED = "unknown_terminal_added"
    TEST = "test"


@dataclass(frozen=True)
class Message:
    kind: Kind
    key: str  # unique per occurrence: the outbox never queues one key twice for a channel
    title: str
    body: str

    @property
    def text(self) -> str:
        """Title and body as one chat message, cut to fit a robot's limit."""
        return fit(f"{self.title}\n{self.body}")


def fit(text: str, limit: int = MAX_TEXT_BYTES) -> str:
    """Cut at a line boundary so the UTF-8 text stays within `limit` bytes."""
    if len(text.encode()) <= limit:
        return text
    marker = "\n……（内容过长，其余略）"
    budget = limit - len(marker.encode())
    kept: list[str] = []
    used = 0
    for line in text.split("\n"):
        size = len(line.encode()) + 1
        if used + size > budget:
            break
        kept.append(line)
        used += size
    if not kept:  # one enormous line
        return text.encode()[:budget].decode(errors="ignore") + marker
    return "\n".join(kept) + marker


def shown(text: str, limit: int = 64) -> str:
    """Outside text made harmless: control characters escaped, length bounded."""
    out = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text[:limit])
    return out + ("…" if len(text) > limit else "")


def _title(settings: Settings, what: str) -> str:
    return f"【{settings.township}·{what}】"


def local_time(moment: dt.datetime, zone: ZoneInfo) -> str:
    """`11月24日 09:30` in the configured zone."""
    local = moment.astimezone(zone)
    return f"{local.month}月{local.day}日 {local:%H:%M}"


def hours(delta: dt.timedelta) -> str:
    value = delta.total_seconds() / 3600
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}".rstrip("0").rstrip(".")


def terminal_name(terminal: TerminalConfig) -> str:
    return f"{terminal.village}打卡机（{terminal.id}）"


# --- terminals -----------------------------------------------------------------------------


def terminal_stale(
    settings: Settings,
    terminal: TerminalConfig,
    key: str,
    last_good: dt.datetime | None,
    since: dt.datetime,
    now: dt.datetime,
) -> Message:
    zone = settings.zone
    if last_good is None:
        what = f"自{local_time(since, zone)}起一直连接不上，从未采集到数据"
    else:
        what = (
            f"已{hours(now - last_good)}小时没有采集到数据"
            f"（最后成功采集：{local_time(last_good, zone)}）"
        )
    body = (
        f"{terminal_name(terminal)}{what}。打卡记录仍保存在打卡机上，恢复后会自动补采。\n"
        f"请检查{terminal.village}打卡机电源和网络。"
    )
    return Message(Kind.TERMINAL_STALE, key, _title(settings, "打卡机离线"), body)


def terminal_recovered(
    settings: Settings,
    terminal: TerminalConfig,
    key: str,
    since: dt.datetime | None,
    now: dt.datetime,
) -> Message:
    offline = f"，离线约{hours(now - since)}小时" if since is not None else ""
    body = (
        f"{terminal_name(terminal)}已恢复采集{offline}。离线期间的打卡记录已随本次采集入库，"
        "无需处理。"
    )
    return Message(Kind.TERMINAL_RECOVERED, key, _title(settings, "打卡机恢复"), body)


def serial_mismatch(
    settings: Settings, terminal: TerminalConfig, key: str, reported: str
) -> Message:
    body = (
        f"{terminal.village}打卡机地址 {terminal.host}:{terminal.port} 上的设备报告序列号 "
        f"{shown(reported)}，与配置的 {terminal.serial} 不符；其打卡记录暂不计入"
        f"{terminal.village}。\n请核实{terminal.village}是否更换了打卡机；确认后在 devices.yaml "
        "中更新该终端的 serial。"
    )
    return Message(Kind.SERIAL_MISMATCH, key, _title(settings, "打卡机序列号不符"), body)


def serial_confirmed(settings: Settings, terminal: TerminalConfig, key: str) -> Message:
    body = f"{terminal_name(terminal)}的序列号已与配置一致（{terminal.serial}），无需处理。"
    return Message(Kind.SERIAL_CONFIRMED, key, _title(settings, "打卡机序列号已核实"), body)


def capacity_high(
    settings: Settings,
    terminal: TerminalConfig,
    key: str,
    records: int,
    capacity: int,
    limit: int,
) -> Message:
    percent = 100 * records / capacity
    body = (
        f"{terminal_name(terminal)}已存 {records:,}/{capacity:,} 条打卡记录（{percent:.0f}%，"
        f"超过{limit}%），存满后将无法打卡。\n请在记录全部采集入库后清理{terminal.village}"
        "打卡机的考勤记录，或在 devices.yaml 中设置 poll.clear_policy 由 clockd 自动清理。"
    )
    return Message(Kind.CAPACITY_HIGH, key, _title(settings, "打卡机存储将满"), body)


def capacity_normal(
    settings: Settings, terminal: TerminalConfig, key: str, records: int, capacity: int
) -> Message:
    percent = 100 * records / capacity if capacity else 0
    body = (
        f"{terminal_name(terminal)}的记录已降至 {records:,}/{capacity:,} 条"
        f"（{percent:.0f}%），无需处理。"
    )
    return Message(Kind.CAPACITY_NORMAL, key, _title(settings, "打卡机存储恢复正常"), body)


def unknown_terminal(settings: Settings, key: str, serial: str, address: str) -> Message:
    where = f"（来自 {shown(address)}）" if address else ""
    body = (
        f"序列号为 {shown(serial)} 的打卡机{where}向本服务上传数据，但未在 devices.yaml 中登记；"
        "其打卡记录已隔离保存，暂不计入任何村。\n若是新装或更换的打卡机，请在 devices.yaml 中"
        "登记它的序列号和所在村；否则请查明来源。"
    )
    return Message(Kind.UNKNOWN_TERMINAL, key, _title(settings, "发现未登记的打卡机"), body)


def unknown_terminal_added(settings: Settings, key: str, terminal: TerminalConfig) -> Message:
    body = f"序列号 {terminal.serial} 的打卡机已登记为{terminal_name(terminal)}，无需处理。"
    return Message(Kind.UNKNOWN_TERMINAL_ADDED, key, _title(settings, "打卡机已登记"), body)


# --- reports -------------------------------------------------------------------------------


def period_name(kind: str, label: str) -> str:
    """`2026年第47周（11月16日—11月22日）周报` or `2026年11月月报`."""
    if kind == "weekly":
        week = IsoWeek.parse(label)
        return (
            f"{week.year}年第{week.week}周（{week.start.month}月{week.start.day}日—"
            f"{week.end.month}月{week.end.day}日）周报"
        )
    month = YearMonth.parse(label)
    return f"{month.year}年{month.month}月月报"


def report_provisional(
    settings: Settings, kind: str, label: str, key: str, villages: Sequence[str]
) -> Message:
    missing = "、".join(villages) if villages else "部分村"
    body = (
        f"{period_name(kind, label)}已按时生成，但{missing}的打卡机在本期结束后还没有采集成功，"
        "报表暂为临时版。\n"
        f"请检查{missing}打卡机电源和网络；数据采齐后 clockd 会自动生成正式版。"
    )
    return Message(Kind.REPORT_PROVISIONAL, key, _title(settings, "报表为临时版"), body)


def report_final(settings: Settings, kind: str, label: str, key: str) -> Message:
    body = f"{period_name(kind, label)}的数据已采齐，已生成正式版，无需处理。"
    return Message(Kind.REPORT_FINAL, key, _title(settings, "报表已转为正式版"), body)


def report_revised(
    settings: Settings,
    kind: str,
    label: str,
    key: str,
    revision: int,
    deductions: int,
    previous: int | None,
) -> Message:
    if previous is None:
        change = f"扣款合计 {deductions} 元。"
    elif previous == deductions:
        change = f"扣款合计不变（{deductions} 元）。"
    else:
        direction = "增加" if deductions > previous else "减少"
        change = (
            f"扣款合计由 {previous} 元变为 {deductions} 元（{direction} "
            f"{abs(deductions - previous)} 元）。"
        )
    body = (
        f"{period_name(kind, label)}收到迟到的打卡数据，已生成更正版（第 {revision} 次修订）。"
        f"{change}\n"
        "请以更正版为准，更正说明见报表；原文件已移至 history/ 文件夹。"
    )
    return Message(Kind.REPORT_REVISED, key, _title(settings, "报表更正"), body)


# --- reminder ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Behind:
    user_id: str
    name: str
    days_needed: int


def reminder(
    settings: Settings, key: str, week: IsoWeek, at: dt.datetime, behind: Sequence[Behind]
) -> Message:
    """Each cadre behind with the days still needed, in 工号 order: counts, never a ranking."""
    local = at.astimezone(settings.zone)
    lines = [
        f"本周（{week.start.month}月{week.start.day}日—{week.end.month}月{week.end.day}日）截至"
        f"{WEEKDAY_NAMES[local.weekday()]} {local:%H:%M}，以下 {len(behind)} 名干部"
        "下村天数尚未达到本周要求（按工号排列）："
    ]
    lines += [f"{shown(b.user_id, 24)} {shown(b.name)} 还需 {b.days_needed} 天" for b in behind]
    lines.append("请相关干部合理安排本周剩余时间下村，并在上午、下午各打卡一次。")
    return Message(Kind.REMINDER, key, _title(settings, "下村提醒"), "\n".join(lines))


# --- the ledger and the database -------------------------------------------------------------


def ledger_failed(settings: Settings, key: str, problems: Sequence[str]) -> Message:
    shown_problems = [shown(problem, 120) for problem in problems[:10]]
    more = f"\n……另有 {len(problems) - 10} 处" if len(problems) > 10 else ""
    body = (
        f"打卡数据防篡改校验发现 {len(problems)} 处异常：\n"
        + "\n".join(shown_problems)
        + more
        + "\n请立即核查数据库是否被人为修改，保留现场，并运行 clockd verify 查看详情。"
    )
    return Message(Kind.LEDGER_FAILED, key, _title(settings, "打卡数据校验失败"), body)


def ledger_intact(settings: Settings, key: str) -> Message:
    body = "打卡数据防篡改校验已恢复正常，全部记录完整。"
    return Message(Kind.LEDGER_INTACT, key, _title(settings, "打卡数据校验恢复正常"), body)


def database_down(
    settings: Settings, key: str, host: str, since: dt.datetime, cycles: int, error: str
) -> Message:
    body = (
        f"clockd（{shown(host)}）自{local_time(since, settings.zone)}起已连续 {cycles} 个采集"
        f"周期无法连接数据库（{shown(error, 160)}），打卡数据暂未入库，记录仍保存在打卡机上。\n"
        "请检查数据库服务、服务器磁盘空间和网络。"
    )
    return Message(Kind.DATABASE_DOWN, key, _title(settings, "数据库无法连接"), body)


def database_back(
    settings: Settings, key: str, host: str, since: dt.datetime, now: dt.datetime
) -> Message:
    body = (
        f"clockd（{shown(host)}）已恢复连接数据库（中断约{hours(now - since)}小时），"
        "打卡数据将在本周期内补采入库，无需处理。"
    )
    return Message(Kind.DATABASE_BACK, key, _title(settings, "数据库已恢复"), body)


def test_message(settings: Settings, channel: str, now: dt.datetime) -> Message:
    body = (
        f"这是一条测试消息（{local_time(now, settings.zone)}）：clockd 的通知渠道 {channel} "
        "工作正常。打卡机离线、报表为临时版或需要更正、干部下村提醒等都会发到这里。"
    )
    key = f"test:{channel}:{now.isoformat()}"
    return Message(Kind.TEST, key, _title(settings, "通知测试"), body)
