"""The ``sync-server`` command: thin click wrappers around ``sync_server.admin`` and the app."""

from __future__ import annotations

import getpass
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import click
from peewee import DatabaseError, SqliteDatabase

from station.protocol.commands import GuardedGroup
from sync_server import DEFAULT_KEYS_DIR, VERIFY_THREADS_SETTING, database_for, verify_threads_setting
from sync_server.db import (
    DEFAULT_DATABASE_URL,
    SchemaOutdated,
    SchemaTooNew,
    check_schema,
    migrate_database,
    schema_version,
)

database_option = click.option(
    "--database-url", envvar="DATABASE_URL", default=DEFAULT_DATABASE_URL, show_default=True,
    help="sqlite:///path or postgresql://user@host:port/name (env DATABASE_URL).")
keys_option = click.option(
    "--keys-dir", envvar="SYNC_SERVER_KEYS_DIR", default=DEFAULT_KEYS_DIR, show_default=True,
    type=click.Path(file_okay=False), help="Folder of the server's private keys (env SYNC_SERVER_KEYS_DIR).")


def open_database(url: str):
    """Connect the models to ``url`` for this command; the connection closes when the command ends."""
    database = database_for(url)
    database.connect(reuse_if_open=True)
    click.get_current_context().call_on_close(database.close)
    return database


def _admin_call(fn, *args, **kwargs):
    from sync_server.admin import AdminError
    from sync_server.lifecycle import LifecycleError

    try:
        return fn(*args, **kwargs)
    except (AdminError, LifecycleError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(cls=GuardedGroup)
def cli():
    """The bank's sync server: enrollment, batch ingest, central ledger."""


@cli.command("init-db")
@database_option
def init_db(database_url):
    """Create or migrate the database schema (safe to run again); prints the version it is at.

    Example: DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bank sync-server init-db
    """
    database = open_database(database_url)
    try:
        applied = migrate_database(database)
    except SchemaTooNew as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Schema at version {schema_version(database)} (applied: {applied or 'none'}).")


@cli.command()
@keys_option
@click.option("--create", is_flag=True, help="Create the key pair (refuses to replace existing keys).")
def keys(keys_dir, create):
    """Show (or --create) the server's public keys: Ed25519 for acks, X25519 for sealed batches.

    Example: sync-server keys --create --keys-dir /etc/station-kit/keys
    """
    from sync_server.keys import KeysMissing, create_keys, load_keys

    try:
        server_keys = create_keys(keys_dir) if create else load_keys(keys_dir)
    except (FileExistsError, KeysMissing) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(server_keys.public(), indent=2))


