"""devices.yaml: pydantic models with their defaults, and loading with readable errors.

What each setting means is told in docs/rules.md (the rules) and docs/operations.md.

Every problem in a bad file is reported on its own line with the field path and, where the YAML
parser knows it, the line number, so an operator can fix the whole file in one pass.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from clockd.domain import Role
from clockd.errors import ConfigError, InputError, UserError
from clockd.gcpause import gc_paused
from clockd.workcal import date_range

DEFAULT_CONFIG = Path("devices.yaml")
ENV_CONFIG = "CLOCKD_CONFIG"
ENV_DATABASE_URL = "CLOCKD_DATABASE_URL"
ENV_REPORTS_DIR = "CLOCKD_REPORTS_DIR"
ENV_WEB_SECRET = "CLOCKD_WEB_SECRET"  # noqa: S105 (the variable's name, not a secret)
DEFAULT_DATABASE_URL = "sqlite:///clockd.sqlite3"

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _clock_time(value: Any) -> Any:
    """Accept 7:30 as well as 07:30 (pydantic alone insists on two-digit hours)."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*", value)
        if match:
            hour, minute, second = (int(part or 0) for part in match.groups())
            if hour < 24 and minute < 60 and second < 60:
                return dt.time(hour, minute, second)
            raise ValueError(f"{value.strip()!r} is not a time of day")
    return value


ClockTime = Annotated[dt.time, BeforeValidator(_clock_time)]


class _Strict(BaseModel):
    """Unknown keys are errors: a misspelt setting must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ClearWhenAbove(_Strict):
    when_above_percent: Annotated[int, Field(ge=1, le=100)]


class PollSettings(_Strict):
    interval_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = 30
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 10.0
    concurrency: Annotated[int, Field(ge=1, le=256)] = 8
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    retry_backoff_seconds: Annotated[float, Field(ge=0, le=300)] = 2.0
    sync_time: bool = True
    max_drift_seconds: Annotated[int, Field(ge=1)] = 60
    future_tolerance_minutes: Annotated[int, Field(ge=0)] = 10
    capacity_warn_percent: Annotated[int, Field(ge=1, le=100)] = 80
    lease_seconds: Annotated[int, Field(ge=10, le=3600)] = 120
    clear_policy: Literal["never"] | ClearWhenAbove = "never"

    def nearly_full(self, ratio: float | None) -> bool:
        """Whether a terminal's log, `ratio` of its capacity used, deserves a warning."""
        return ratio is not None and 100 * ratio > self.capacity_warn_percent


class WeeklySchedule(_Strict):
    weekday: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "mon"
    time: ClockTime = dt.time(7, 30)


class MonthlySchedule(_Strict):
    day: Annotated[int, Field(ge=1, le=28)] = 1
    time: ClockTime = dt.time(7, 30)


class ScheduleSettings(_Strict):
    weekly: WeeklySchedule = WeeklySchedule()
    monthly: MonthlySchedule = MonthlySchedule()
    ledger_check: ClockTime = dt.time(3, 30)  # daily `clockd verify` in the daemon


class WebSettings(_Strict):
    """`clockd serve`: the console's address and where its cookie-signing key comes from."""

    listen: Annotated[str, Field(pattern=r"^[^\s:]+:\d{1,5}$")] = "127.0.0.1:8080"
    secret_key_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = ENV_WEB_SECRET
    base_url: str | None = None  # as users reach it, e.g. https://clockd.example.gov.cn
    session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


class LeaveSettings(_Strict):
    # Requests longer than this many calendar days are decided by a leader, not by HR.
    leader_approval_above_days: Annotated[int, Field(ge=0)] = 3


class RetentionSettings(_Strict):
    """How long every poll run is kept before it is folded into one row per terminal and day
    (store/retention.py). At least five weeks, so the runs of every period a report may still
    revise as provisional, and of the alerts' look-back, stay whole."""

    poll_runs_days: Annotated[int, Field(ge=35, le=3660)] = 90


class Window(_Strict):
    """A half-day window, start inclusive and end exclusive, in local wall-clock time."""

    start: ClockTime
    end: ClockTime

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.start >= self.end:
            raise ValueError(f"start {self.start} must be before end {self.end}")
        return self


