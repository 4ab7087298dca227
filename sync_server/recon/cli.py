"""The ``recon`` command (click): run the checks, follow up exceptions, import billers' files, report settlement.

Exit codes: 0 no open discrepancy, 1 some are open, 2 usage, connection or data errors (a message, never a
traceback). docs/recon.md is the manual.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlparse

import click
from peewee import DatabaseError, InterfaceError, OperationalError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from station.protocol.commands import GuardedGroup
from station.protocol.times import parse_utc
from sync_server.db import DEFAULT_DATABASE_URL, SchemaOutdated, SchemaTooNew, check_schema, connect_url, db_proxy
from sync_server.recon import report
from sync_server.recon.context import Scope
from sync_server.recon.i18n import LANGUAGES, gettext, render
from sync_server.recon.kinds import KINDS, N_


class ReconError(click.ClickException):
    """A usage, connection or data error: the message, and exit code 2."""

    exit_code = 2


database_option = click.option(
    "--database-url", envvar="DATABASE_URL", default=DEFAULT_DATABASE_URL, show_default=True,
    help="The sync server's database: sqlite:///path or postgresql://user@host:port/name (env DATABASE_URL).")
lang_option = click.option("--lang", type=click.Choice(LANGUAGES), default="zh", show_default=True,
                           help="Language of explanations and tables.")


def open_database(url: str):
    """Connect the server's models to ``url`` for this command (closed when it ends); refuse a missing file or a
    schema that is not this release's."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite" and not Path(parsed.path[1:] if parsed.path.startswith("//") else
                                             url.removeprefix("sqlite:///")).exists():
        raise ReconError(f"No database at {url}: check DATABASE_URL.")
    try:
        database = connect_url(url)
        db_proxy.initialize(database)
        database.connect()
    except ValueError as exc:
        raise ReconError(str(exc)) from exc
    except (OperationalError, InterfaceError, DatabaseError) as exc:
        raise ReconError(f"Cannot connect to the database ({_first_line(exc)}).") from exc
    click.get_current_context().call_on_close(database.close)
    try:
        check_schema(database)
    except (SchemaOutdated, SchemaTooNew) as exc:
        raise ReconError(str(exc)) from exc
    except DatabaseError as exc:
        raise ReconError(f"This is not a sync server database ({_first_line(exc)}).") from exc
    return database


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _day(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat() if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) else _bad(option)
    except ValueError:
        return _bad(option)


def _bad(option: str):
    raise click.BadParameter("give a date as YYYY-MM-DD", param_hint=option)


def _now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        return parse_utc(value)
    except ValueError as exc:
        raise click.BadParameter("give a time with its offset, e.g. 2026-12-01T08:00:00+08:00",
                                 param_hint="--as-of") from exc


def _write(text: str, output: str | None) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ReconError(f"Cannot write {output}: {exc.strerror}.") from exc


@click.group(cls=GuardedGroup)
def cli():
    """Central reconciliation: prove that every operation arrived, unaltered, and agrees with the ledger to the fen.

    Example: recon run --date 2026-11-30 --lang en
    """


