"""Alerts and reminders against real servers on loopback: a stand-in WeCom/DingTalk robot over
HTTP, aiosmtpd for mail, emulated terminals, SQLite files and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
import yaml
from sqlalchemy import func, insert, select

from clockd import cli, notify
from clockd.config import NotifySettings, Settings, load_settings
from clockd.domain import LeaveKind
from clockd.errors import ConfigError
from clockd.ingest.poll import Collection, store_collection
from clockd.leave import add_leave
from clockd.notify import messages, watch
from clockd.notify.dispatch import Dispatcher
from clockd.scheduler import Daemon
from clockd.sim.emulator import Faults
from clockd.store import db
from clockd.store.models import OutboxMessage, Outcome, PollRun, Source
from clockd.workcal import IsoWeek
from tests.emulated import emulated_site
from tests.notify_servers import robot, smtp_server
from tests.report_site import Site, make_site

SHANGHAI = ZoneInfo("Asia/Shanghai")
URL_ENV = "CLOCKD_TEST_ROBOT_URL"
SECRET = "robot-SECRET-key-0001"


def local(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def with_notify(settings: Settings, **notify_settings: Any) -> Settings:
    values: dict[str, Any] = {
        "channels": [{"kind": "webhook", "format": "wecom", "url_env": URL_ENV}],
        "reminder": None,
        **notify_settings,
    }
    return settings.model_copy(update={"notify": NotifySettings.model_validate(values)})


def text_of(body: dict[str, Any]) -> str:
    assert set(body) == {"msgtype", "text"} and body["msgtype"] == "text"
    assert set(body["text"]) == {"content"}
    content: str = body["text"]["content"]
    return content


def wecom(content: str) -> dict[str, Any]:
    return {"msgtype": "text", "text": {"content": content}}


def poll_until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# --- configuration -----------------------------------------------------------------------------


def test_notify_block_in_devices_yaml(tmp_path: Path) -> None:
    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}")
    config = yaml.safe_load((tmp_path / "devices.yaml").read_text(encoding="utf-8"))
    config["notify"] = {
        "stale_hours": 1.5,
        "reminder": {"weekday": "wed", "time": "9:00"},
        "channels": [
            {"kind": "webhook", "format": "dingtalk", "url_env": "DT_URL", "secret_env": "DT_SEC"},
            {"kind": "webhook", "name": "ops", "url_env": "OPS_URL"},
            {"kind": "email", "smtp_url_env": "SMTP_URL", "from": "clockd@x.cn", "to": ["a@x.cn"]},
        ],
    }
    (tmp_path / "devices.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), "utf-8")
    settings = load_settings(tmp_path / "devices.yaml", environ={})
    assert settings.notify.stale_hours == 1.5
    assert settings.notify.reminder is not None
    assert settings.notify.reminder.time == dt.time(9, 0)
    assert [c.key for c in settings.notify.channels] == ["DT_URL", "ops", "SMTP_URL"]
    assert site.settings.notify.channels == []  # without the block: nothing to send

    config["notify"]["channels"].append({"kind": "webhook", "format": "teams", "url_env": "DT_URL"})
    (tmp_path / "devices.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "devices.yaml", environ={})
    problems = "\n".join(caught.value.problems)
    assert "notify.channels[3].webhook.format" in problems or "notify.channels[3]" in problems
    config["notify"]["channels"][3]["format"] = "json"
    (tmp_path / "devices.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), "utf-8")
    with pytest.raises(ConfigError, match="same name as channels\\[0\\]"):
        load_settings(tmp_path / "devices.yaml", environ={})


def test_the_sample_devices_yaml_shows_a_working_notify_example(tmp_path: Path) -> None:
    sample = (Path(cli.__file__).parent / "data" / "devices.yaml").read_text(encoding="utf-8")
    block = [line for line in sample.splitlines() if line.startswith("# notify:")]
    assert block, "devices.yaml carries a commented-out notify: example"
    start = sample.splitlines().index(block[0])
    example = []
    for line in sample.splitlines()[start:]:
        if not line.startswith("#"):
            break
        example.append(line[2:])
    parsed = yaml.safe_load("\n".join(example))
    settings = NotifySettings.model_validate(parsed["notify"])
    assert {c.kind for c in settings.channels} == {"webhook", "email"}


# --- the robot's exact bodies; secrets --------------------------------------------------------


@pytest.mark.parametrize("fmt", ["wecom", "dingtalk", "json"])
def test_webhook_bodies(tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}")
    channel: dict[str, Any] = {"kind": "webhook", "format": fmt, "url_env": URL_ENV}
    if fmt == "dingtalk":
        channel["secret_env"] = "CLOCKD_TEST_DT_SECRET"
        monkeypatch.setenv("CLOCKD_TEST_DT_SECRET", "SEC-test-secret")
    settings = with_notify(site.settings, channels=[channel])
    with robot() as server:
        monkeypatch.setenv(URL_ENV, server.url())
        with time_machine.travel(local("2026-11-24 10:00"), tick=False):
            [result] = notify.send_test(settings)
        assert result.ok, result.detail
        [request] = server.requests
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    content = (
        "【测试镇·通知测试】\n这是一条测试消息（11月24日 10:00）：clockd 的通知渠道 "
        f"{URL_ENV} 工作正常。打卡机离线、报表为临时版或需要更正、干部下村提醒等都会发到这里。"
    )
    if fmt == "json":
        assert request.json() == {
            "event": "test",
            "key": f"test:{URL_ENV}:2026-11-24T02:00:00+00:00",
            "township": "测试镇",
            "title": "【测试镇·通知测试】",
            "text": content.split("\n", 1)[1],
        }
    else:
        assert request.json() == wecom(content)
    if fmt == "dingtalk":  # 加签: timestamp in ms and its signature in the query
        stamp = int(local("2026-11-24 10:00").timestamp() * 1000)
        assert f"&timestamp={stamp}&sign=" in request.path


def test_robot_errors_and_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}")
    settings = with_notify(site.settings)
    refusal = b'{"errcode":93000,"errmsg":"invalid webhook url"}'
    caplog.set_level(logging.INFO)
    with robot([(200, refusal)]) as server:
        monkeypatch.setenv(URL_ENV, server.url())
        [refused] = notify.send_test(settings)
    assert not refused.ok
    assert refused.detail == "robot refused the message: errcode 93000 invalid webhook url"
    # Nothing listens on the robot's port any more.
    monkeypatch.setenv(URL_ENV, server.url())
    [unreachable] = notify.send_test(settings)
    assert not unreachable.ok and "ConnectError" in unreachable.detail
    monkeypatch.delenv(URL_ENV)
    [unset] = notify.send_test(settings)
    assert unset.detail == f"environment variable {URL_ENV} (the {URL_ENV} webhook URL) is not set"
    # Through the outbox, the failure is logged and kept, the secret nowhere.
    monkeypatch.setenv(URL_ENV, server.url())
    with db.write_transaction(site.engine) as connection:
        notify.ledger_checked(connection, settings, ["t01 第 7 行被修改"])
    Dispatcher(settings, site.engine, "w1").deliver()
    with site.engine.connect() as connection:
        error = connection.scalar(select(OutboxMessage.last_error))
    assert error is not None and "ConnectError" in error
    assert "ledger_failed on CLOCKD_TEST_ROBOT_URL failed (attempt 1)" in caplog.text
    assert SECRET not in caplog.text and SECRET not in error


def test_clockd_notify_test_reports_each_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_site(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}")
    config = yaml.safe_load((tmp_path / "devices.yaml").read_text(encoding="utf-8"))
    config["notify"] = {
        "channels": [
            {"kind": "webhook", "name": "镇政府群", "format": "wecom", "url_env": URL_ENV},
            {"kind": "webhook", "name": "备用", "format": "json", "url_env": "CLOCKD_TEST_NONE"},
        ]
    }
    (tmp_path / "devices.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), "utf-8")
    monkeypatch.delenv("CLOCKD_TEST_NONE", raising=False)
    with robot() as server:
        monkeypatch.setenv(URL_ENV, server.url())
        code = cli.main(["notify", "test", "--config", str(tmp_path / "devices.yaml")])
        assert len(server.requests) == 1
    out = capsys.readouterr().out
    assert code == 1
    assert out.splitlines() == [
        "镇政府群: ok (delivered)",
        "备用: FAILED (environment variable CLOCKD_TEST_NONE (the 备用 webhook URL) is not set)",
    ]
    assert SECRET not in out


# --- mail ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["smtp", "smtps"])
def test_mail_over_starttls_and_tls(
    tmp_path: Path, scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}")
    with smtp_server(
        tmp_path, implicit_tls=scheme == "smtps", user="clockd", password="p@ss w"
    ) as box:
        settings = with_notify(
            site.settings,
            channels=[
                {
                    "kind": "email",
                    "smtp_url_env": "CLOCKD_TEST_SMTP",
                    "from": "clockd@town.example",
                    "to": ["hr@town.example", "it@town.example"],
                    "ca_file": str(box.cert),
                }
            ],
        )
        monkeypatch.setenv("CLOCKD_TEST_SMTP", f"{scheme}://clockd:p%40ss%20w@127.0.0.1:{box.port}")
        with time_machine.travel(local("2026-11-24 10:00"), tick=False):
            with db.write_transaction(site.engine) as connection:
                notify.unknown_terminal_seen(connection, settings, "ZX\x1b[2J99", "10.1.2.3")
            assert Dispatcher(settings, site.engine, "w1").deliver() == 1
        box.wait(1)
    [(sender, recipients, mail)] = box.mails
    assert box.logins == [("clockd", "p@ss w")]
    assert sender == "clockd@town.example"
    assert recipients == ["hr@town.example", "it@town.example"]
    assert mail["Subject"] == "【测试镇·发现未登记的打卡机】"
    assert mail["X-Clockd-Event"] == "unknown_terminal"
    body = mail.get_content()
    assert body.startswith(
        "序列号为 ZX\\x1b[2J99 的打卡机（来自 10.1.2.3）向本服务上传数据，"
        "但未在 devices.yaml 中登记"
    )
    assert "若是新装或更换的打卡机，请在 devices.yaml 中登记它的序列号和所在村" in body


def test_mail_refuses_a_password_without_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}")
    settings = with_notify(
        site.settings,
        channels=[
            {"kind": "email", "smtp_url_env": "CLOCKD_TEST_SMTP", "from": "a@b.c", "to": ["d@e.f"]}
        ],
    )
    monkeypatch.setenv("CLOCKD_TEST_SMTP", "smtp://u:hunter2@127.0.0.1:1?starttls=no")
    [result] = notify.send_test(settings)
    assert not result.ok
    assert "refusing to send a password without TLS" in result.detail
    assert "hunter2" not in result.detail


# --- a terminal goes quiet -----------------------------------------------------------------------


def test_a_stale_terminal_alerts_once_and_recovers_once(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.make_engine(database_url)
    db.migrate(engine)
    start = dt.datetime(2026, 11, 23, 8, 0)  # this week's punches: no report falls due
    with robot() as server, emulated_site(2, punches=20, start=start, transports=("tcp",)) as site:
        monkeypatch.setenv(URL_ENV, server.url())
        settings = with_notify(site.settings(database_url, retries=0), stale_hours=24)
        settings = settings.model_copy(update={"reports_dir": tmp_path / "reports"})

        def cycle(at: str, daemon: Daemon) -> None:
            with time_machine.travel(local(at), tick=False):
                daemon.poll()
                daemon.notifier.flush(10)

        daemon = Daemon(settings, engine, lambda: [])
        daemon.notifier.start_watching()
        cycle("2026-11-24 09:00", daemon)
        site.devices[0].faults = Faults(refuse=True)
        cycle("2026-11-24 11:00", daemon)
        cycle("2026-11-25 08:59", daemon)
        assert server.requests == []  # 23:59 without contact: not yet
        cycle("2026-11-25 10:00", daemon)
        assert len(server.requests) == 1
        cycle("2026-11-25 11:00", daemon)
        cycle("2026-11-25 12:00", Daemon(settings, engine, lambda: []))  # a restart
        assert len(server.requests) == 1
        site.devices[0].faults = Faults()
        cycle("2026-11-25 13:00", daemon)
        cycle("2026-11-25 14:00", daemon)
    engine.dispose()
    assert server.bodies() == [
        wecom(
            "【测试镇·打卡机离线】\n村01打卡机（t01）已25小时没有采集到数据（最后成功采集："
            "11月24日 09:00）。打卡记录仍保存在打卡机上，恢复后会自动补采。\n"
            "请检查村01打卡机电源和网络。"
        ),
        wecom(
            "【测试镇·打卡机恢复】\n村01打卡机（t01）已恢复采集，离线约28小时。"
            "离线期间的打卡记录已随本次采集入库，无需处理。"
        ),
    ]


def test_a_terminal_never_reached_counts_from_its_first_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}")
    settings = with_notify(site.settings, stale_hours=0.5)
    terminal = settings.terminal("t03")
    with robot() as server:
        monkeypatch.setenv(URL_ENV, server.url())
        notifier = notify.Notifier(settings, site.engine, "w1")
        for at in ("2026-11-24 09:00", "2026-11-24 09:20", "2026-11-24 09:40", "2026-11-24 10:00"):
            with time_machine.travel(local(at), tick=False):
                failed_poll(site, terminal.id)
                notifier.after_poll(lambda: site.cadres)
                notifier.flush(10)
    assert [text_of(body) for body in server.bodies()] == [
        "【测试镇·打卡机离线】\n南村打卡机（t03）自11月24日 09:00起一直连接不上，从未采集到数据。"
        "打卡记录仍保存在打卡机上，恢复后会自动补采。\n请检查南村打卡机电源和网络。"
    ]


def test_a_daemon_that_was_down_does_not_blame_the_terminals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}")
    settings = with_notify(site.settings, stale_hours=24)
    with robot() as server:
        monkeypatch.setenv(URL_ENV, server.url())
        notifier = notify.Notifier(settings, site.engine, "w1")
        with time_machine.travel(local("2026-11-20 08:00"), tick=False):
            site.poll_all(started=local("2026-11-20 08:00"))
        # clockd itself was off for two days; back, it has only reached t01 so far.
        with time_machine.travel(local("2026-11-22 09:00"), tick=False):
            site.store("t01", [], started=local("2026-11-22 09:00"))
            notifier.after_poll(lambda: site.cadres)
            notifier.flush(10)
            assert server.requests == []
            failed_poll(site, "t02")  # t02 is tried and does not answer: now it is stale
            notifier.after_poll(lambda: site.cadres)
            notifier.flush(10)
    assert [text_of(body).split("\n")[1][:2] for body in server.bodies()] == ["西村"]


def test_a_push_terminal_that_goes_quiet_alerts_once_and_recovers_when_it_calls_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody tries a push terminal, so silence alone makes it stale: no failed attempt."""
    from clockd.ingest.push import PushReceiver

    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}")
    terminals = [
        t.model_copy(update={"transport": "push"}) if t.id == "t03" else t
        for t in site.settings.terminals
    ]
    settings = with_notify(
        site.settings.model_copy(update={"terminals": terminals}), stale_hours=24
    )
    clock = [local("2026-11-24 09:00")]
    receiver = PushReceiver(settings, site.engine, now=lambda: clock[0].astimezone(dt.UTC))

    def calls_in(at: str) -> None:
        clock[0] = local(at)
        receiver.touch("SN003")
        receiver.flush_contacts()

    with robot() as server:
        monkeypatch.setenv(URL_ENV, server.url())
        notifier = notify.Notifier(settings, site.engine, "w1")

        def check(at: str) -> None:
            with time_machine.travel(local(at), tick=False):
                notifier.after_poll(lambda: site.cadres)
                notifier.flush(10)

        calls_in("2026-11-24 09:00")
        check("2026-11-25 08:59")
        assert server.requests == []  # 23:59 without a call: not yet
        check("2026-11-25 10:00")
        check("2026-11-25 11:00")
        check("2026-11-25 12:00")
        calls_in("2026-11-25 12:30")
        check("2026-11-25 12:31")
        check("2026-11-25 13:00")
    assert [text_of(body) for body in server.bodies()] == [
        "【测试镇·打卡机离线】\n南村打卡机（t03）已25小时没有采集到数据（最后成功采集："
        "11月24日 09:00）。打卡记录仍保存在打卡机上，恢复后会自动补采。\n"
        "请检查南村打卡机电源和网络。",
        "【测试镇·打卡机恢复】\n南村打卡机（t03）已恢复采集，离线约28小时。"
        "离线期间的打卡记录已随本次采集入库，无需处理。",
    ]