class RuleSettings(_Strict):
    morning: Window = Window(start=dt.time(5, 0), end=dt.time(12, 0))
    afternoon: Window = Window(start=dt.time(12, 0), end=dt.time(21, 0))
    same_village_required: bool = False
    base_days: dict[Role, Annotated[int, Field(ge=0, le=7)]] = {
        Role.ORDINARY: 2,
        Role.RESIDENT: 3,
    }
    deduction_yuan: Annotated[int, Field(ge=0)] = 100
    # Proxy-punch signals (listed in 异常, never counted): several cadres on one terminal
    # within burst_seconds; one cadre at two villages closer in time than min_travel_minutes.
    burst_seconds: Annotated[int, Field(ge=1, le=3600)] = 60
    min_travel_minutes: Annotated[int, Field(ge=0, le=24 * 60)] = 20
    # A valid village day counts only with a work result (工作清单) filed before the weekly
    # report's scheduled time.
    work_results_required: bool = False

    @model_serializer(mode="wrap")
    def _as_before_when_off(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Reports fingerprint the rules: with the option off they stay the same as before the
        option existed, so upgrading does not revise every earlier report."""
        data: dict[str, Any] = handler(self)
        if not self.work_results_required:
            data.pop("work_results_required", None)
        return data

    @field_validator("base_days", mode="before")
    @classmethod
    def _roles_by_any_name(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                Role.parse(str(key)) if isinstance(key, str) else key: v for key, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def _windows_disjoint(self) -> RuleSettings:
        if self.morning.end > self.afternoon.start:
            raise ValueError("the morning window must end before the afternoon window starts")
        missing = [role.value for role in Role if role not in self.base_days]
        if missing:
            raise ValueError(f"base_days needs a value for {', '.join(missing)}")
        return self


class HolidayOverride(_Strict):
    """Marks a date or an inclusive range as a working day or a day off, over chinese-calendar."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    date: dt.date | None = None
    from_: dt.date | None = Field(default=None, alias="from")
    to: dt.date | None = None
    workday: bool
    note: str = ""

    @model_validator(mode="after")
    def _one_form(self) -> HolidayOverride:
        if (self.date is None) == (self.from_ is None and self.to is None):
            raise ValueError("give either date, or from and to")
        if self.date is None and (self.from_ is None or self.to is None):
            raise ValueError("a range needs both from and to")
        if self.from_ is not None and self.to is not None and self.from_ > self.to:
            raise ValueError(f"from {self.from_} is after to {self.to}")
        return self

    def days(self) -> Iterable[dt.date]:
        if self.date is not None:
            return [self.date]
        assert self.from_ is not None and self.to is not None
        return date_range(self.from_, self.to)


class TerminalConfig(_Strict):
    id: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]
    village: Annotated[str, Field(min_length=1, max_length=64)]
    address: str = ""
    host: Annotated[str, Field(min_length=1)] | None = None  # required unless transport: push
    port: Annotated[int, Field(ge=1, le=65535)] = 4370
    # tcp/udp: clockd polls the terminal; push: the terminal posts to `clockd serve` (ADMS)
    transport: Literal["tcp", "udp", "push"] = "tcp"
    serial: Annotated[str, Field(min_length=1, max_length=64)]
    installed: dt.date
    comm_key_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    encoding: str = "gbk"
    record_size: Literal[8, 16, 40, 49] | None = None

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            "测试".encode(value, errors="replace")
        except LookupError as exc:
            raise ValueError(f"unknown text encoding {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _host_unless_push(self) -> TerminalConfig:
        if self.transport != "push" and self.host is None:
            raise ValueError("host is required (or set transport: push for an ADMS terminal)")
        return self

    @property
    def polled(self) -> bool:
        """Whether clockd polls this terminal; push terminals call in instead."""
        return self.transport != "push"

    @property
    def poll_endpoint(self) -> tuple[str, int, Literal["tcp", "udp"]]:
        """Host, port and transport to poll; only for polled terminals."""
        if self.host is None or self.transport == "push":
            raise UserError(f"terminal {self.id} has transport push: it is not polled")
        return self.host, self.port, self.transport

    @property
    def is_loopback(self) -> bool:
        if self.host is None:
            return False
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def comm_key(self, environ: Mapping[str, str] | None = None) -> int:
        """The numeric comm key from the named environment variable; 0 when none is configured."""
        if self.comm_key_env is None:
            return 0
        env = os.environ if environ is None else environ
        raw = env.get(self.comm_key_env)
        if raw is None:
            raise UserError(
                f"terminal {self.id}: environment variable {self.comm_key_env} "
                "(its comm key) is not set"
            )
        try:
            key = int(raw.strip())
        except ValueError:
            raise UserError(
                f"terminal {self.id}: {self.comm_key_env} must hold a numeric comm key"
            ) from None
        if not 0 <= key <= 0xFFFFFFFF:
            raise UserError(f"terminal {self.id}: {self.comm_key_env} is out of range")
        return key


EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


def _secret(env_name: str, what: str, environ: Mapping[str, str] | None) -> str:
    """A secret from the environment variable named in devices.yaml, never from the file."""
    env = os.environ if environ is None else environ
    value = (env.get(env_name) or "").strip()
    if not value:
        raise UserError(f"environment variable {env_name} ({what}) is not set")
    return value


class WebhookChannel(_Strict):
    """A group robot (WeCom, DingTalk) or any HTTP endpoint taking JSON; see docs/alerts.md."""

    kind: Literal["webhook"]
    name: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    format: Literal["wecom", "dingtalk", "json"] = "json"
    url_env: EnvName
    # DingTalk robots with 加签 security: the SEC... secret, also from the environment.
    secret_env: EnvName | None = None

    @property
    def key(self) -> str:
        """How the outbox and the log name this channel (never the secret URL)."""
        return self.name or self.url_env

    def url(self, environ: Mapping[str, str] | None = None) -> str:
        return _secret(self.url_env, f"the {self.key} webhook URL", environ)

    def secret(self, environ: Mapping[str, str] | None = None) -> str | None:
        if self.secret_env is None:
            return None
        return _secret(self.secret_env, f"the {self.key} signing secret", environ)


class EmailChannel(_Strict):
    """Mail via SMTP: an smtp:// (STARTTLS) or smtps:// (TLS) URL from the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["email"]
    name: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    smtp_url_env: EnvName
    from_: Annotated[str, Field(alias="from", pattern=r"^[^@\s<>]+@[^@\s<>]+$")]
    to: Annotated[
        list[Annotated[str, Field(pattern=r"^[^@\s<>,]+@[^@\s<>,]+$")]], Field(min_length=1)
    ]
    ca_file: Path | None = None  # a private CA for the mail server's certificate

    @property
    def key(self) -> str:
        return self.name or self.smtp_url_env

    def smtp_url(self, environ: Mapping[str, str] | None = None) -> str:
        return _secret(self.smtp_url_env, f"the {self.key} SMTP URL", environ)


NotifyChannel = Annotated[WebhookChannel | EmailChannel, Field(discriminator="kind")]


class ReminderSchedule(_Strict):
    weekday: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "thu"
    time: ClockTime = dt.time(17, 0)


class NotifySettings(_Strict):
    """Alerts and reminders (docs/alerts.md). Without channels nothing is watched or sent."""

    channels: list[NotifyChannel] = []
    stale_hours: Annotated[float, Field(gt=0, le=24 * 90)] = 24
    # Default: poll.capacity_warn_percent.
    capacity_warn_percent: Annotated[int, Field(ge=1, le=100)] | None = None
    reminder: ReminderSchedule | None = ReminderSchedule()
    timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10
    retry_backoff_seconds: Annotated[float, Field(gt=0, le=3600)] = 30
    retry_max_seconds: Annotated[float, Field(gt=0, le=24 * 3600)] = 3600
    give_up_hours: Annotated[float, Field(gt=0, le=24 * 90)] = 72

    @model_validator(mode="after")
    def _unique_channels(self) -> NotifySettings:
        seen: dict[str, int] = {}
        for index, channel in enumerate(self.channels):
            if channel.key in seen:
                raise ValueError(
                    f"channels[{index}] has the same name as channels[{seen[channel.key]}] "
                    f"({channel.key}); give one of them a distinct `name`"
                )
            seen[channel.key] = index
        return self


def _listen_address(value: Any) -> Any:
    """`host:port` with a port; IPv6 hosts in brackets (`[::]:8081`)."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})\s*", value)
        if not match or not 1 <= int(match.group(2)) <= 65535:
            raise ValueError(f"{value!r} is not host:port (e.g. 0.0.0.0:8081)")
        return value.strip()
    return value


