"""The command line. Thin: parse, call one library function, print the result."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from collections.abc import Callable, Sequence
from functools import cached_property
from importlib import resources
from pathlib import Path

from sqlalchemy import Engine

from clockd import __version__
from clockd.config import Settings, config_path, load_settings
from clockd.domain import Cadre
from clockd.errors import ConfigError, UserError
from clockd.logs import setup_logging
from clockd.roster import load_roster
from clockd.store import db
from clockd.store.cadres import sync_cadres
from clockd.store.status import terminal_statuses
from clockd.textui import render_table

log = logging.getLogger("clockd")


class Context:
    """What a command needs, loaded on first use so that a bad file fails before any write."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.config_file = config_path(getattr(args, "config", None))

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_file)

    @cached_property
    def roster(self) -> list[Cadre]:
        villages = {t.village for t in self.settings.terminals}
        return load_roster(self.settings.roster_path, villages)

    @cached_property
    def engine(self) -> Engine:
        return db.make_engine(self.settings.database_url)

    def ready_engine(self) -> Engine:
        """The engine, after checking that `clockd init` has brought the schema up to date."""
        db.require_current_schema(self.engine)
        return self.engine


# --- commands ---------------------------------------------------------------------------------


def cmd_init(ctx: Context) -> int:
    path = ctx.config_file
    if not path.exists():
        _write_sample(path, "devices.yaml")
        print(f"wrote a sample configuration to {path}; edit it for your terminals")
    settings = ctx.settings
    if not settings.roster_path.exists():
        _write_sample(settings.roster_path, "roster.csv")
        print(f"wrote a sample roster to {settings.roster_path}")
    cadres = ctx.roster
    before, after = db.migrate(ctx.engine)
    with db.write_transaction(ctx.engine) as connection:
        sync_cadres(connection, cadres)
    where = db.describe(ctx.engine)
    if before is None:
        print(f"created database {where} (schema {after})")
    elif before != after:
        print(f"migrated database {where} from schema {before} to {after}")
    else:
        print(f"database {where} is up to date (schema {after})")
    print(f"roster: {len(cadres)} cadres from {settings.roster_path}")
    return 0


def _write_sample(target: Path, name: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    sample = resources.files("clockd").joinpath("data", name).read_bytes()
    with target.open("xb") as handle:  # never overwrite a user's file
        handle.write(sample)


def cmd_devices(ctx: Context) -> int:
    settings = ctx.settings
    engine = ctx.ready_engine()
    with engine.connect() as connection:
        statuses = terminal_statuses(connection, settings.terminals)
    zone = settings.zone
    rows = []
    for status in statuses:
        serial = status.configured_serial
        if status.serial_mismatch:
            serial += f" (device says {status.reported_serial}!)"
        capacity = ""
        if status.records_on_device is not None:
            capacity = f"{status.records_on_device}/{status.record_capacity or '?'}"
            percent = status.capacity_percent
            if percent is not None:
                warn = " FULL SOON" if percent > settings.poll.capacity_warn_percent else ""
                capacity += f" ({percent:.0f}%{warn})"
        drift = "" if status.drift_seconds is None else f"{round(status.drift_seconds):+d}s"
        last_good = (
            status.last_success.astimezone(zone).strftime("%Y-%m-%d %H:%M")
            if status.last_success
            else "never"
        )
        error = status.last_error if status.last_outcome not in (None, "ok") else ""
        rows.append(
            [status.terminal_id, status.village, serial, last_good, capacity, drift, error or ""]
        )
    print(
        render_table(
            [
                "terminal",
                "village",
                "serial",
                "last good poll",
                "records/capacity",
                "drift",
                "last error",
            ],
            rows,
        )
    )
    return 0


def cmd_poll(ctx: Context) -> int:
    from clockd.ingest import poll_cycle

    settings = ctx.settings
    terminals = [settings.terminal(ctx.args.device)] if ctx.args.device else None
    engine = ctx.ready_engine()
    with db.write_transaction(engine) as connection:
        sync_cadres(connection, ctx.roster)
    outcomes = poll_cycle(
        settings, engine, terminals, on_outcome=lambda outcome: print(outcome.line(), flush=True)
    )
    return 0 if all(outcome.ok for outcome in outcomes) else 1


def cmd_simulate(ctx: Context) -> int:
    from clockd import simulate

    settings = ctx.settings
    cadres = ctx.roster
    terminals = simulate.emulated_terminals(settings)
    if ctx.args.punches is not None:
        punches = simulate.read_punch_csv(ctx.args.punches, [t.id for t in terminals])
    else:
        today = dt.datetime.now(settings.zone).date()
        punches = simulate.synthetic_punches(
            settings, cadres, terminals, ctx.args.weeks, ctx.args.seed, today
        )
    town = simulate.build_town(settings, cadres, punches)
    print(
        f"serving {len(town.devices)} emulated terminals ({len(cadres)} cadres enrolled, "
        f"{town.punches} punches) until SIGTERM",
        file=sys.stderr,
    )
    try:
        town.server.run_until_signal(on_ready=lambda: print("ready", flush=True))
    except OSError as exc:
        raise UserError(f"cannot listen: {exc}") from None
    return 0


# --- parsing ----------------------------------------------------------------------------------

Command = Callable[[Context], int]


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # On subcommands the defaults are suppressed so they do not overwrite values given before
    # the subcommand name (`clockd --config x.yaml poll` and `clockd poll --config x.yaml`).
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--config",
        type=Path,
        default=default,
        metavar="PATH",
        help="devices.yaml to use (default: $CLOCKD_CONFIG, else ./devices.yaml)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if top else argparse.SUPPRESS,
        help="more log output (repeat for debug)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clockd",
        description="Collect fingerprint time-clock punches and write village-attendance reports.",
    )
    parser.add_argument("--version", action="version", version=f"clockd {__version__}")
    _common(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Command, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _common(sub, top=False)
        sub.set_defaults(handler=handler)
        return sub

    add(
        "init",
        cmd_init,
        "create or migrate the database; write a sample devices.yaml and roster if absent",
    )
    poll = add("poll", cmd_poll, "poll terminals once and store new punches; one line per terminal")
    poll.add_argument(
        "--device", metavar="ID", help="poll only this terminal (its id in devices.yaml)"
    )
    add(
        "devices",
        cmd_devices,
        "show every terminal's village, serial, last good poll, records, drift and last error",
    )
    simulate = add(
        "simulate",
        cmd_simulate,
        "serve the configured loopback terminals as emulated ZKTeco terminals until SIGTERM",
    )
    simulate.add_argument(
        "--punches", type=Path, metavar="CSV", help="punches to hold (device,user_id,timestamp)"
    )
    simulate.add_argument(
        "--weeks", type=_positive, default=4, metavar="N", help="weeks of synthetic punches (4)"
    )
    simulate.add_argument("--seed", type=int, default=1, metavar="N", help="random seed (1)")
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose, json_lines=getattr(args, "log_json", False))
    ctx = Context(args)
    try:
        result: int = args.handler(ctx)
        return result
    except ConfigError as exc:
        for line in exc.lines():
            print(f"clockd: {line}", file=sys.stderr)
        return exc.exit_code
    except UserError as exc:
        print(f"clockd: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("clockd: interrupted", file=sys.stderr)
        return 130