def serve_verify_threads(workers: int, cores: int | None = None) -> int:
    """Signature threads per gunicorn worker: the cores over the workers, at least 1, at most 4."""
    return max(1, min(4, (cores or os.cpu_count() or 1) // max(1, workers)))


@cli.command()
@click.option("--dev", is_flag=True, help="Serve with waitress (one process, threads) instead of gunicorn.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8800, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 256), help="gunicorn worker processes.")
def serve(dev, host, port, workers):
    """Serve the API (reads DATABASE_URL and SYNC_SERVER_KEYS_DIR from the environment).

    Refuses to start, with the reason, on a database whose schema is not this release's (run init-db first).

    Example: sync-server serve --host 0.0.0.0 --port 8800 --workers 4
    """
    database = database_for(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    try:
        with database.connection_context():
            check_schema(database)
    except (SchemaOutdated, SchemaTooNew, DatabaseError) as exc:
        raise click.ClickException(str(exc)) from exc
    from sync_server.dashboard import check_dashboard_settings, dashboard_defaults

    try:
        verify_threads_setting(os.environ.get(VERIFY_THREADS_SETTING))
        check_dashboard_settings(dashboard_defaults())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if dev:
        from waitress import serve as waitress_serve

        from sync_server import create_app

        waitress_serve(create_app(), host=host, port=port, threads=4)
        return
    # Each worker checks its batches' signatures in its own thread when the workers fill the cores; fewer workers
    # than cores share the rest out as threads (envelope.configure_verify_threads). The operator's setting wins.
    if not os.environ.get(VERIFY_THREADS_SETTING, "").strip():
        os.environ[VERIFY_THREADS_SETTING] = str(serve_verify_threads(workers))
    os.execvp(sys.executable, [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind",
                               f"{host}:{port}", "sync_server.wsgi:app"])


@cli.group()
def station():
    """Stations: add, bulk-add (a printed enrollment sheet), replace a device, list, show, revoke, clear a fork flag,
    key rotation."""


server_url_option = click.option(
    "--server-url", envvar="SYNC_SERVER_PUBLIC_URL",
    help="The address stations use to reach this server, put in the QR (env SYNC_SERVER_PUBLIC_URL), "
         "e.g. https://sync.bank.example.")


def _checked_server_url(server_url: str | None, qr_file: str | None) -> str | None:
    """The --server-url for a QR, checked before any code is issued (a code is not spent on a typo)."""
    from station.protocol.enrollment_qr import NotAnEnrollmentCode, check_server_url

    if qr_file and not server_url:
        raise click.UsageError("--qr needs --server-url (or SYNC_SERVER_PUBLIC_URL): the QR carries the address.")
    if not server_url:
        return None
    try:
        return check_server_url(server_url)
    except NotAnEnrollmentCode as exc:
        raise click.BadParameter(str(exc), param_hint="--server-url") from exc


def _echo_rows(rows: list[dict], as_json: bool, columns: tuple[str, ...]) -> None:
    """A list command's rows: JSON, or one tab-separated line each of ``columns`` ("-" for none)."""
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        click.echo("\t".join(str(row[key] if row[key] is not None else "-") for key in columns))


def _echo_code(station_id: str, code: str, server_url: str | None, qr_file: str | None) -> None:
    """The QR payload (with a server URL) and its PNG (with --qr), then the code itself on the last line."""
    from station.protocol.enrollment_qr import make_payload

    if server_url:
        payload = make_payload(server_url, station_id, code)
        if qr_file:
            from station.protocol.private_files import write_private_file
            from sync_server.sheet_layout import qr_png

            try:
                write_private_file(Path(qr_file), qr_png(payload))
            except OSError as exc:
                raise click.ClickException(f"The code was issued but {qr_file} could not be written "
                                           f"({exc.strerror}); run the command again for a new code.") from exc
            click.echo(f"QR written to {qr_file}.")
        click.echo(payload)
    click.echo(code)


@station.command("add")
@database_option
@click.argument("station_id")
@click.option("--name", required=True, help="Where the station is, e.g. 'Liujia village shop'.")
@click.option("--village", help="The village, e.g. 刘家村.")
@click.option("--agent", help="The agent who runs the station, e.g. 刘秀英.")
@click.option("--county", help="The county it serves, e.g. 来凤县 (the branch dashboard groups stations by it).")
@server_url_option
@click.option("--qr", "qr_file", type=click.Path(dir_okay=False, writable=True),
              help="Also write the enrollment QR to this PNG file (needs --server-url).")
def station_add(database_url, station_id, name, village, agent, county, server_url, qr_file):
    """Register a station; the last line printed is its one-time enrollment code (valid 7 days).

    With --server-url the line before it is the enrollment QR's payload, and --qr writes the QR as a PNG.

    Example: sync-server station add ST-0001 --name "Liujia village shop" --server-url https://sync.bank.example
    """
    from sync_server.admin import add_station

    server_url = _checked_server_url(server_url, qr_file)
    open_database(database_url)
    code = _admin_call(add_station, station_id, name, village, agent, county)
    click.echo(f"Station {station_id} ({name}) registered. One-time enrollment code, valid 7 days:")
    _echo_code(station_id, code, server_url, qr_file)


@station.command("list")
@database_option
@click.option("--json", "as_json", is_flag=True)
def station_list(database_url, as_json):
    """List stations with status, flags, acked seq and last sync.

    Example: sync-server station list --json
    """
    from sync_server.admin import list_stations

    open_database(database_url)
    rows = list_stations()
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        flag = f" FLAGGED: {row['flag_reason']}" if row["flagged"] else ""
        clock = " CLOCK WRONG" if row["clock_wrong"] else ""
        click.echo(f"{row['station_id']}\t{row['status']}\tacked {row['acked_seq']}\t"
                   f"last sync {row['last_sync_at'] or 'never'}\tclock {clock_offset_words(row['clock_offset_ms'])}"
                   f"\t{row['name']}{flag}{clock}")


def clock_offset_words(offset_ms: int | None) -> str:
    """The station's clock against the bank's at its last sync: "-" (not measured yet), "0.4 s behind",
    "7 min ahead" (the offset is the bank's time minus the station's)."""
    if offset_ms is None:
        return "-"
    size = abs(offset_ms)
    amount = f"{size / 1000:.1f} s" if size < 60_000 else f"{size / 60_000:.0f} min"
    return amount if offset_ms == 0 else f"{amount} {'behind' if offset_ms > 0 else 'ahead'}"


def clock_correction_words(correction: dict | None) -> str:
    """A station's last clock correction in one line: "none", or "seq 58 at 2026-11-02T02:10:00.000Z: the clock had
    run 4280 min ahead; technician: fake-hwclock restored a later time"."""
    if correction is None:
        return "none"
    minutes = correction["behind_ms"] / 60_000
    return (f"seq {correction['seq']} at {correction['ts']}: the clock had run {minutes:.0f} min ahead; technician: "
            f"{correction['reason'] or '-'}")


@station.command("revoke")
@database_option
@click.argument("station_id")
@click.option("--reason", required=True, help="Why, for the audit trail, e.g. 'device stolen, police report 1234'.")
@click.option("--by", "by", required=True, help="Your name, for the audit trail.")
def station_revoke(database_url, station_id, reason, by):
    """Revoke a station (stolen or retired): its uploads are refused, its allowances released.

    Its keys stay published so its receipts keep verifying; its journal can still be imported
    (sync-server journal import).

    Example: sync-server station revoke ST-0007 --reason "device stolen" --by "Wang Fang"
    """
    from sync_server.admin import revoke_station

    open_database(database_url)
    _admin_call(revoke_station, station_id, reason=reason, by=by)
    click.echo(f"Station {station_id} revoked.")


@station.command("replace")
@database_option
@click.argument("station_id")
@click.option("--by", default="", help="Who issues the code (kept in the station's audit trail).")
@server_url_option
@click.option("--qr", "qr_file", type=click.Path(dir_okay=False, writable=True),
              help="Also write the enrollment QR to this PNG file (needs --server-url).")
def station_replace(database_url, station_id, by, server_url, qr_file):
    """A one-time code for a replacement device of an enrolled station (valid 7 days); the last line is the code.

    The new device enrolls with it under the same station id and continues the chain from the bank's head.
    Import the old device's journal first (`sync-server journal import`) if its SD card can still be read.
    With --server-url the line before the code is the enrollment QR's payload, and --qr writes the QR as a PNG.

    Example: sync-server station replace ST-0007 --by "Li Wei" --server-url https://sync.bank.example --qr st7.png
    """
    from sync_server.admin import replace_station

    server_url = _checked_server_url(server_url, qr_file)
    open_database(database_url)
    code = _admin_call(replace_station, station_id, by)
    click.echo(f"Replacement device for {station_id}: it continues the chain from the bank's head. "
               "One-time code, valid 7 days:")
    _echo_code(station_id, code, server_url, qr_file)


@cli.group()
def entries():
    """Journal entries received from stations: list them with their outcomes."""


@entries.command("list")
@database_option
@click.option("--station", "station_id", required=True, help="The station id, e.g. ST-0001.")
@click.option("--outcome", type=click.Choice(["settled", "rejected", "acknowledged"]),
              help="Only entries with this outcome, e.g. rejected.")
@click.option("--json", "as_json", is_flag=True)
def entries_list(database_url, station_id, outcome, as_json):
    """List a station's entries in seq order: seq, type, outcome, reason (e.g. unknown_type), txn.

    Example: sync-server entries list --station ST-0001 --outcome rejected
    """
    from sync_server.admin import list_entries

    open_database(database_url)
    rows = list_entries(station_id, outcome)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        click.echo(f"{row['seq']}\t{row['type']}\t{row['outcome']}\t{row['reason'] or '-'}\t{row['txn'] or '-'}")


@cli.group("recon-items")
def recon_items():
    """Reconciliation items the bank recorded while applying entries (e.g. rejected offline debits)."""


@recon_items.command("list")
@database_option
@click.option("--station", "station_id", help="Only this station's items, e.g. ST-0001.")
@click.option("--json", "as_json", is_flag=True)
def recon_items_list(database_url, station_id, as_json):
    """List reconciliation items: station, seq, kind (e.g. rejected_offline_debit), account, fen, reason.

    Example: sync-server recon-items list --station ST-0001
    """
    from sync_server.admin import list_recon_items

    open_database(database_url)
    _echo_rows(list_recon_items(station_id), as_json,
               ("station_id", "seq", "kind", "account_id", "amount_fen", "reason", "created_at"))


@cli.group()
def customers():
    """Customers: import from CSV, record a risk-assessment level."""


@customers.command("import")
@database_option
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
def customers_import(database_url, csv_file):
    """Import customers (columns: account_id,name,card_number,passbook_number,pin,balance,home_stations;
    optional birth_year, risk_level 1 to 5).

    Example: sync-server customers import customers.csv
    """
    from sync_server.admin import import_customers, parse_customers_csv

    open_database(database_url)
    rows = _admin_call(parse_customers_csv, Path(csv_file).read_text(encoding="utf-8-sig"))
    click.echo(f"Imported {import_customers(rows)} customers.")


@customers.command("risk-level")
@database_option
@click.argument("account_id")
@click.argument("level")
def customers_risk_level(database_url, account_id, level):
    """Record a customer's risk-assessment level: 1 to 5 (or R1 to R5), or none when it lapsed. Sent down with the
    next sync; a wealth-product order needs it at least the product's risk level.

    Example: sync-server customers risk-level DM00010001 R3
    """
    from sync_server.wmp import set_risk_level

    open_database(database_url)
    value = _admin_call(set_risk_level, account_id, level)
    click.echo(f"Customer {account_id}: risk level {'R' + str(value) if value else 'none (not assessed)'}.")


@cli.group()
def wmp():
    """Wealth-management products (理财) sold at the stations: add, list, close."""


@wmp.command("add")
@database_option
@click.argument("code")
@click.option("--name-zh", required=True, help="Chinese name, at most 30 characters.")
@click.option("--name-en", required=True, help="English name, at most 30 characters.")
@click.option("--risk", "risk_level", required=True, type=click.IntRange(1, 5), help="Risk level 1 to 5 (R1-R5).")
@click.option("--min", "minimum", required=True, help="Smallest order, in yuan.")
@click.option("--step", required=True, help="Orders go up from the minimum in steps of this, in yuan.")
@click.option("--opens", "opens_on", required=True, help="First day of the subscription window (bank-local date).")
@click.option("--closes", "closes_on", required=True, help="Last day of the window (bank-local date, included).")
@click.option("--quota", required=True, help="How much may be sold in all, in yuan.")
@click.option("--description-zh", required=True, help="Plain description in Chinese; no rates, no promises.")
@click.option("--description-en", required=True, help="Plain description in English; no rates, no promises.")
def wmp_add(database_url, code, **fields):
    """Add a product; stations show it from their next sync while its window is open. Products are never edited.

    Example: sync-server wmp add WM-2026-12 --name-zh 稳健理财12月 --name-en "Steady Dec" --risk 2 --min 1000
    --step 100 --opens 2026-12-01 --closes 2026-12-07 --quota 5000000 --description-zh "..." --description-en "..."
    """
    from sync_server.wmp import add_product

    open_database(database_url)
    product = _admin_call(add_product, code, **fields)
    click.echo(f"Product {product.code} added (R{product.risk_level}, {product.opens_on} to {product.closes_on}).")


@wmp.command("list")
@database_option
@click.option("--json", "as_json", is_flag=True)
def wmp_list(database_url, as_json):
    """List the products: code, status, risk level, minimum, step and quota left (fen), window, names.

    Example: sync-server wmp list --json
    """
    from sync_server.wmp import list_products

    open_database(database_url)
    _echo_rows(list_products(), as_json, ("code", "status", "risk_level", "min_fen", "step_fen", "quota_fen",
                                          "opens_on", "closes_on", "name_zh", "name_en"))


@wmp.command("close")
@database_option
@click.argument("code")
def wmp_close(database_url, code):
    """Stop selling a product now: stations drop it at their next sync; later orders are refused (window_closed).

    Example: sync-server wmp close WM-2026-12
    """
    from sync_server.wmp import close_product

    open_database(database_url)
    _admin_call(close_product, code)
    click.echo(f"Product {code} closed.")


@cli.group()
def billers():
    """Billers: import from CSV."""


@billers.command("import")
@database_option
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
def billers_import(database_url, csv_file):
    """Import billers (columns: code,kind,name_zh,name_en,ref_pattern,ref_prefixes,min_fen,max_fen,denominations).

    Example: sync-server billers import billers.csv
    """
    from sync_server.admin import import_billers, parse_billers_csv

    open_database(database_url)
    rows = _admin_call(parse_billers_csv, Path(csv_file).read_text(encoding="utf-8-sig"))
    click.echo(f"Imported {import_billers(rows)} billers.")


@cli.group()
def payees():
    """Payee accounts: block known fraud accounts."""


@payees.command("block")
@database_option
@click.argument("account")
@click.option("--reason", default="", help="Why (shown to operators).")
def payees_block(database_url, account, reason):
    """Block transfers to ACCOUNT at every station (sent down with the next sync).

    Example: sync-server payees block 6222021234567890 --reason "reported fraud"
    """
    from sync_server.admin import block_payee

    open_database(database_url)
    block_payee(account, reason)
    click.echo(f"Payee account {account} blocked.")


@cli.group()
def transfers():
    """Transfers: execute the due ones (the bank side)."""


@transfers.command("execute")
@database_option
def transfers_execute(database_url):
    """Execute pending transfers whose delay has passed.

    Example: sync-server transfers execute
    """
    from sync_server.admin import execute_due_transfers

    open_database(database_url)
    click.echo(f"Executed {execute_due_transfers()} transfers.")


@cli.group()
def authorizations():
    """Real-time authorizations the bank gave or refused stations: list them, mark the expired ones."""


@authorizations.command("list")
@database_option
@click.option("--station", "station_id", help="Only this station's, e.g. ST-0001.")
@click.option("--status", type=click.Choice(["active", "used", "expired", "refused"]),
              help="Only those with this status, e.g. refused.")
@click.option("--json", "as_json", is_flag=True)
def authorizations_list(database_url, station_id, status, as_json):
    """List authorizations, newest first: created, station, kind, account, fen, status, reason, expiry, auth_id.

    An active one whose expiry has passed holds nothing any more (`authorizations expire` marks it).

    Example: sync-server authorizations list --station ST-0001 --status refused
    """
    from sync_server.admin import list_authorizations

    open_database(database_url)
    _echo_rows(list_authorizations(station_id, status), as_json,
               ("created_at", "station_id", "kind", "account_id", "amount_fen", "fee_fen", "status", "reason",
                "expires_at", "auth_id"))


@authorizations.command("expire")
@database_option
def authorizations_expire(database_url):
    """Mark every active authorization whose time has passed expired (ingest and each request also do, per
    station); what they held was released at their expiry already.

    Example: sync-server authorizations expire
    """
    from sync_server.authorize import expire_all

    open_database(database_url)
    click.echo(f"Marked {expire_all()} authorizations expired.")


@cli.command("demo-data")
@database_option
@click.option("--stations", default="ST-0001", show_default=True, help="Comma-separated station ids.")
def demo_data(database_url, stations):
    """Load demo billers, policy, stations and customers (PIN 123456); idempotent.

    Example: sync-server demo-data --stations ST-0001,ST-0002
    """
    from sync_server.admin import load_demo_data

    database = open_database(database_url)
    migrate_database(database)
    ids = [s.strip() for s in stations.split(",") if s.strip()]
    click.echo(json.dumps(load_demo_data(ids), ensure_ascii=False))


class LedgerUnreadable(click.ClickException):
    """The ledger could not be read at all (exit 2), as opposed to read and found broken (exit 1)."""

    exit_code = 2


@cli.command()
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print the failures as a JSON list.")
def check(database_url, as_json):
    """Check the ledger's invariants and list every failure (exit 1), or none (exit 0).

    Every entry's legs sum to zero; each account's stored balance equals its postings; holds are not negative and a
    customer's holds stay within the balance; no customer balance is below zero. Exit 2 when the database cannot
    be read. Read-only: safe while the server runs.

    Example: DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bank sync-server check
    """
    from sync_server.checks import CHECKS, check_ledger

    try:
        database = database_for(database_url)
    except ValueError as exc:
        raise LedgerUnreadable(str(exc)) from exc
    if isinstance(database, SqliteDatabase) and not Path(database.database).is_file():
        # Connecting would create an empty file; a check must not leave one behind.
        raise LedgerUnreadable(f"No database file at {database.database}.")
    try:
        open_database(database_url)
        if schema_version(database) == 0:
            raise LedgerUnreadable("The database has no sync-server schema; run `sync-server init-db` first.")
        failures = check_ledger()
    except DatabaseError as exc:
        raise LedgerUnreadable(f"Cannot read the ledger: {str(exc).strip().splitlines()[0]}") from exc
    if as_json:
        click.echo(json.dumps([asdict(failure) for failure in failures], indent=2, ensure_ascii=False))
    elif failures:
        click.echo(f"Ledger BROKEN: {len(failures)} failures.")
        for failure in failures:
            click.echo(f"  {failure}")
    else:
        click.echo(f"Ledger sound: {len(CHECKS)} checks passed.")
    sys.exit(1 if failures else 0)


# -- station bulk-add: a printed enrollment sheet for a batch of stations ------------------------------------
@station.command("bulk-add")
@database_option
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for enrollment-sheet.html/.pdf and one QR PNG per station (created 0700).")
@server_url_option
@click.option("--reissue", is_flag=True,
              help="Give pending stations a new code, ending their older unused ones (a lost or unprintable sheet).")
@click.option("--by", default=None, help="Who runs this, for the stations' audit trail (default: the login name).")
@click.option("--county", help="Put every station of the CSV in this county, e.g. 来凤县 (the branch dashboard).")
def station_bulk_add(database_url, csv_file, out_dir, server_url, reissue, by, county):
    """Register the stations of a CSV (header id,name,village,agent; UTF-8 or GB18030) and print their codes.

    Writes OUT/enrollment-sheet.html and OUT/enrollment-sheet.pdf (six stations to an A4 page: QR, typed code,
    server, expiry, steps for the technician) and OUT/<station id>.png. Every bad line is reported and nothing is
    done until the file is clean. Safe to run again: no station is added twice, a still valid code is kept.

    Example: sync-server station bulk-add stations.csv --out sheet/ --server-url https://sync.bank.example
    """
    from sync_server.sheets import bulk_add, parse_stations_csv

    if not server_url:
        raise click.UsageError("Give --server-url (or set SYNC_SERVER_PUBLIC_URL): the address stations use to "
                               "reach this server, e.g. https://sync.bank.example.")
    try:
        data = Path(csv_file).read_bytes()
    except OSError as exc:
        raise click.ClickException(f"Cannot read {csv_file}: {exc.strerror}.") from exc
    rows, encoding = _admin_call(parse_stations_csv, data)
    if by is None:
        try:
            by = getpass.getuser()
        except (KeyError, OSError):
            by = "unknown"
    database = open_database(database_url)
    try:
        check_schema(database)
    except (SchemaOutdated, SchemaTooNew, DatabaseError) as exc:
        raise click.ClickException(str(exc).strip()) from exc
    result = _admin_call(bulk_add, rows, server_url, Path(out_dir), reissue=reissue, by=by, county=county)
    width = max(len("station"), *(len(o.station_id) for o in result.outcomes))
    click.echo(f"{'station':<{width}}  {'status':<16}  code valid until")
    for outcome in result.outcomes:
        click.echo(f"{outcome.station_id:<{width}}  {outcome.status:<16}  {result.local(outcome.valid_until)}")
        for note in outcome.notes:
            click.echo(f"{'':<{width}}  - {note}")
    for message in result.messages:
        click.echo(message)
    printed = sum(o.on_sheet for o in result.outcomes)
    click.echo(f"Read {csv_file} as {encoding}. {printed} station(s) on the sheet.")
    if printed:
        click.echo(f"Wrote {result.out_dir / 'enrollment-sheet.html'}, {result.out_dir / 'enrollment-sheet.pdf'} "
                   f"and each station's QR as {result.out_dir}/<station>.png. Keep them like keys until the codes "
                   "are used; destroy them after enrollment.")


# -- station life cycle at the bank: show, clear-flag, rotate-key; journal import ------------------------------
def _login_name() -> str:
    """The operating-system user running the command (the default ``--by``)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _shown(value, width: int = 46) -> str:
    """A payload value on one line of at most ``width`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= width else text[:width - 1] + "…"


def _echo_station_report(report: dict) -> None:
    flag = f"FLAGGED: {report['flag_reason']}" if report["flagged"] else "not flagged"
    click.echo(f"Station {report['station_id']} ({report['name']})")
    for label, value in (
            ("status", report["status"] + (f" since {report['revoked_at']}" if report["revoked_at"] else "")),
            ("flag", flag), ("village", report["village"] or "-"), ("agent", report["agent"] or "-"),
            ("enrolled", report["enrolled_at"] or "not yet"),
            ("bank holds", f"seq 1..{report['acked_seq']} (head {report['head'] or '-'})"),
            ("last sync", report["last_sync_at"] or "never"),
            ("clock offset", "-" if report["clock_offset_ms"] is None else
             f"{report['clock_offset_ms']} ms ({clock_offset_words(report['clock_offset_ms'])})"
             + (" CLOCK WRONG: call the station's technician" if report["clock_wrong"] else "")),
            ("clock fixed", clock_correction_words(report["clock_corrected"])),
            ("tail claim", f"seq {report['tail']['seq']} (received {report['tail']['received_at']})"
             if report["tail"] else "none"),
            ("key rotation", "due" + (" (asked)" if report["rotate_requested"] else " (key too old)")
             if report["rotation_due"] else "not due")):
        click.echo(f"  {label + ':':<14}{value}")
    click.echo("Keys:")
    for key in report["keys"]:
        click.echo(f"  {key['kid']}  from seq {key['from_seq']}  {key['source']}  {key['created_at']}")
    click.echo("Recent events:" if report["events"] else "Recent events: none")
    for event in report["events"]:
        detail = f"  {json.dumps(event['detail'], ensure_ascii=False)}" if event["detail"] else ""
        click.echo(f"  {event['at']}  {event['action']}  by {event['by']}: {event['reason'] or '-'}{detail}")
    if not report["flagged"]:
        return
    fork = report["fork"]
    if fork is None:
        click.echo("Fork: the contents were not recorded (flagged before this release); see the flag reason.")
        return
    click.echo(f"Fork at seq {fork['seq']} ({fork['detected_at']}): {fork['reason']}")
    click.echo(f"  differing fields: {', '.join(fork['differing']) or 'none'}")
    click.echo(f"    {'field':<12}{'held by the bank':<48}offered by the station")
    for field in fork["fields"]:
        line = (f"{'≠' if field['differs'] else ' '}   {field['field']:<12}{_shown(field['held']):<48}"
                f"{_shown(field['offered'])}")
        click.echo(click.style(line, fg="red", bold=True) if field["differs"] else line)


@station.command("show")
@database_option
@click.argument("station_id")
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
def station_show(database_url, station_id, as_json):
    """Everything the bank knows about a station: status, flag, keys, sync state, tail claim, audit trail,
    and for a flagged station the fork it refused (both contents side by side, differing fields marked).

    Example: sync-server station show ST-0001
    """
    from sync_server.lifecycle import station_report

    open_database(database_url)
    report = _admin_call(station_report, station_id)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        _echo_station_report(report)


@station.command("clear-flag")
@database_option
@click.argument("station_id")
@click.option("--reason", required=True, help="What you found and decided, for the audit trail.")
@click.option("--by", "by", required=True, help="Your name, for the audit trail.")
def station_clear_flag(database_url, station_id, reason, by):
    """Clear a station's fork flag after looking at it (sync-server station show); its next honest sync is
    accepted again.

    Example: sync-server station clear-flag ST-0001 --reason "clone destroyed, original kept" --by "Wang Fang"
    """
    from sync_server.lifecycle import clear_flag

    open_database(database_url)
    was = _admin_call(clear_flag, station_id, reason, by)
    click.echo(f"Flag of station {station_id} cleared (it was: {was}).")


@station.command("rotate-key")
@database_option
@click.argument("station_ids", nargs=-1)
@click.option("--max-age-days", type=click.IntRange(min=0),
              help="Set the server policy's maximum key age in days (0: keys never age out).")
@click.option("--by", "by", default=_login_name, show_default="your login name",
              help="Your name, for the audit trail of the stations asked.")
@click.option("--json", "as_json", is_flag=True, help="List the stations due as JSON.")
def station_rotate_key(database_url, station_ids, max_age_days, by, as_json):
    """Ask stations to rotate their signing keys, set the maximum key age, or list the stations due.

    With station ids: their next downlink tells them to rotate. With --max-age-days: every station whose key is
    older is told so. With neither: list the stations whose downlink says to rotate, and why.

    Example: sync-server station rotate-key ST-0001 ST-0002 --by "Wang Fang"

    Example: sync-server station rotate-key --max-age-days 180
    """
    from sync_server.lifecycle import request_rotation, rotations_due, set_max_key_age

    open_database(database_url)
    if max_age_days is not None:
        _admin_call(set_max_key_age, max_age_days)
        click.echo(f"Maximum key age set to {max_age_days} days." if max_age_days
                   else "Keys no longer age out (maximum key age 0).")
    if station_ids:
        asked = _admin_call(request_rotation, list(station_ids), by)
        click.echo(f"Asked to rotate their keys with their next sync: {', '.join(asked)}.")
    if station_ids or max_age_days is not None:
        return
    due = rotations_due()
    if as_json:
        click.echo(json.dumps(due, indent=2, ensure_ascii=False))
        return
    if not due:
        click.echo("No station is due to rotate its key.")
    for row in due:
        click.echo(f"{row['station_id']}\tkey {row['kid']}\tfrom {row['key_created_at']} ({row['key_age_days']} "
                   f"days)\t{' and '.join(row['why'])}")


@cli.group()
def fraud():
    """Anti-fraud: transfers customers stopped at the fraud warning, and the scam markers stations warn on."""


@fraud.command("stopped")
@database_option
@click.option("--station", "station_id", help="Only this station's, e.g. ST-0001.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), help="From this local date, e.g. 2026-12-01.")
@click.option("--json", "as_json", is_flag=True)
def fraud_stopped(database_url, station_id, since, as_json):
    """List attempted scams: transfers stopped at a station's fraud warning (station, seq, local time, agent,
    account, fen, payee account and name, why the warning showed).

    Example: sync-server fraud stopped --station ST-0001 --since 2026-12-01
    """
    from sync_server.fraud import stopped_transfers

    open_database(database_url)
    rows = stopped_transfers(station_id, since.date() if since else None)
    if not rows and not as_json:
        click.echo("No transfer was stopped at the fraud warning.")
    _echo_rows(rows, as_json, ("station_id", "seq", "local_time", "agent", "account_id", "amount_fen",
                               "payee_account", "payee_name", "why"))


@fraud.command("markers")
@database_option
@click.option("--set", "words", multiple=True,
              help="Replace the list with these words (repeat the option); sent down with the next downlink.")
def fraud_markers(database_url, words):
    """Show the scam markers (words in a payee name that show the fraud warning whatever the amount), or set them.

    Example: sync-server fraud markers --set 安全账户 --set 公安 --set 法院
    """
    from sync_server.fraud import FraudError, scam_markers, set_scam_markers

    open_database(database_url)
    if words:
        try:
            set_scam_markers(list(words))
        except FraudError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo("\n".join(scam_markers()))


@cli.group()
def journal():
    """Station journals carried to the bank by hand (an export from a broken or recovered device)."""


@journal.command("import")
@database_option
@click.argument("export_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--station", "station_id", required=True, help="The station the export belongs to, e.g. ST-0001.")
@click.option("--by", "by", default=_login_name, show_default="your login name", help="Your name, for the audit trail.")
def journal_import(database_url, export_dir, station_id, by):
    """Import a journal export (station export-journal), verified like a sync against the keys the bank holds;
    applies only what the bank does not hold yet. Safe to run twice.

    Example: sync-server journal import /media/usb/ST-0001-export --station ST-0001 --by "Wang Fang"
    """
    from sync_server.journal_import import import_journal

    open_database(database_url)
    click.echo(_admin_call(import_journal, Path(export_dir), station_id, by=by).message)


@cli.group()
def agents():
    """The people at a station's counter, seen from the bank: unlock codes read out over the phone."""


@agents.command("unlock-code")
@database_option
@keys_option
@click.argument("station_id")
@click.argument("agent_id")
@click.option("--reason", required=True, help="Why, for the audit trail, e.g. 'shopkeeper forgot PIN, called 10:40'.")
@click.option("--by", "by", default=_login_name, show_default="your login name", help="Your name, for the audit trail.")
def agents_unlock_code(database_url, keys_dir, station_id, agent_id, reason, by):
    """A one-time code that unlocks AGENT_ID at STATION_ID with no network: read it out over the phone; the agent
    types it on the station's screen (tap the locked name, then "Unlock code from the bank"). The last line is the
    code. A code works once, and using one voids the older codes of the station not used yet.

    Example: sync-server agents unlock-code ST-0001 S01 --reason "supervisor forgot PIN, called 10:40" --by "Li Wei"
    """
    from sync_server.keys import KeysMissing, load_keys
    from sync_server.unlock_codes import issue_unlock_code

    try:
        server_keys = load_keys(keys_dir)
    except KeysMissing as exc:
        raise click.ClickException(str(exc)) from exc
    open_database(database_url)
    counter, code = _admin_call(issue_unlock_code, station_id, agent_id, by=by, reason=reason, keys=server_keys)
    click.echo(f"Unlock code {counter} for {agent_id.strip().upper()} at {station_id} (works once), read it out in "
               "pairs:")
    click.echo(" ".join(code[i:i + 2] for i in range(0, len(code), 2)))


@cli.group()
def voice():
    """客户之声: customer voice from every station (praise, suggestions, complaints, stopped scams), followed up
    with an audit trail; the answer to a customer's voice goes back to the station with its next sync."""


def _voice_call(fn, *args, **kwargs):
    from sync_server.voice import VoiceError

    try:
        return fn(*args, **kwargs)
    except VoiceError as exc:
        raise click.ClickException(str(exc)) from exc


@voice.command("list")
@database_option
@click.option("--station", "station_id", help="Only this station's, e.g. ST-0001.")
@click.option("--kind", help="praise, suggestion, complaint, scam_stopped or complaint_12315.")
@click.option("--status", help="open or resolved.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), help="From this local date, e.g. 2026-12-01.")
@click.option("--json", "as_json", is_flag=True, help="Print the items (with their trails) as JSON.")
def voice_list(database_url, station_id, kind, status, since, as_json):
    """List the voice items: id, kind, local time, status, the customer's words.

    Example: sync-server voice list --station ST-0001 --kind suggestion --status open
    """
    from sync_server.voice import voice_items

    open_database(database_url)
    rows = _voice_call(voice_items, station_id, kind, status, since.date() if since else None)
    if not rows and not as_json:
        click.echo("No customer voice item matches.")
    if not as_json:
        rows = [{**row, "words": _shown(row["words"], 60)} for row in rows]
    _echo_rows(rows, as_json, ("id", "kind", "local_time", "status", "words"))


@voice.command("show")
@database_option
@click.argument("item_id")
@click.option("--json", "as_json", is_flag=True, help="Print the item as one JSON object.")
def voice_show(database_url, item_id, as_json):
    """One item: who recorded it where and when, the customer's words, its status and the whole trail.

    Example: sync-server voice show ST-0001:12
    """
    from sync_server.voice import voice_item

    open_database(database_url)
    item = _voice_call(voice_item, item_id)
    if as_json:
        click.echo(json.dumps(item, indent=2, ensure_ascii=False))
        return
    _echo_voice_item(item)


def _echo_voice_item(item: dict) -> None:
    click.echo(f"{item['id']}\t{item['kind']}\t{item['status']}")
    click.echo(f"Recorded\t{item['local_time']} by agent {item['agent']} (received {item['received_at']})")
    click.echo(f"Words\t{item['words']}")
    if item["answer"] is not None:
        click.echo(f"Answer\t{item['answer']}")
    if not item["trail"]:
        click.echo("Trail\tnothing done yet")
    for step in item["trail"]:
        click.echo(f"Trail\t{step['n']}. {step['at']} {step['action']} by {step['by']}: {step['note']}")


def _follow_up_command(action: str, summary: str, example: str):
    """``voice resolve``, ``voice reopen`` and ``voice note``: one step appended to the item's trail."""

    @voice.command(action, help=f"{summary}\n\nExample: {example}")
    @database_option
    @click.argument("item_id")
    @click.option("--note", required=True, help="Printable text, one line, at most 200 characters.")
    @click.option("--by", "by", required=True, help="Your name, for the audit trail.")
    def command(database_url, item_id, note, by):
        from sync_server.voice import follow_up

        open_database(database_url)
        item = _voice_call(follow_up, item_id, action, note=note, by=by)
        click.echo(f"{item['id']} is {item['status']} (step {len(item['trail'])} of its trail).")

    return command


voice_resolve = _follow_up_command(
    "resolve", "Resolve an item; the note is the answer, sent to the station with its next sync (customer voice "
    "only; a stopped scam's note stays at the bank).",
    'sync-server voice resolve ST-0001:12 --note "已增加零钞备付 More small notes from Monday" --by "Li Wei"')
voice_reopen = _follow_up_command(
    "reopen", "Reopen a resolved item (the station is told its answer is withdrawn).",
    'sync-server voice reopen ST-0001:12 --note "customer called again" --by "Li Wei"')
voice_note = _follow_up_command(
    "note", "Add a note to an item's trail without changing its status (it stays at the bank).",
    'sync-server voice note ST-0001:12 --note "asked the branch about small notes" --by "Li Wei"')


# -- users: bank-side accounts for the branch dashboard -------------------------------------------------------------
@cli.group()
def users():
    """Bank staff accounts for the branch dashboard at /dashboard/ (never a customer's or an agent's)."""


def _user_call(fn, *args):
    from sync_server.bank_users import UserError

    try:
        return fn(*args)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc


def _read_password(password_file: str | None) -> str:
    """The first line of ``password_file``, else the password asked twice, hidden."""
    if password_file:
        try:
            lines = Path(password_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"Cannot read {password_file}: {exc}.") from exc
        return lines[0] if lines else ""
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


_PASSWORD_FILE_HELP = "Read the password from this file's first line instead of asking (asked twice, hidden)."


@users.command("add")
@database_option
@click.argument("name")
@click.option("--role", type=click.Choice(["manager"]), default="manager", show_default=True,
              help="What the account may do: managers read the dashboard.")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False), help=_PASSWORD_FILE_HELP)
def users_add(database_url, name, role, password_file):
    """Add a dashboard account; the password is asked twice (hidden) unless --password-file gives it.

    Example: sync-server users add wangfang --role manager
    """
    from sync_server.bank_users import check_name, check_password

    _user_call(check_name, name)
    password = _read_password(password_file)
    _user_call(check_password, password)
    from sync_server.bank_users import add_user

    open_database(database_url)
    _user_call(add_user, name, password, role)
    click.echo(f"User {name} ({role}) added.")


@users.command("list")
@database_option
@click.option("--json", "as_json", is_flag=True)
def users_list(database_url, as_json):
    """List dashboard accounts: name, role, enabled or disabled, created, last login.

    Example: sync-server users list
    """
    from sync_server.bank_users import list_users

    open_database(database_url)
    rows = [{**row, "state": "disabled" if row["disabled"] else "enabled"} for row in list_users()]
    if as_json:
        click.echo(json.dumps([{k: v for k, v in row.items() if k != "state"} for row in rows], indent=2))
        return
    _echo_rows(rows, False, ("name", "role", "state", "created_at", "last_login_at"))


@users.command("disable")
@database_option
@click.argument("name")
def users_disable(database_url, name):
    """Disable a dashboard account: its session ends now and it can no longer log in.

    Example: sync-server users disable wangfang
    """
    from sync_server.bank_users import disable_user

    open_database(database_url)
    _user_call(disable_user, name)
    click.echo(f"User {name} disabled.")


@users.command("enable")
@database_option
@click.argument("name")
def users_enable(database_url, name):
    """Let a disabled dashboard account log in again, with the password it had.

    Example: sync-server users enable wangfang
    """
    from sync_server.bank_users import enable_user

    open_database(database_url)
    _user_call(enable_user, name)
    click.echo(f"User {name} enabled.")


@users.command("password")
@database_option
@click.argument("name")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False), help=_PASSWORD_FILE_HELP)
def users_password(database_url, name, password_file):
    """Set a dashboard account's new password (asked twice, hidden, unless --password-file gives it); the user's
    session ends now, so they log in again with it.

    Example: sync-server users password wangfang
    """
    from sync_server.bank_users import check_password, list_users, set_password

    open_database(database_url)
    if name not in {user["name"] for user in list_users()}:  # before asking for a password in vain
        raise click.ClickException(f"There is no user {name!r}.")
    password = _read_password(password_file)
    _user_call(check_password, password)
    _user_call(set_password, name, password)
    click.echo(f"Password of {name} set; their session has ended.")


@cli.group()
def dashboard():
    """The branch dashboard at /dashboard/ (docs/operations.md, "The branch dashboard")."""


@dashboard.command("catch-up")
@database_option
def dashboard_catch_up(database_url):
    """Read the times of every entry synced since the dashboard last looked (each token once), so that the next page
    view need not: run it once after upgrading to this release (the first view would otherwise read the whole
    history), or from cron on a busy bank. Safe to run at any time, also while the server serves.

    Example: sync-server dashboard catch-up
    """
    from sync_server.dashboard_data import read_entry_times

    database = open_database(database_url)
    try:
        check_schema(database)
    except (SchemaOutdated, SchemaTooNew, DatabaseError) as exc:
        raise click.ClickException(str(exc).strip()) from exc
    click.echo(f"Read the times of {read_entry_times()} entries.")


@cli.group()
def complaints():
    """12315 consumer complaints for the market regulator: list, the daily file, the regulator's answers."""


def _complaints_call(fn, *args, **kwargs):
    from sync_server.complaints import ComplaintError

    try:
        return fn(*args, **kwargs)
    except ComplaintError as exc:
        raise click.ClickException(str(exc)) from exc


@complaints.command("list")
@database_option
@click.option("--date", "day", type=click.DateTime(formats=["%Y-%m-%d"]),
              help="Only those the bank received on this local date, e.g. 2026-12-02.")
@click.option("--status", type=click.Choice(["received", "accepted", "transferred", "resolved", "rejected"]),
              help="Only complaints in this status.")
@click.option("--json", "as_json", is_flag=True)
def complaints_list(database_url, day, status, as_json):
    """List complaints (number, received UTC, station, phone masked, category, business, status, answered UTC,
    note), oldest first.

    Example: sync-server complaints list --date 2026-12-02 --status received
    """
    from sync_server.complaints import list_complaints

    open_database(database_url)
    rows = _complaints_call(list_complaints, day.date() if day else None, status)
    if not rows and not as_json:
        click.echo("No complaint.")
    _echo_rows(rows, as_json, ("complaint_no", "received_at", "station_id", "phone", "category", "business",
                               "status", "answered_at", "status_note"))


@complaints.command("show")
@database_option
@click.argument("complaint_no")
@click.option("--json", "as_json", is_flag=True)
def complaints_show(database_url, complaint_no, as_json):
    """A complaint's audit trail: each status it took, when, by which import, with the regulator's note.

    Example: sync-server complaints show ST-0001-20261202-000042
    """
    from sync_server.complaints import complaint_history

    open_database(database_url)
    _echo_rows(_complaints_call(complaint_history, complaint_no), as_json,
               ("at", "by", "status", "answered_at", "note"))


@complaints.command("export")
@database_option
@click.option("--date", "day", required=True, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="The bank's local date of receipt, e.g. 2026-12-02.")
@click.option("--format", "file_format", required=True, type=click.Choice(["csv", "json"]))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The file to write (replaced whole).")
def complaints_export(database_url, day, file_format, out):
    """Write the regulator's daily file: the complaints the bank received on that local date, phone in full.

    Example: sync-server complaints export --date 2026-12-02 --format csv --out 12315-2026-12-02.csv
    """
    from sync_server.complaints import export_complaints

    open_database(database_url)
    count = _complaints_call(export_complaints, day.date(), file_format, out)
    click.echo(f"Wrote {count} complaint{'s' if count != 1 else ''} of {day.date()} to {out}.")


@complaints.command("import-status")
@database_option
@click.argument("status_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--by", "by", default=_login_name, show_default="your login name", help="Your name, for the audit trail.")
def complaints_import_status(database_url, status_file, by):
    """Apply the regulator's answers (CSV or JSON: complaint_no, status, note, answered_at): every line or none,
    each bad line reported; a status never goes back, nor away from resolved or rejected. Safe to run twice.

    Example: sync-server complaints import-status answers-2026-12-03.csv --by "Wang Fang"
    """
    from sync_server.complaints import import_statuses

    open_database(database_url)
    result = _complaints_call(import_statuses, status_file, by)
    click.echo(f"Applied {result.applied} answer{'s' if result.applied != 1 else ''}"
               f" ({result.unchanged} unchanged).")