def failed_poll(site: Site, terminal_id: str) -> None:
    """A poll run that could not reach the terminal, recorded as the poller records one."""
    now = dt.datetime.now(dt.UTC)
    with db.write_transaction(site.engine) as connection:
        connection.execute(
            insert(PollRun).values(
                terminal_id=terminal_id,
                started_at=now,
                finished_at=now,
                outcome=Outcome.FAILED,
                error="connection refused",
            )
        )


def test_a_nearly_full_log_and_a_replaced_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}")
    settings = with_notify(site.settings)
    terminal = settings.terminal("t02")

    def polled(records: int, serial: str = "SN002") -> None:
        collection = Collection(
            terminal=terminal,
            serial=serial,
            source=Source.POLL,
            punches=[],
            records_on_device=records,
            record_capacity=100_000,
        )
        with db.write_transaction(site.engine) as connection:
            store_collection(
                connection,
                collection,
                now_local=dt.datetime(2026, 12, 31),
                future_tolerance=dt.timedelta(minutes=10),
                outcome=Outcome.OK if serial == "SN002" else Outcome.MISMATCH,
            )

    with robot() as server:
        monkeypatch.setenv(URL_ENV, server.url())
        notifier = notify.Notifier(settings, site.engine, "w1")
        polls = [(79_000, "SN002"), (81_000, "SN002"), (82_000, "SN002"), (82_500, "OTHER\n7")]
        for records, serial in [*polls, (82_600, "SN002"), (1_200, "SN002")]:
            polled(records, serial)
            notifier.after_poll(lambda: site.cadres)
            notifier.flush(10)
    assert [text_of(body) for body in server.bodies()] == [
        "【测试镇·打卡机存储将满】\n西村打卡机（t02）已存 81,000/100,000 条打卡记录"
        "（81%，超过80%），存满后将无法打卡。\n请在记录全部采集入库后清理西村打卡机的考勤记录，"
        "或在 devices.yaml 中设置 poll.clear_policy 由 clockd 自动清理。",
        "【测试镇·打卡机序列号不符】\n西村打卡机地址 127.0.0.1:4372 上的设备报告序列号 "
        "OTHER\\x0a7，与配置的 SN002 不符；其打卡记录暂不计入西村。\n请核实西村是否更换了"
        "打卡机；确认后在 devices.yaml 中更新该终端的 serial。",
        "【测试镇·打卡机序列号已核实】\n西村打卡机（t02）的序列号已与配置一致（SN002），无需处理。",
        "【测试镇·打卡机存储恢复正常】\n西村打卡机（t02）的记录已降至 1,200/100,000 条"
        "（1%），无需处理。",
    ]