ListenAddress = Annotated[str, BeforeValidator(_listen_address)]


def split_listen(address: str) -> tuple[str, int]:
    """`0.0.0.0:8081` -> ("0.0.0.0", 8081); `[::]:8081` -> ("::", 8081)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class PushSettings(_Strict):
    """The ADMS push receiver of `clockd serve` (docs/protocol.md)."""

    listen: ListenAddress = "0.0.0.0:8081"
    max_body_bytes: Annotated[int, Field(ge=4096, le=64 * 1024 * 1024)] = 2 * 1024 * 1024
    body_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0
    contact_flush_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    heartbeat_seconds: Annotated[int, Field(ge=1, le=3600)] = 5  # the `Delay` option sent
    error_delay_seconds: Annotated[int, Field(ge=1, le=3600)] = 30  # `ErrorDelay`: retry after


class ReportLook(_Strict):
    """How the workbooks and the notice print. One font family serves Chinese and digits; the
    default is on every Chinese Windows, and is replaced by a Chinese sans face where absent
    (LibreOffice on Linux: docs/reports.md)."""

    font: Annotated[str, Field(min_length=1, max_length=64)] = "微软雅黑"


class NoticeSettings(_Strict):
    """The printable monthly notice (通报): its document number, addressees and issuer.

    `number_format` may use {year}, {month} and {seq} (the month's number unless
    `first_seq` shifts it: seq = first_seq + month - 1)."""

    number_format: Annotated[str, Field(min_length=1, max_length=64)] = "考勤通〔{year}〕{seq}号"
    first_seq: Annotated[int, Field(ge=1, le=9999)] = 1
    addressees: Annotated[str, Field(min_length=1, max_length=200)] = "各村（社区），镇直各单位："
    issuer: Annotated[str, Field(max_length=100)] | None = None  # default: <township>人民政府

    @field_validator("number_format")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        try:
            value.format(year=2026, month=11, seq=11)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"bad number_format {value!r}: use only {{year}}, {{month}} and {{seq}} ({exc})"
            ) from None
        return value


class Settings(_Strict):
    township: Annotated[str, Field(min_length=1)]
    timezone: str = "Asia/Shanghai"
    database_url: str = DEFAULT_DATABASE_URL
    reports_dir: Path = Path("reports")
    roster: Path
    poll: PollSettings = PollSettings()
    push: PushSettings = PushSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    rules: RuleSettings = RuleSettings()
    holidays: list[HolidayOverride] = []
    web: WebSettings = WebSettings()
    leave: LeaveSettings = LeaveSettings()
    terminals: Annotated[list[TerminalConfig], Field(min_length=1)]
    notify: NotifySettings = NotifySettings()
    report: ReportLook = ReportLook()
    notice: NoticeSettings = NoticeSettings()
    retention: RetentionSettings = RetentionSettings()

    # Where the file was read from; relative input paths (the roster) resolve against it.
    config_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Shanghai)") from None
        return value

    @model_validator(mode="after")
    def _unique_terminals(self) -> Settings:
        problems: list[str] = []
        for label, key in (
            ("id", lambda t: t.id),
            ("serial", lambda t: t.serial),
            ("host/port/transport", lambda t: (t.host, t.port, t.transport)),
        ):
            seen: dict[object, int] = {}
            for index, terminal in enumerate(self.terminals):
                if label == "host/port/transport" and not terminal.polled:
                    continue
                value = key(terminal)
                if value in seen:
                    problems.append(
                        f"terminals[{index}] repeats the {label} of terminals[{seen[value]}]"
                    )
                else:
                    seen[value] = index
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def roster_path(self) -> Path:
        return self.roster if self.roster.is_absolute() else self.config_dir / self.roster

    def terminal(self, terminal_id: str) -> TerminalConfig:
        for terminal in self.terminals:
            if terminal.id == terminal_id:
                return terminal
        known = ", ".join(t.id for t in self.terminals)
        raise UserError(f"no terminal {terminal_id!r} in the configuration (known: {known})")

    def holiday_overrides(self) -> dict[dt.date, bool]:
        return {day: rule.workday for rule in self.holidays for day in rule.days()}


def config_path(explicit: Path | None) -> Path:
    """--config, else $CLOCKD_CONFIG, else ./devices.yaml."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(ENV_CONFIG)
    return Path(from_env) if from_env else DEFAULT_CONFIG