@cli.command()
@database_option
@click.option("--date", "day", help="One business day, YYYY-MM-DD.")
@click.option("--from", "date_from", help="First business day of a period, YYYY-MM-DD.")
@click.option("--to", "date_to", help="Last business day of a period, YYYY-MM-DD.")
@click.option("--station", "stations", multiple=True, help="Only this station (repeat for several).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), help="Write the report to this file.")
@lang_option
@click.option("--verify-all", is_flag=True, help="Re-verify every entry's signature (an audit; slower).")
@click.option("--as-of", "as_of", help="The moment taken as now (default: now), with its offset.")
def run(database_url, day, date_from, date_to, stations, fmt, output, lang, verify_all, as_of):
    """Run every check over a period (all history when no date is given) and keep what it finds.

    Exit 0 when no discrepancy is open, 1 when some are, 2 on a usage, connection or data error.

    Example: recon run --from 2026-11-01 --to 2026-11-30 --station ST-0001 --format json --output nov.json
    """
    if day and (date_from or date_to):
        raise click.UsageError("give --date, or --from and --to, not both")
    date_from, date_to = (_day(day, "--date"),) * 2 if day else (_day(date_from, "--from"), _day(date_to, "--to"))
    if date_from and date_to and date_from > date_to:
        raise click.UsageError("--from is after --to")
    now = _now(as_of)
    if output is not None and not Path(output).resolve().parent.is_dir():
        raise ReconError(f"Cannot write {output}: its folder does not exist.")
    database = open_database(database_url)
    scope = Scope(date_from, date_to, tuple(dict.fromkeys(stations)) or None, now, verify_all)
    from sync_server.recon.run import find_discrepancies
    from sync_server.recon.store import record_run

    console = Console(stderr=True)
    try:
        if console.is_terminal:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=console, transient=True) as bar:
                total = _entry_count(database, scope)
                task = bar.add_task(gettext(lang, N_("Checking entries")), total=total)
                findings = find_discrepancies(database, scope, now,
                                              progress=lambda step, n: bar.advance(task, n))
        else:
            findings = find_discrepancies(database, scope, now)
        stored = record_run(database, findings.discrepancies, scope, now)
    except DatabaseError as exc:
        raise ReconError(f"The database refused a query ({_first_line(exc)}).") from exc
    if fmt == "json":
        _write(report.to_json(findings, stored, lang), output)
    elif fmt == "csv":
        _write(report.to_csv([report.as_dict(item, lang) for item in stored]), output)
    else:
        if output is None:
            report.print_tables(Console(), findings, stored, lang)
        else:
            try:
                with open(output, "w", encoding="utf-8") as handle:
                    report.print_tables(Console(file=handle, width=160), findings, stored, lang)
            except OSError as exc:
                raise ReconError(f"Cannot write {output}: {exc.strerror}.") from exc
    sys.exit(1 if any(item.status == "open" for item in stored) else 0)


def _entry_count(database, scope: Scope) -> int:
    from sync_server.db import Entry

    query = Entry.select()
    if scope.stations is not None:
        query = query.where(Entry.station_id.in_(scope.stations))
    return query.count()


# -- exceptions ---------------------------------------------------------------------------------------------
@cli.group()
def exceptions():
    """Follow up the discrepancies found: list, show, resolve (every change is kept in an audit trail)."""


@exceptions.command("list")
@database_option
@click.option("--status", type=click.Choice(["open", "resolved"]))
@click.option("--kind", type=click.Choice(sorted(KINDS)))
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@lang_option
def exceptions_list(database_url, status, kind, fmt, lang):
    """List exceptions, newest last.

    Example: recon exceptions list --status open --kind seq_gap
    """
    from sync_server.recon.store import Stored, as_discrepancy, list_exceptions

    open_database(database_url)
    rows = [report.as_dict(Stored(row.id, row.status, as_discrepancy(row)), lang)
            for row in list_exceptions(status, kind)]
    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    elif fmt == "csv":
        click.echo(report.to_csv(rows), nl=False)
    else:
        report.print_rows(Console(), rows, lang)


@exceptions.command("show")
@database_option
@click.argument("exception_id", type=int)
@lang_option
@click.option("--json", "as_json", is_flag=True)
def exceptions_show(database_url, exception_id, lang, as_json):
    """One exception in full, with its audit trail.

    Example: recon exceptions show 17
    """
    from sync_server.recon.store import Stored, UnknownException, as_discrepancy, get_exception

    open_database(database_url)
    try:
        row, events = get_exception(exception_id)
    except UnknownException as exc:
        raise ReconError(render(lang, N_("No exception {id}."), {"id": exception_id})) from exc
    shown = report.as_dict(Stored(row.id, row.status, as_discrepancy(row)), lang)
    shown["first_found_at"], shown["last_found_at"] = row.first_found_at, row.last_found_at
    shown["history"] = [{"at": e.at, "by": e.by, "action": e.action, "note": gettext(lang, e.note) if e.note else ""}
                        for e in events]
    if as_json:
        click.echo(json.dumps(shown, ensure_ascii=False, indent=2))
        return
    report.print_exception(Console(), shown, lang)