# --- delivery: retries, restarts, several daemons --------------------------------------------


def test_a_500_then_200_is_delivered_once_even_across_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}")
    settings = with_notify(site.settings, retry_backoff_seconds=0.2)
    with robot([(500, b"busy")]) as server:
        monkeypatch.setenv(URL_ENV, server.url())
        with db.write_transaction(site.engine) as connection:
            notify.ledger_checked(connection, settings, ["t01 第 7 行被修改"])
            notify.ledger_checked(connection, settings, ["t01 第 7 行被修改"])  # still failing
        first = Dispatcher(settings, site.engine, "before-restart")
        assert first.deliver() == 0
        assert first.deliver() == 0  # not due again before the backoff
        restarted = Dispatcher(settings, site.engine, "after-restart")
        poll_until(lambda: restarted.deliver() == 1, 5, "the retry")
        assert restarted.deliver() == 0
        assert first.deliver() == 0
    assert len(server.requests) == 2
    assert server.requests[0].body == server.requests[1].body
    with site.engine.connect() as connection:
        [row] = connection.execute(select(OutboxMessage)).all()
    assert row.attempts == 2 and row.sent_at is not None and row.last_error is None
    assert text_of(server.bodies()[1]).startswith(
        "【测试镇·打卡数据校验失败】\n打卡数据防篡改校验发现 1 处异常：\nt01 第 7 行被修改\n"
        "请立即核查数据库是否被人为修改"
    )