CONFIG_LIMIT = 1_000_000  # bytes; a devices.yaml for a whole county is a few dozen KB


def read_input_file(path: Path, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most `limit` bytes, or one readable error.

    Devices (/dev/zero), folders and oversized files are refused before anything is read, and
    no more than `limit` bytes are ever read, whatever the file claims.
    """
    import stat

    try:
        with path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise InputError(f"{path}: not a regular file")
            chunks: list[bytes] = []
            size = 0
            while size <= limit and (chunk := handle.read(min(1 << 20, limit + 1 - size))):
                chunks.append(chunk)
                size += len(chunk)
            data = b"".join(chunks)
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a {what}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise InputError(f"{path}: larger than {limit // 1_000_000} MB, not a {what}")
    return data


def utf8_text(path: Path, data: bytes) -> str:
    """UTF-8 (a byte-order mark allowed); anything else is one problem naming the line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            str(path), [f"line {line}: not UTF-8 text (save the file as UTF-8)"]
        ) from None


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate devices.yaml, applying the CLOCKD_* environment overrides."""
    env = os.environ if environ is None else environ
    try:
        data_bytes = read_input_file(path, CONFIG_LIMIT, "configuration file")
    except InputError:
        raise
    except UserError:
        raise UserError(
            f"{path}: configuration file not found (run `clockd init` to write a sample, "
            f"or pass --config)"
        ) from None
    # A district's file is tens of thousands of YAML nodes, none in a reference cycle: the
    # cyclic collector's scans of them took as long as the parse.
    with gc_paused():
        data, root = read_yaml(utf8_text(path, data_bytes), str(path))
    if not isinstance(data, dict):
        raise ConfigError(str(path), ["the file must be a mapping of settings (key: value)"])
    if env.get(ENV_DATABASE_URL):
        data["database_url"] = env[ENV_DATABASE_URL]
    if env.get(ENV_REPORTS_DIR):
        data["reports_dir"] = env[ENV_REPORTS_DIR]
    data["config_dir"] = path.resolve().parent
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(path), describe_errors(exc, root)) from None


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader without YAML 1.1's base-60 numbers (`12:00` is not 720) and without implicit
    dates, so that a bad date such as 2025-13-01 is reported against its field by validation
    instead of aborting the parse.

    It resolves tags with a shorter path than PyYAML's own (the same answers: clockd's loader
    has no path resolvers and no wildcard implicit ones): the C parser calls back into Python
    for every node, and a district's devices.yaml has tens of thousands.
    """

    def resolve(self, kind: type[yaml.Node], value: str, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            for tag, regexp in _IMPLICIT_BY_FIRST.get(value[:1], ()):
                if regexp.match(value):
                    return tag
        return _DEFAULT_TAGS[kind]

    def descend_resolver(self, current_node: yaml.Node | None, current_index: object) -> None:
        """No path resolvers: nothing to track."""

    def ascend_resolver(self) -> None:
        """No path resolvers: nothing to track."""


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag
        not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^[-+]?(?:0|[1-9][0-9_]*|0x[0-9a-fA-F_]+|0b[01_]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


assert not _Loader.yaml_path_resolvers and None not in _Loader.yaml_implicit_resolvers
_IMPLICIT_BY_FIRST: dict[str, tuple[tuple[str, re.Pattern[str]], ...]] = {
    first: tuple(found) for first, found in _Loader.yaml_implicit_resolvers.items()
}
_DEFAULT_TAGS: dict[type[yaml.Node], str] = {
    yaml.ScalarNode: _Loader.DEFAULT_SCALAR_TAG,
    yaml.SequenceNode: _Loader.DEFAULT_SEQUENCE_TAG,
    yaml.MappingNode: _Loader.DEFAULT_MAPPING_TAG,
}


# Aliases may stand for at most this many nodes in all: a roster or config uses a handful
# (YAML merge keys), a "billion laughs" file stands for billions.
ALIAS_EXPANSION_LIMIT = 10_000


def read_yaml(text: str, source: str = "<yaml>") -> tuple[Any, yaml.Node | None]:
    """Parse YAML for clockd's files: the data plus the node tree that knows line numbers.

    Every problem is a ConfigError naming the line: bad syntax, a key repeated in one mapping
    (YAML would silently keep the last), aliases that expand beyond `ALIAS_EXPANSION_LIMIT`
    nodes (checked on the node tree, before anything is built from it), nesting too deep.
    """
    loader = _Loader(text)
    try:
        try:
            root = loader.get_single_node()
            if root is None:
                return None, None
            # Aliases need an anchor, and every anchor is written with `&`: without one no node
            # stands for more than itself, and the data is built in the pass that looks for
            # repeated keys.
            if "&" not in text:
                problems: list[str] = []
                data = _alias_free_data(loader, root, problems)
                if problems:
                    raise ConfigError(source, problems)
                return data, root
            problems = _node_problems(root)
            if problems:
                raise ConfigError(source, problems)
            return loader.construct_document(root), root
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}: " if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(source, [f"{where}not valid YAML: {problem}"]) from None
        except RecursionError:
            raise ConfigError(source, ["not valid YAML: nested too deeply"]) from None
    finally:
        loader.dispose()


def _node_problems(root: yaml.Node) -> list[str]:
    """Repeated keys and oversized alias expansion, without recursion (the tree may be deep)
    and without expanding anything (each node is visited once)."""
    problems: list[str] = []
    sizes: dict[int, int] = {}  # node id -> nodes it stands for, aliases expanded
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children = _children(node)
        if done:
            total = 1
            for child in children:
                total += sizes.get(id(child), 1)
                if total > ALIAS_EXPANSION_LIMIT * 1000:
                    break
            sizes[id(node)] = total
            continue
        if id(node) in seen:
            if id(node) not in sizes:  # an alias to a node that contains it
                return [f"line {node.start_mark.line + 1}: an alias refers to itself"]
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            problems += _repeated_keys(node)
        stack.append((node, True))
        stack.extend((child, False) for child in children)
    distinct = len(sizes)
    expanded = sizes[id(root)]
    if expanded - distinct > ALIAS_EXPANSION_LIMIT:
        problems.append(
            f"aliases expand the file to more than {ALIAS_EXPANSION_LIMIT} extra entries "
            f"(line {root.start_mark.line + 1} onwards); write the values out instead"
        )
    return problems


_STR, _SEQ, _MAP = (f"tag:yaml.org,2002:{name}" for name in ("str", "seq", "map"))


def _alias_free_data(loader: Any, node: yaml.Node, problems: list[str]) -> Any:
    """The Python value of a node tree without aliases, noting repeated keys in `problems`.

    Plain strings, lists and string-keyed mappings (a devices.yaml is almost nothing else) are
    built here, as PyYAML's safe constructor builds them, without its per-node bookkeeping (a
    district's file has tens of thousands of nodes); anything else (numbers, merge keys,
    other tags) is left to that constructor.
    """
    if isinstance(node, yaml.ScalarNode):
        return node.value if node.tag == _STR else loader.construct_object(node, deep=True)
    if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
        return [_alias_free_data(loader, item, problems) for item in node.value]
    if isinstance(node, yaml.MappingNode):
        problems += _repeated_keys(node)
        pairs = node.value
        if node.tag == _MAP and all(
            isinstance(key, yaml.ScalarNode) and key.tag == _STR for key, _ in pairs
        ):
            return {key.value: _alias_free_data(loader, value, problems) for key, value in pairs}
    stack = _children(node)  # left to PyYAML; the mappings inside are checked here
    while stack:
        inner = stack.pop()
        if isinstance(inner, yaml.MappingNode):
            problems += _repeated_keys(inner)
        stack += _children(inner)
    return loader.construct_object(node, deep=True)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _repeated_keys(node: yaml.MappingNode) -> list[str]:
    keys = [key.value for key, _value in node.value if isinstance(key, yaml.ScalarNode)]
    if len(set(keys)) == len(keys):  # the usual case, without reading any line numbers
        return []
    first: dict[str, int] = {}
    problems = []
    for key, _value in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.value == "<<":
            continue
        line = key.start_mark.line + 1
        if key.value in first:
            problems.append(f"line {line}: key {key.value!r} repeats line {first[key.value]}")
        else:
            first[key.value] = line
    return problems


def describe_errors(exc: ValidationError, root: yaml.Node | None = None) -> list[str]:
    """One line per pydantic error: `terminals[3].port (line 41): message`."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = _user_visible_loc(error["loc"])
        path = _format_loc(loc) or "(top level)"
        line = _yaml_line(root, loc) if root is not None else None
        where = f" (line {line})" if line is not None else ""
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting (misspelt?)"
        elif error["type"] == "missing":
            message = "required setting is missing"
        lines.append(f"{path}{where}: {message}")
    return lines


def _user_visible_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # pydantic adds union-branch tags such as 'literal['never']' or 'ClearWhenAbove'; users
    # never wrote those, so drop them from the path.
    return tuple(
        part
        for part in loc
        if not (
            isinstance(part, str)
            and (part.startswith(("literal[", "function-")) or part[:1].isupper())
        )
    )


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _yaml_line(root: yaml.Node, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the deepest YAML node the error path reaches."""
    node: yaml.Node = root
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key_node, value_node in node.value:
                if key_node.value == part:
                    child = value_node
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
        if child is None:
            break
        node = child
    return int(node.start_mark.line) + 1