@exceptions.command("resolve")
@database_option
@click.argument("exception_id", type=int)
@click.option("--note", required=True, help="What was done (kept in the audit trail).")
@click.option("--by", "by", required=True, help="Who resolves it.")
@lang_option
def exceptions_resolve(database_url, exception_id, note, by, lang):
    """Resolve an open exception with a note.

    Example: recon exceptions resolve 17 --note "cash recovered from the customer" --by wang.li
    """
    from sync_server.recon.store import UnknownException, resolve

    note, by = note.strip(), by.strip()
    if not note or not by or not (note + by).isprintable():
        raise click.BadParameter("--note and --by must be printable text, not empty")
    database = open_database(database_url)
    try:
        resolve(database, exception_id, note, by, datetime.now(UTC))
    except UnknownException as exc:
        raise ReconError(render(lang, N_("No exception {id}."), {"id": exception_id})) from exc
    except ValueError as exc:
        raise ReconError(render(lang, N_("Exception {id} is already resolved."), {"id": exception_id})) from exc
    click.echo(render(lang, N_("Exception {id} resolved."), {"id": exception_id}))


# -- billers' settlement files ------------------------------------------------------------------------------
@cli.group()
def billers():
    """Billers' settlement files: import them (each file once, all or nothing) to check what billers were paid."""


@billers.command("import")
@database_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--biller", "biller_code", required=True, help="The biller's code in the bank, e.g. ELEC-SGCC.")
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False),
              help="A JSON file describing another layout (columns, amount unit, date format, delimiter, encoding).")
@click.option("--by", "by", default="", help="Who imports it (kept with the file).")
def billers_import(database_url, file, biller_code, mapping, by):
    """Import a biller's settlement file (CSV, UTF-8 or GB18030): every bad line is listed and nothing is imported;
    the same file imported again is kept once.

    Example: recon billers import sgcc-20261102.csv --biller ELEC-SGCC --mapping sgcc.json --by wang.li
    """
    from sync_server.recon.billers_import import BillerImportError, import_biller_file

    open_database(database_url)
    try:
        result = import_biller_file(file, biller_code, mapping, by)
    except BillerImportError as exc:
        raise ReconError(str(exc)) from exc
    except DatabaseError as exc:
        raise ReconError(f"The database refused the import ({_first_line(exc)}).") from exc
    click.echo(result.message)


# -- settlement report --------------------------------------------------------------------------------------
@cli.group("report")
def report_group():
    """Reports for the back office: the daily settlement."""


@report_group.command("settlement")
@database_option
@click.option("--date", "day", required=True, help="The business day, YYYY-MM-DD.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@lang_option
def report_settlement(database_url, day, fmt, lang):
    """One business day's settlement: per station (cash paid out and taken in, float position, variance,
    commission, fees), per biller (amount payable), and day totals tied to the ledger line by line.

    Exit 0 when every line ties, 1 when one does not (a message says which), 2 on a usage, connection or data
    error.

    Example: recon report settlement --date 2026-11-30 --format json --lang en
    """
    from sync_server.recon import settlement

    day = _day(day, "--date")
    database = open_database(database_url)
    try:
        result = settlement.settle(database, day, datetime.now(UTC))
    except DatabaseError as exc:
        raise ReconError(f"The database refused a query ({_first_line(exc)}).") from exc
    if fmt == "json":
        click.echo(settlement.to_json(result, lang), nl=False)
    elif fmt == "csv":
        click.echo(settlement.to_csv(result, lang), nl=False)
    else:
        settlement.print_tables(Console(), result, lang)
    if not result.ties:
        click.echo(settlement.verdict(result, lang), err=True)
        sys.exit(1)
    if fmt == "table":
        click.echo(settlement.verdict(result, lang))