def test_a_dead_channel_does_not_hold_up_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}")
    with robot() as server:
        settings = with_notify(
            site.settings,
            timeout_seconds=0.5,
            channels=[
                {"kind": "webhook", "name": "dead", "url_env": "CLOCKD_TEST_DEAD"},
                {"kind": "webhook", "name": "live", "format": "wecom", "url_env": URL_ENV},
            ],
        )
        # A server that accepts and never answers.
        with socket.create_server(("127.0.0.1", 0)) as silent:
            monkeypatch.setenv("CLOCKD_TEST_DEAD", f"http://127.0.0.1:{silent.getsockname()[1]}/x")
            monkeypatch.setenv(URL_ENV, server.url())
            with db.write_transaction(site.engine) as connection:
                for number in range(5):
                    notify.unknown_terminal_seen(connection, settings, f"SN-NEW-{number}")
            began = time.monotonic()
            assert Dispatcher(settings, site.engine, "w1").deliver() == 5
            elapsed = time.monotonic() - began
    assert len(server.requests) == 5
    assert elapsed < 3, f"one timeout per round, not per message ({elapsed:.1f}s)"


@pytest.mark.postgres
def test_two_daemons_on_postgresql_send_one_message(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(tmp_path, pg_url)
    settings = with_notify(site.settings, stale_hours=24)
    with time_machine.travel(local("2026-11-20 08:00"), tick=False):
        site.poll_all(started=local("2026-11-20 08:00"))
    with robot() as server:
        monkeypatch.setenv(URL_ENV, server.url())
        for round_at in ("2026-11-21 10:00", "2026-11-21 10:30", "2026-11-21 11:00"):
            with time_machine.travel(local(round_at), tick=False):
                site.store("t01", [], started=local(round_at))
                failed_poll(site, "t02")
                failed_poll(site, "t03")
                engines = [db.make_engine(pg_url) for _ in range(2)]
                notifiers = [
                    notify.Notifier(settings, engine, f"daemon-{n}")
                    for n, engine in enumerate(engines)
                ]
                barrier = threading.Barrier(2)

                def run(notifier: notify.Notifier, barrier: threading.Barrier = barrier) -> None:
                    barrier.wait()
                    notifier.after_poll(lambda: site.cadres)
                    barrier.wait()
                    notifier.flush(10)

                threads = [threading.Thread(target=run, args=(n,)) for n in notifiers]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(30)
                for engine in engines:
                    engine.dispose()
    villages = sorted(text_of(body).split("\n")[1][:2] for body in server.bodies())
    assert villages == ["南村", "西村"]  # t02 and t03 went stale, each announced once


# --- reports ----------------------------------------------------------------------------------


def test_provisional_final_and_revised_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", installed="2026-11-16")
    settings = with_notify(site.settings)
    site.settings = settings
    with robot() as server:
        monkeypatch.setenv(URL_ENV, server.url())
        daemon = Daemon(settings, site.engine, lambda: site.cadres)
        daemon.notifier.start_watching()
        monday = local("2026-11-23 09:00")
        with time_machine.travel(monday, tick=False):
            site.store("t01", [("1001", "2026-11-16 09:00"), ("1001", "2026-11-16 15:00")])
            assert daemon.reports() == ["weekly 2026-W47"]
            daemon.notifier.flush(10)
        with time_machine.travel(local("2026-11-23 10:00"), tick=False):
            site.poll_all(started=local("2026-11-23 10:00"))
            daemon.reports()
            daemon.notifier.flush(10)
        with time_machine.travel(local("2026-11-24 10:00"), tick=False):
            # The village's terminal had more: a second valid day for 1001.
            site.store(
                "t02",
                [("1001", "2026-11-18 09:00"), ("1001", "2026-11-18 15:00")],
                started=local("2026-11-24 10:00"),
            )
            daemon.reports()
            daemon.notifier.flush(10)
            daemon.reports()
            daemon.notifier.flush(10)
    week = "2026年第47周（11月16日—11月22日）周报"
    assert [text_of(body) for body in server.bodies()] == [
        f"【测试镇·报表为临时版】\n{week}已按时生成，但西村、南村的打卡机在本期结束后还没有采集成功，"
        "报表暂为临时版。\n请检查西村、南村打卡机电源和网络；数据采齐后 clockd 会自动生成正式版。",
        f"【测试镇·报表已转为正式版】\n{week}的数据已采齐，已生成正式版，无需处理。",
        f"【测试镇·报表更正】\n{week}收到迟到的打卡数据，已生成更正版（第 2 次修订）。"
        "扣款合计由 400 元变为 300 元（减少 100 元）。\n请以更正版为准，更正说明见报表；"
        "原文件已移至 history/ 文件夹。",
    ]


def test_a_provisional_report_corrected_by_late_data_says_so_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", installed="2026-11-16")
    settings = with_notify(site.settings)
    with robot() as server:
        monkeypatch.setenv(URL_ENV, server.url())
        daemon = Daemon(settings, site.engine, lambda: site.cadres)
        daemon.notifier.start_watching()
        with time_machine.travel(local("2026-11-23 09:00"), tick=False):
            site.store("t01", [("1001", "2026-11-16 09:00"), ("1001", "2026-11-16 15:00")])
            daemon.reports()
        with time_machine.travel(local("2026-11-23 11:00"), tick=False):
            late = [("1001", "2026-11-18 09:00"), ("1001", "2026-11-18 15:00")]
            site.store("t02", late, started=local("2026-11-23 11:00"))
            site.store("t03", [], started=local("2026-11-23 11:00"))
            daemon.reports()
            daemon.notifier.flush(10)
    titles = [text_of(body).split("\n")[0] for body in server.bodies()]
    assert titles == ["【测试镇·报表为临时版】", "【测试镇·报表更正】"]


# --- the Thursday reminder ------------------------------------------------------------------------


def test_the_thursday_reminder_lists_exactly_the_cadres_behind(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(tmp_path, database_url, installed="2026-11-01")
    settings = with_notify(site.settings, reminder={"weekday": "thu", "time": "17:00"})
    # W47: 1001 (机关, 2 days) has two valid days; 1002 (驻村, 3 days) one; 1003 is active from
    # Wednesday (still 2 days required) with a half day; 1004 is on leave Monday to Thursday,
    # so only Friday is available and 1 day is required.
    site.store(
        "t01",
        [
            ("1001", "2026-11-16 09:00"), ("1001", "2026-11-16 15:00"),
            ("1001", "2026-11-17 08:00"), ("1001", "2026-11-17 16:00"),
            ("1002", "2026-11-18 09:30"), ("1002", "2026-11-18 14:00"),
            ("1003", "2026-11-19 09:00"),
        ],
        started=local("2026-11-19 16:00"),
    )  # fmt: skip
    add_leave(site.engine, site.cadres, "1004", dt.date(2026, 11, 16), dt.date(2026, 11, 19),
              kind=LeaveKind.LEAVE, actor="hr")  # fmt: skip
    with robot() as server:
        monkeypatch.setenv(URL_ENV, server.url())
        for at, notifier_id in [
            ("2026-11-19 16:59", "a"),
            ("2026-11-19 17:00", "a"),
            ("2026-11-19 17:30", "a"),
            ("2026-11-20 09:00", "restarted"),
            ("2026-11-26 16:00", "restarted"),
        ]:
            with time_machine.travel(local(at), tick=False):
                notifier = notify.Notifier(settings, site.engine, notifier_id)
                notifier.after_poll(lambda: site.cadres)
                notifier.flush(10)
    assert server.bodies() == [
        wecom(
            "【测试镇·下村提醒】\n本周（11月16日—11月22日）截至周四 17:00，以下 3 名干部下村天数"
            "尚未达到本周要求（按工号排列）：\n"
            "1002 李四 还需 2 天\n"
            "1003 王五 还需 2 天\n"
            '1004 =HYPERLINK("http://x","y") 还需 1 天\n'
            "请相关干部合理安排本周剩余时间下村，并在上午、下午各打卡一次。"
        )
    ]
    with site.engine.connect() as connection:
        behind = watch.cadres_behind(connection, settings, site.cadres, IsoWeek.parse("2026-W47"))
    assert [(b.user_id, b.days_needed) for b in behind] == [("1002", 2), ("1003", 2), ("1004", 1)]


# --- the database itself -----------------------------------------------------------------------


def test_database_loss_is_announced_after_a_second_failed_cycle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}")
    settings = with_notify(site.settings)
    with robot() as server:
        monkeypatch.setenv(URL_ENV, server.url())
        notifier = notify.Notifier(settings, site.engine, "w1")
        with time_machine.travel(local("2026-11-24 09:00"), tick=False):
            notifier.database_unreachable("connection refused")
            notifier.flush(5)
            assert server.requests == []  # one failed cycle may be a blip
        with time_machine.travel(local("2026-11-24 09:30"), tick=False):
            notifier.database_unreachable("connection refused")
            notifier.flush(5)
        with time_machine.travel(local("2026-11-24 10:00"), tick=False):
            notifier.database_unreachable("connection refused")
            notifier.flush(5)
        with time_machine.travel(local("2026-11-24 12:00"), tick=False):
            notifier.database_reachable()
            notifier.flush(5)
            notifier.database_reachable()
            notifier.flush(5)
    [down, back] = [text_of(body) for body in server.bodies()]
    assert down.startswith("【测试镇·数据库无法连接】\nclockd（")
    assert "）自11月24日 09:00起已连续 2 个采集周期无法连接数据库（connection refused）" in down
    assert down.endswith("请检查数据库服务、服务器磁盘空间和网络。")
    assert back.startswith("【测试镇·数据库已恢复】\nclockd（")
    assert back.endswith(
        "）已恢复连接数据库（中断约3小时），打卡数据将在本周期内补采入库，无需处理。"
    )


def test_long_messages_fit_a_robot(tmp_path: Path) -> None:
    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}")
    behind = [messages.Behind(str(1000 + n), f"干部{n:03d}", 2) for n in range(200)]
    week = IsoWeek.parse("2026-W47")
    message = messages.reminder(site.settings, "k", week, local("2026-11-19 17:00"), behind)
    assert len(message.text.encode()) <= 2000
    assert message.text.endswith("……（内容过长，其余略）")
    assert "1000 干部000 还需 2 天" in message.text


# --- cron: `clockd run --once` -----------------------------------------------------------------


def test_run_once_under_cron_alerts_once_and_recovers_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'clockd.sqlite3'}"
    monday = IsoWeek.containing(dt.datetime.now(SHANGHAI).date()).start
    start = dt.datetime.combine(monday, dt.time(0, 5))  # this week: no report falls due
    with robot() as server, emulated_site(1, punches=5, start=start, transports=("tcp",)) as site:
        site.devices[0].faults = Faults(refuse=True)
        config = site.write_config(tmp_path, url, retries=0, timeout_seconds=2)
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        data["notify"] = {
            "stale_hours": 0.0002,  # under a second, so cron runs a moment apart see it
            "reminder": None,
            "channels": [{"kind": "webhook", "format": "wecom", "url_env": URL_ENV}],
        }
        config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        engine = db.make_engine(url)
        db.migrate(engine)
        engine.dispose()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CLOCKD_")}
        environ[URL_ENV] = server.url()

        def run_once() -> subprocess.CompletedProcess[str]:
            began = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "clockd", "--config", str(config), "run", "--once"],
                env=environ,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert "Traceback" not in done.stderr, done.stderr
            assert SECRET not in done.stderr
            poll_until(lambda: time.monotonic() - began > 1, 2, "the threshold to pass")
            return done

        assert run_once().returncode == 1  # the terminal refuses
        assert run_once().returncode == 1
        assert run_once().returncode == 1
        assert len(server.requests) == 1
        site.devices[0].faults = Faults()
        assert run_once().returncode == 0
        # A punch edited behind clockd's back: the first run of the next day's check slot (the
        # slot recorded as checked is moved back a day, as if that day had come) alerts.
        engine = db.make_engine(url)
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE punches SET user_id = '9999' WHERE id = 1")
            connection.exec_driver_sql(
                "UPDATE alert_state SET position = position - 1 WHERE key = 'cursor:ledger_check'"
            )
        engine.dispose()
        # Checked once a slot: test_run_once_checks_the_ledger_once_per_daily_slot.
        assert run_once().returncode == 0
    [down, back, ledger] = [text_of(body) for body in server.bodies()]
    assert ledger.startswith("【测试镇·打卡数据校验失败】") and "t01" in ledger
    assert down.startswith("【测试镇·打卡机离线】\n村01打卡机（t01）自")
    assert down.endswith(
        "起一直连接不上，从未采集到数据。打卡记录仍保存在打卡机上，恢复后会自动补采。\n"
        "请检查村01打卡机电源和网络。"
    )
    assert back.startswith("【测试镇·打卡机恢复】\n村01打卡机（t01）已恢复采集")


@pytest.mark.postgres
@pytest.mark.slow
def test_two_clockd_run_processes_on_postgresql_send_each_alert_once(
    tmp_path: Path, pg_url: str
) -> None:
    engine = db.make_engine(pg_url)
    db.migrate(engine)
    monday = IsoWeek.containing(dt.datetime.now(SHANGHAI).date()).start
    start = dt.datetime.combine(monday, dt.time(0, 5))
    with robot() as server, emulated_site(2, punches=5, start=start, transports=("tcp",)) as site:
        site.devices[0].faults = Faults(refuse=True)
        config = site.write_config(
            tmp_path, pg_url, interval_minutes=0.02, retries=0, timeout_seconds=2
        )
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        data["notify"] = {
            "stale_hours": 0.0005,  # 1.8 s: a few of the 1.2 s cycles
            "reminder": None,
            "retry_backoff_seconds": 0.5,
            "channels": [{"kind": "webhook", "format": "wecom", "url_env": URL_ENV}],
        }
        config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CLOCKD_")}
        environ[URL_ENV] = server.url()

        def runs() -> int:
            with engine.connect() as connection:
                return int(connection.scalar(select(func.count()).select_from(PollRun)) or 0)

        def more_cycles(count: int) -> None:
            target = runs() + 2 * count  # two terminals a cycle
            poll_until(lambda: runs() >= target, 60, f"{count} more poll cycles")

        daemons = [
            subprocess.Popen(
                [sys.executable, "-m", "clockd", "--config", str(config), "run"],
                env=environ,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        try:
            poll_until(lambda: len(server.requests) >= 1, 60, "the stale alert")
            more_cycles(4)
            assert len(server.requests) == 1
            site.devices[0].faults = Faults()
            poll_until(lambda: len(server.requests) >= 2, 60, "the recovery")
            more_cycles(4)
        finally:
            errors = []
            for daemon in daemons:
                daemon.send_signal(signal.SIGTERM)
                errors.append(daemon.communicate(timeout=30)[1])
    engine.dispose()
    assert all("Traceback" not in err and SECRET not in err for err in errors), errors
    assert [text_of(body)[:15] for body in server.bodies()] == [
        "【测试镇·打卡机离线】\n村01",
        "【测试镇·打卡机恢复】\n村01",
    ]


# --- the integrity ledger and unknown push terminals -------------------------------------------


def test_a_broken_ledger_alerts_once_and_again_when_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's ledger check (at start and daily) speaks up when rows were changed behind
    clockd's back, not again while they stay changed, and once more when they are put back."""
    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}")
    settings = with_notify(site.settings)
    site.store("t01", [("1001", "2026-11-16 09:00"), ("1001", "2026-11-16 15:00")])
    with robot() as server:
        monkeypatch.setenv(URL_ENV, server.url())
        daemon = Daemon(settings, site.engine, lambda: site.cadres)
        result = daemon.check_ledger()
        assert result is not None and result.ok
        moved = "UPDATE punches SET punched_at = ? WHERE user_id = '1001' AND punched_at = ?"
        nine, eight = "2026-11-16 09:00:00.000000", "2026-11-16 08:00:00.000000"
        with site.engine.begin() as connection:
            connection.exec_driver_sql(moved, (eight, nine))
        for _ in range(2):  # the daily check again: still broken, no second alert
            result = daemon.check_ledger()
            assert result is not None and not result.ok
            daemon.notifier.flush(10)
        with site.engine.begin() as connection:
            connection.exec_driver_sql(moved, (nine, eight))
        result = daemon.check_ledger()
        assert result is not None and result.ok
        daemon.notifier.flush(10)
    texts = [text_of(body) for body in server.bodies()]
    assert len(texts) == 2, texts
    assert texts[0].startswith("【测试镇·打卡数据校验失败】\n打卡数据防篡改校验发现 1 处异常：")
    assert "t01" in texts[0] and "clockd verify" in texts[0]
    assert (
        texts[1] == "【测试镇·打卡数据校验恢复正常】\n打卡数据防篡改校验已恢复正常，全部记录完整。"
    )


def test_run_once_checks_the_ledger_once_per_daily_slot(tmp_path: Path) -> None:
    """Cron has no scheduler: each `run --once` asks whether the daily check time
    (schedule.ledger_check, 03:30 by default) has passed since the last check."""
    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}")
    site.store("t01", [("1001", "2026-11-16 09:00"), ("1001", "2026-11-16 15:00")])
    now = [dt.datetime(2026, 11, 17, 2, 0, tzinfo=SHANGHAI)]
    daemon = Daemon(site.settings, site.engine, lambda: site.cadres, clock=lambda: now[0])
    other = Daemon(site.settings, site.engine, lambda: site.cadres, clock=lambda: now[0])

    def checked_at(hour: int, minute: int, day: int = 17) -> list[bool | None]:
        now[0] = dt.datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI)
        results = [daemon.check_ledger_if_due(), other.check_ledger_if_due()]
        return [None if result is None else result.ok for result in results]

    assert checked_at(2, 0) == [True, None]  # never checked: at once, by one run only
    assert checked_at(2, 30) == [None, None]
    with site.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE punches SET user_id = '1002' WHERE user_id = '1001'")
    assert checked_at(3, 29) == [None, None]  # the 16th's slot was checked already
    assert checked_at(3, 30) == [False, None]  # the 17th's slot has come
    assert checked_at(23, 59) == [None, None]
    assert checked_at(9, 0, day=19) == [False, None]  # a day without runs: one check, not two


def test_an_unknown_push_terminal_alerts_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clockd.ingest.push import PushReceiver

    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}")
    settings = with_notify(site.settings)
    receiver = PushReceiver(settings, site.engine)
    batch = b"1001\t2026-11-16 08:00:00\t0\t1\t0\n1002\t2026-11-16 08:01:00\t0\t1\t0\n"
    with robot() as server:
        monkeypatch.setenv(URL_ENV, server.url())
        for _ in range(2):  # the terminal posts again: still one alert
            receiver.store_attlog("ZZX0000000999", batch)
        assert Dispatcher(settings, site.engine, "w1").deliver() == 1
    texts = [text_of(body) for body in server.bodies()]
    assert len(texts) == 1 and texts[0].startswith("【测试镇·发现未登记的打卡机】")
    assert "ZZX0000000999" in texts[0] and "devices.yaml" in texts[0]


def test_clockd_serve_sends_the_alert_for_an_unknown_push_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`clockd serve` alone (no `clockd run` beside it) delivers what its receiver raised."""
    import httpx

    from tests.push_site import config_data, free_port, serve_process, write_config

    port = free_port()
    data = config_data(f"sqlite:///{tmp_path / 'c.sqlite3'}", port)
    data["notify"] = {"channels": [{"kind": "webhook", "format": "wecom", "url_env": URL_ENV}]}
    config = write_config(tmp_path, data)
    assert cli.main(["--config", str(config), "init"]) == 0
    with robot() as server:
        monkeypatch.setenv(URL_ENV, server.url())
        with serve_process(config):
            reply = httpx.post(
                f"http://127.0.0.1:{port}/iclock/cdata",
                params={"SN": "ZZX0000000777", "table": "ATTLOG", "Stamp": "1"},
                content=b"1001\t2026-11-16 08:00:00\t0\t1\t0\n",
                timeout=10,
            )
            assert reply.text == "OK: 1\n"
            poll_until(lambda: len(server.bodies()) >= 1, 20, "the alert")
    [body] = server.bodies()
    assert "ZZX0000000777" in text_of(body) and "发现未登记的打卡机" in text_of(body)
