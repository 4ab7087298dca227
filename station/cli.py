"""The ``station`` command: thin click wrappers around the library functions."""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from datetime import timedelta
from pathlib import Path

import click
from peewee import DatabaseError

from station import ime
from station.context import DATA_DIR_ENV, Station, StationNotInitialised, resolve_data_dir
from station.db import DatabaseDamaged, SchemaMismatch, SchemaTooNew, damaged, schema_version, sqlite_damage
from station.protocol.commands import GuardedGroup
from station.provision import init_station

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    envvar=DATA_DIR_ENV,
    default=None,
    help=f"The station's data folder (database, keys, config). Default: ${DATA_DIR_ENV} or ./station-data.",
)


def open_station(data_dir, *, check_head: bool = True) -> Station:
    try:
        return Station(resolve_data_dir(data_dir), check_head=check_head)
    except (StationNotInitialised, DatabaseDamaged, SchemaTooNew, SchemaMismatch) as exc:
        raise click.ClickException(str(exc)) from exc


class StationCommands(GuardedGroup):
    """The ``station`` group: a database found damaged while any command runs (after the check at opening: a page
    read later, text that is not UTF-8, a setting that is not JSON) ends the command with the damaged-database
    message and exit 1, never a traceback. Any other unexpected error: ``GuardedGroup`` (one line, exit 70)."""

    def foreseen(self, exc: Exception) -> click.ClickException | None:
        if isinstance(exc, DatabaseDamaged):
            return click.ClickException(str(exc))
        damage = sqlite_damage(exc) if isinstance(exc, DatabaseError | sqlite3.DatabaseError) else None
        return None if damage is None else click.ClickException(str(damaged("of this station", damage)))


@click.group(cls=StationCommands)
def cli():
    """Village service station: offline banking operations with signed, hash-chained receipts."""


@cli.command()
@data_dir_option
@click.option("--station-id", required=True, help="The station's id, e.g. ST-0001.")
@click.option("--demo", is_flag=True, help="Also load demo customers, billers and agents (see README).")
def init(data_dir, station_id, demo):
    """Create a station's keys, database and signed start entry (for demos and tests).

    Example: station init --data-dir /tmp/st1 --station-id ST-0001 --demo
    """
    from station.demo import load_demo_customers

    target = resolve_data_dir(data_dir)
    try:
        st = init_station(target, station_id)
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from exc
    if demo:
        load_demo_customers(st)
    click.echo(f"Station {station_id} initialised in {target} (key id {st.signer.kid}).")


@cli.command()
@data_dir_option
@click.option("--transactions", "-n", type=click.IntRange(min=1), required=True, help="How many operations.")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed (same seed, same day).")
@click.option("--start", type=click.DateTime(formats=["%Y-%m-%dT%H:%M"]), default=None,
              help="Local time the simulated activity starts (default: after the journal's last entry).")
def simulate(data_dir, transactions, seed, start):
    """Run a realistic random mix of operations through the station's own functions.

    Example: station simulate --data-dir /tmp/st1 --transactions 200 --seed 3 --start 2026-11-02T07:40
    """
    from station.errors import StationError
    from station.simulate import StartBeforeJournal
    from station.simulate import simulate as run

    st = open_station(data_dir)
    if start is not None:
        start = start.replace(tzinfo=st.timezone)
    try:
        outcomes = run(st, transactions, seed=seed, start=start)
    except StartBeforeJournal as exc:
        raise click.ClickException(str(exc)) from exc
    except StationError as exc:  # the station refused the day's open or close (a revoked station, say)
        raise click.ClickException(exc.message) from exc
    click.echo(json.dumps(outcomes, indent=2, ensure_ascii=False))


def _bank_head(acked_seq, head):
    if (acked_seq is None) != (head is None):
        raise click.UsageError("--acked-seq and --head go together (both from `sync-server station list --json`).")
    return None if acked_seq is None else (acked_seq, head)


@cli.command("verify-journal")
@data_dir_option
@click.option("--export", "export_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Verify an exported folder (from `station export-journal`) instead of a station's database.")
@click.option("--jwks", "jwks_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The trust anchor for --export: the station's keys as the bank publishes them "
                   "(GET /api/v1/stations/ID/jwks), never the export's own jwks.json.")
@click.option("--station-id", default=None, help="With --export: the station audited (default: the first entry's).")
@click.option("--acked-seq", type=click.IntRange(min=1), default=None,
              help="The seq the bank acknowledged (with --head): entries deleted from the end are then caught.")
@click.option("--head", default=None, help="The bank's chain head at --acked-seq.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_journal_cmd(data_dir, export_dir, jwks_file, station_id, acked_seq, head, as_json):
    """Check signatures, the hash chain, gapless seq, then what the entries say together. Exit 1 on any problem.

    The station's database must pass `PRAGMA integrity_check` first. After the chain: JSON integer types, each txn
    once, reversals and cancellations pointing at the right entry, the drawer replayed through every day open and
    close, and the operation and business-day rows against their entries. Every problem is listed, the first as
    "BROKEN at seq N".

    Example: station verify-journal --data-dir /tmp/st1 --json

    Example: station verify-journal --export /tmp/st1-export --jwks st1-bank.jwks.json --acked-seq 120 --head ...
    """
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    from station.journal import audit_export, audit_journal
    from station.protocol.journal_export import ExportError

    bank_head = _bank_head(acked_seq, head)
    if export_dir is None:
        if jwks_file or station_id:
            raise click.UsageError("--jwks and --station-id go with --export.")
        audit = audit_journal(open_station(data_dir, check_head=False), bank_head=bank_head)
    else:
        if jwks_file is None:
            raise click.UsageError("--export needs --jwks: the station's keys from the bank, the trust anchor.")
        try:
            keys = KeySet.import_key_set(json.loads(Path(jwks_file).read_text(encoding="utf-8")))
        except (ValueError, TypeError, KeyError, JoseError) as exc:
            raise click.ClickException(f"{jwks_file} is not a JWKS: {exc}") from exc
        try:
            audit = audit_export(Path(export_dir), keys, station_id, bank_head=bank_head)
        except ExportError as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(audit.as_dict(), ensure_ascii=False))
    elif audit.intact:
        click.echo(f"Journal of {audit.station} intact: {audit.entries} entries verified.")
    else:
        first, *others = audit.problems
        click.echo(f"Journal of {audit.station} BROKEN at seq {first.seq}: {first.reason}", err=True)
        for problem in others:
            click.echo(f"Journal of {audit.station}: seq {problem.seq}: {problem.reason}", err=True)
    sys.exit(0 if audit.intact else 1)


@cli.command("rotate-key")
@data_dir_option
@click.option("--reason", type=click.Choice(["technician", "scheduled", "bank_request"]), default="technician",
              show_default=True, help="Why the key is rotated (written in the rotation entry).")
def rotate_key_cmd(data_dir, reason):
    """Replace the station's signing key: a key_rotation entry, signed with the old key, names the new one.

    Safe while `station serve` runs. Receipts signed with either key keep verifying; the old private key is deleted
    once the bank has acknowledged the rotation (at once on a station that does not sync).

    Example: station rotate-key --data-dir /var/lib/station
    """
    from station.errors import StationBusy
    from station.rotation import rotate_key

    st = open_station(data_dir)
    old_kid = st.signer.kid
    try:
        entry = rotate_key(st, reason)
    except StationBusy as exc:
        raise click.ClickException("The station is busy writing; try again in a moment.") from exc
    click.echo(f"Station {st.station_id}: key {old_kid} handed over to {st.signer.kid} at seq {entry.seq}. "
               "Sync to let the bank know.")


@cli.command("export-journal")
@data_dir_option
@click.argument("out", type=click.Path(file_okay=False))
def export_journal(data_dir, out):
    """Write OUT/journal.jsonl (seq, type, jws per line) and OUT/jwks.json for offline verification.

    Example: station export-journal --data-dir /tmp/st1 /tmp/st1-export
    """
    from station.journal import export_journal as run

    st = open_station(data_dir)
    count = run(st, Path(out))
    click.echo(f"Exported {count} entries of {st.station_id} to {out}.")


@cli.command()
@data_dir_option
def summary(data_dir):
    """Summarise the journal: entries by type, money by operation type, drawer cash.

    Example: station summary --data-dir /tmp/st1
    """
    from station.reports import summarise

    st = open_station(data_dir)
    click.echo(json.dumps(summarise(st), indent=2, ensure_ascii=False))


@cli.command()
@data_dir_option
@click.argument("settings")
def printer(data_dir, settings):
    """Set the receipt printer (the "printer" object of config.json), checked before it is saved.

    Example: station printer --data-dir /var/lib/station '{"kind": "network", "host": "127.0.0.1", "port": 9100}'
    """
    from station.printer import PrinterError, printer_settings

    st = open_station(data_dir)
    try:
        value = json.loads(settings)
    except ValueError as exc:
        raise click.ClickException(f"SETTINGS is not JSON: {exc}") from exc
    st.config["printer"] = value  # checked in memory; config.json changes only once it passes
    try:
        printer_settings(st)
    except PrinterError as exc:
        raise click.ClickException(exc.message) from exc
    st.update_config("printer", value)
    click.echo(f"Printer of {st.station_id} set: {json.dumps(value, ensure_ascii=False)}")


def serve_app(app, host: str, port: int) -> None:
    """Serve ``app`` with waitress in this one process (the station's database allows one writer process)."""
    from waitress import serve as waitress_serve

    # The pinyin keyboard's index takes seconds to build on a Pi: build it now, not on the first keystroke.
    ime.warm_up()
    waitress_serve(app, host=host, port=port, threads=4, ident="station")


@cli.command()
@data_dir_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Keep 127.0.0.1: the touchscreen's browser runs on the same device.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="TCP port.")
def serve(data_dir, host, port):
    """Run the touchscreen UI under waitress (one process).

    On a data folder with no station yet it shows the enrollment screen (scan the bank's QR, or type the code
    with $STATION_SERVER_URL set), then the station's own screens once enrolled, without a restart.

    Example: station serve --data-dir /var/lib/station --port 8080
    """
    from station.serving import Serving

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # peewee's DEBUG log prints every query's parameters (card numbers among them): never below INFO.
    logging.getLogger("peewee").setLevel(logging.INFO)
    serving = Serving(resolve_data_dir(data_dir), echo=click.echo)
    try:
        try:
            app = serving.app()
        except (DatabaseDamaged, SchemaTooNew, SchemaMismatch) as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"Serving on http://{host}:{port}/")
        # Under systemd (station.service): READY=1 once /health answers, then the watchdog; otherwise nothing.
        from station.systemd import health_url, start_watchdog

        start_watchdog(health_url(host, port))
        serve_app(app, host, port)
    finally:
        serving.shutdown()


@cli.command()
@data_dir_option
@click.option("--server", "server_url", required=True, help="The bank's sync server, e.g. https://sync.bank.example.")
@click.option("--code", required=True, help="The one-time enrollment code from `sync-server station add`.")
@click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CA bundle to verify the server's TLS certificate (default: the system's CAs).")
def enroll(data_dir, server_url, code, ca_bundle):
    """Create this device's keys and enroll it with the bank; pins the server's keys.

    Example: station enroll --server https://sync.bank.example --code K7QX-M2PD-9HWT --data-dir /var/lib/station
    """
    from station.sync import EnrollError, enroll_station

    target = resolve_data_dir(data_dir)
    try:
        st = enroll_station(target, server_url, code, ca_bundle=ca_bundle)
    except EnrollError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Enrolled as station {st.station_id} in {target} (key id {st.signer.kid}). Run `station sync`.")


@cli.command()
@data_dir_option
def sync(data_dir):
    """Send everything not yet acknowledged to the bank now; exit 0 only when all of it is acknowledged.

    Example: station sync --data-dir /var/lib/station
    """
    from station.sync import SyncError, sync_once

    st = open_station(data_dir)
    try:
        result = sync_once(st)
    except SyncError as exc:
        raise click.ClickException(f"Sync failed: {exc}") from exc
    rejected = f", {len(result.rejected)} rejected by the bank" if result.rejected else ""
    click.echo(f"Acknowledged through seq {result.acked_seq}: {result.entries} entries in {result.batches} "
               f"batches{rejected}.")
    if result.pending:
        raise click.ClickException(f"{result.pending} entries still wait for the bank.")


@cli.command()
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(data_dir, as_json):
    """Station id, last sync, acked seq, pending entries, unsynced exposure, drawer cash, database schema version.

    Example: station status --data-dir /var/lib/station --json
    """
    from station.protocol.money import format_yuan
    from station.sync import station_status

    st = open_station(data_dir)
    info = {**station_status(st), "schema_version": schema_version(st.db)}
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False))
        return
    drawer = "day not open" if info["drawer_cash_fen"] is None else format_yuan(info["drawer_cash_fen"])
    click.echo(f"Station {info['station_id']} (server {info['server'] or 'not enrolled'})\n"
               f"Link: {link_in_words(info)}\n"
               f"Last successful sync: {last_sync_words(info)}"
               f"{sync_failure_in_words(info)}\n"
               f"Oldest entry waiting: {waiting_in_words(info['oldest_waiting_seconds'])}\n"
               f"Acknowledged through seq {info['acked_seq']} of {info['head_seq']}; "
               f"{info['pending_entries']} entries waiting\n"
               f"Unsynced debits: {info['unsynced_debits']} totalling {format_yuan(info['unsynced_exposure_fen'])}\n"
               f"Drawer cash: {drawer}\n"
               f"Database schema version: {info['schema_version']}")
    if info["last_sync_error"]:
        click.echo(f"Last sync error: {info['last_sync_error']}")
    if info["revoked"]:
        click.echo(f"REVOKED by the bank (refused at {info['revoked'].get('at')}): no new operations; call the bank.")
    elif info["device_state"] == "storage_full":
        click.echo("STORAGE FULL: no new operations until space is freed in the data folder; receipts and sync go on.")
    elif info["device_state"] == "clock_not_set":
        click.echo("Clock not set (before this release): no new operations until network time arrives.")
    elif info["device_state"] == "clock_wrong":
        click.echo(f"CLOCK WRONG: it reads earlier than what this station already recorded ({info['clock_floor']}) "
                   "by more than a few seconds. No new operations until the clock is set right (check NTP). If it is "
                   "right now (it ran ahead and was set right): `station clock show`, then `station clock accept`.")
    if (info["clock_corrected"] or {}).get("sync_unknown"):
        click.echo(_correction_words(info["clock_corrected"]))


#: Each link or sync failure reason in words for the technician (``station.sync.SYNC_FAILURE_REASONS``, and the
#: link state's own reasons).
REASON_WORDS = {
    "never": "no answer from the bank yet",
    "no_recent_answer": "no answer from the bank lately",
    "slow": "the bank answers slowly",
    "intermittent": "requests fail now and then",
    "not_enrolled": "not enrolled with a bank",
    "dns": "the server's name does not resolve (DNS)",
    "refused": "connection refused",
    "tls": "TLS failed",
    "timeout": "timed out",
    "reset": "connection reset",
    "unreachable": "network unreachable",
    "http_5xx": "the server answered with an error (5xx)",
    "http_4xx": "the bank refused the request (4xx)",
    "busy": "the server is busy (429): tried again later",
    "revoked": "the bank revoked this station",
    "bad_answer": "an answer that is not the bank's (does not verify)",
    "flagged": "the bank flagged this station after a fork",
    "storage_full": "storage full: the bank's answer could not be saved (asked again at the next sync)",
    "local": "a problem on this device",
}


def link_in_words(info: dict) -> str:
    """The measured link state of ``station_status`` in one line."""
    words = info["link"].upper()
    if info["link_reason"]:
        words += f" ({REASON_WORDS.get(info['link_reason'], info['link_reason'])})"
    words += f"; last answer from the bank {info['last_success_at'] or 'never'}"
    if info["last_failure_at"]:
        words += (f"; last failure {info['last_failure_at']} "
                  f"({REASON_WORDS.get(info['last_failure_reason'], info['last_failure_reason'])})")
    return words


def last_sync_words(info: dict) -> str:
    """When the last sync succeeded: its time, "never", or unknown after a clock correction (``station.clock``)."""
    corrected = info["clock_corrected"] or {}
    if corrected.get("sync_unknown"):
        return f"unknown (stamped by the clock ahead; the clock was corrected at {corrected.get('at')})"
    return info["last_sync_at"] or "never"


def sync_failure_in_words(info: dict) -> str:
    """", last sync FAILED at T (reason)" when the last sync failed after the last success, else ""."""
    failed = info["last_sync_failed_at"]
    if not failed or (info["last_sync_at"] and info["last_sync_at"] >= failed):
        return ""
    reason = info["last_sync_failure_reason"]
    return f"; the last sync FAILED at {failed} ({REASON_WORDS.get(reason, reason)})"


def waiting_in_words(seconds: int | None) -> str:
    """The age of the oldest entry waiting for the bank, or "none"."""
    if seconds is None:
        return "none"
    minutes, _ = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


@cli.command("wait-ready")
@click.option("--url", default="http://127.0.0.1:8080/health", show_default=True,
              help="The station's health URL to ask.")
@click.option("--timeout", type=click.FloatRange(min=0), default=120, show_default=True,
              help="Seconds to wait before giving up.")
def wait_ready(url, timeout):
    """Wait until the station answers on its /health URL; exit 1 if it does not within --timeout.

    The kiosk (station-kiosk.service) runs this before it starts the browser.

    Example: station wait-ready --url http://127.0.0.1:8080/health --timeout 120
    """
    from math import isfinite

    from station.systemd import wait_until_answers

    if not url.startswith(("http://", "https://")):
        raise click.BadParameter("give an http:// or https:// URL, e.g. http://127.0.0.1:8080/health",
                                 param_hint="--url")
    if not isfinite(timeout):
        raise click.BadParameter("give a number of seconds, e.g. 120", param_hint="--timeout")
    if not wait_until_answers(url, timeout):
        raise click.ClickException(f"The station did not answer at {url} within {timeout:g} s.")
    click.echo(f"The station answers at {url}.")


# -- backup and restore ---------------------------------------------------------------------------------------
def _size_text(size: int) -> str:
    if size < 1000:
        return f"{size} bytes"
    return f"{size / 1000:.1f} kB" if size < 1_000_000 else f"{size / 1_000_000:.1f} MB"


@cli.command()
@data_dir_option
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def backup(data_dir, out, force):
    """Write one archive OUT (mode 0600) of the database, keys and config, consistent while the station serves.

    Example: station backup --data-dir /var/lib/station /var/backups/station/ST-0001-2026-11-02.tar.gz
    """
    from station.backup import BackupError, backup_station

    st = open_station(data_dir)
    try:
        result = backup_station(st, out, force=force)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        st.close()
    click.echo(f"Backed up station {result.station_id} (journal to seq {result.head_seq}, acknowledged by the bank "
               f"to seq {result.acked_seq}) to {result.path}: {_size_text(result.size)}.")


@cli.command()
@data_dir_option
@click.argument("archive", type=click.Path(dir_okay=False))
@click.option("--replace", is_flag=True,
              help="The data folder holds a station: keep it aside (renamed, with the time) and restore in its place.")
@click.option("--without-bank", is_flag=True,
              help="Do not ask the bank for its head of the station (only when it cannot be reached; see the docs).")
def restore(data_dir, archive, replace, without_bank):
    """Check a backup ARCHIVE and put it in the data folder; refuses a backup older than the bank's head.

    Example: station restore --data-dir /var/lib/station /media/usb/ST-0001-2026-11-02.tar.gz
    """
    from station.backup import BackupError, restore_backup

    target = resolve_data_dir(data_dir)
    try:
        result = restore_backup(archive, target, replace=replace, without_bank=without_bank)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Restored station {result.station_id} into {result.target}: journal to seq {result.head_seq}.")
    if result.bank is not None:
        pending = result.head_seq - result.bank.acked_seq
        click.echo(f"The bank holds its journal to seq {result.bank.acked_seq}; "
                   f"{pending} entries will be sent at the next sync." if pending else
                   f"The bank holds its journal to seq {result.bank.acked_seq}, as this backup does.")
    elif without_bank:
        click.echo("Not checked with the bank (--without-bank): run `station sync` as soon as the network is up; "
                   "a refusal then means this backup was older than the bank's copy (see docs/operations.md).")
    else:
        click.echo("Not enrolled with a bank: nothing to check.")
    if result.set_aside is not None:
        click.echo(f"The folder that was there is kept as {result.set_aside}.")


# -- the shop's people: agents and supervisors ------------------------------------------------------------------
@cli.group()
def agent():
    """The people who log in at the counter: agents and supervisors."""


def _read_pin_line() -> str:
    """The PIN on the first line of standard input (``--pin-stdin``), without its line ending."""
    return sys.stdin.readline().rstrip("\r\n")


@agent.command("add")
@data_dir_option
@click.option("--id", "agent_id", required=True,
              help="What they log in as: 1 to 16 letters A-Z, digits or dashes, e.g. A01 (lower case is upper-cased).")
@click.option("--name", required=True, help="Their name as the login screen shows it (at most 40 characters).")
@click.option("--role", type=click.Choice(["agent", "supervisor"]), required=True,
              help="agent: serves customers; supervisor: also unlocks agents and signs off the day.")
@click.option("--pin-stdin", is_flag=True,
              help="Read the PIN from the first line of standard input (scripts) instead of asking for it twice.")
def agent_add(data_dir, agent_id, name, role, pin_stdin):
    """Add an agent or a supervisor. The PIN (4 to 6 digits, not 1111 or 1234) is asked twice, hidden; the
    journal records an agent_added entry, never the PIN.

    Example: station agent add --data-dir /var/lib/station --id S01 --name 刘秀英 --role supervisor

    Example: echo 2580 | station agent add --id A02 --name "Wang Fang" --role agent --pin-stdin
    """
    from station.agents import add_agent, list_agents, new_agent_fields
    from station.errors import InvalidAgentId, InvalidAgentName, StationError

    try:
        agent_id, name = new_agent_fields(agent_id, name, role)
    except (InvalidAgentId, InvalidAgentName) as exc:
        hint = "--id" if isinstance(exc, InvalidAgentId) else "--name"
        raise click.BadParameter(exc.message, param_hint=hint) from exc
    st = open_station(data_dir)
    try:
        if any(existing.agent_id == agent_id for existing in list_agents(st)):
            # Said before the PIN is typed twice for nothing (add_agent checks again inside its write).
            raise click.ClickException(f"Station {st.station_id} has an agent {agent_id} already: choose another ID.")
        if pin_stdin:
            pin = _read_pin_line()
        else:
            pin = click.prompt("PIN (4 to 6 digits)", hide_input=True, confirmation_prompt="PIN again")
        try:
            added = add_agent(st, agent_id, name, role, pin)
        except StationError as exc:
            raise click.ClickException(exc.message) from exc
        click.echo(f"Added {role} {added.agent_id} ({added.name}) to station {st.station_id}.")
    finally:
        st.close()


@agent.command("list")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def agent_list(data_dir, as_json):
    """List the station's agents and supervisors: ID, name, role, and whether wrong PINs locked them (LOCKED) or
    made the last supervisor wait (WAIT; `station agent unlock` lifts either).

    Example: station agent list --data-dir /var/lib/station
    """
    from station.agents import list_agents, pin_wait

    st = open_station(data_dir)
    try:
        rows = [{"id": a.agent_id, "name": a.name, "role": a.role, "locked": bool(a.locked)} for a in list_agents(st)]
        waiting = {row["id"] for row in rows if not row["locked"] and pin_wait(st, row["id"])}
    finally:
        st.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    elif not rows:
        click.echo("No agents yet: add the supervisor first (`station agent add --role supervisor ...`).")
    else:
        for row in rows:
            state = "LOCKED" if row["locked"] else "WAIT" if row["id"] in waiting else "ok"
            click.echo(f"{row['id']:<16} {row['role']:<10} {state:<6} {row['name']}")


@agent.command("unlock")
@data_dir_option
@click.argument("agent_id")
def agent_unlock(data_dir, agent_id):
    """The technician unlocks an agent that wrong PINs locked (or a supervisor made to wait): journaled as an
    agent_unlocked entry by the technician, which the bank sees at the next sync.

    On the screen a supervisor unlocks an agent with their own PIN; with no supervisor at hand and no technician,
    the bank reads out a one-time code (docs/operations.md, "Locked out").

    Example: station agent unlock --data-dir /var/lib/station A01
    """
    from station.agents import technician_unlock
    from station.errors import StationError

    st = open_station(data_dir)
    try:
        receipt = technician_unlock(st, agent_id.strip().upper())
    except StationError as exc:
        raise click.ClickException(f"{agent_id}: {exc.message}") from exc
    finally:
        st.close()
    click.echo(f"Unlocked {agent_id.strip().upper()} at station {st.station_id} (journal entry {receipt.seq}).")


# -- the clock ----------------------------------------------------------------------------------------------------
@cli.group()
def clock():
    """The device's clock against what the station already wrote down; the technician's override for a clock that
    ran ahead and was set right (docs/operations.md, "The clock is wrong")."""


#: Each part of the clock floor (``station.device_state.clock_floor_parts``) in words for the technician.
FLOOR_PART_WORDS = {
    "last_entry": "the journal's last entry",
    "last_sync": "the last successful sync",
    "latest_attempt": "the latest attempt to reach the bank",
    "kept": "the floor kept by an entry stamped earlier",
}


def span_words(span) -> str:
    """A duration for a person: "3 d 4 h 10 min", "12 min 5 s", "42 s"."""
    seconds = int(abs(span).total_seconds())
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3_600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days} d {hours} h {minutes} min"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _moment_words(st, moment) -> str:
    """``2026-11-05T01:30:00.000Z (2026-11-05 09:30:00 CST)``: UTC as the journal writes it, and local time."""
    from station.protocol.times import utc_text

    local = moment.astimezone(st.timezone)
    return f"{utc_text(moment)} ({local:%Y-%m-%d %H:%M:%S} {local.tzname()})"


def _echo_clock_reading(st, reading) -> None:
    """The clock, the floor and each of its parts, as ``station clock show`` and ``accept`` print them."""
    click.echo(f"Clock now:  {_moment_words(st, reading.now)}, time zone {st.timezone.key}")
    if reading.floor is None:
        click.echo("Floor:      none (this station has written nothing down yet)")
    else:
        where = "behind" if reading.behind.total_seconds() > 0 else "ahead of"
        click.echo(f"Floor:      {_moment_words(st, reading.floor)}: the clock reads {span_words(reading.behind)} "
                   f"{where} it")
    click.echo("  the latest moment this station wrote down by its clock, the latest of:")
    for name, words in FLOOR_PART_WORDS.items():
        moment = reading.parts[name]
        mark = "  AHEAD of the clock" if moment is not None and moment > reading.now else ""
        click.echo(f"  {words + ':':<46}{_moment_words(st, moment) if moment is not None else 'none'}{mark}")


def _state_words(reading) -> list[str]:
    """The state by the clock alone and what the technician does about it."""
    from station.device_state import CLOCK_TOLERANCE, EARLIEST_PLAUSIBLE_TIME, DeviceState

    if reading.state is DeviceState.CLOCK_NOT_SET:
        return ["State:      CLOCK NOT SET: it reads before this release was built "
                f"({EARLIEST_PLAUSIBLE_TIME:%Y-%m-%d}).",
                "What to do: wait for network time (check the link; `timedatectl set-ntp true`) or set the clock by "
                "hand (`timedatectl set-time`), then look again."]
    if reading.state is DeviceState.CLOCK_WRONG:
        return [f"State:      CLOCK WRONG: the clock reads {span_words(reading.behind)} earlier than what this station "
                "already wrote down: it records nothing new.",
                "What to do: check the time against a phone. If the clock is wrong, set it (`timedatectl set-ntp "
                "true`, or `timedatectl set-time`). If it is right now (it ran ahead before and was set right), run "
                "`station clock accept --reason \"...\"`: the bank sees the correction."]
    return [f"State:      ready: the clock is not behind what this station already wrote down (by more than "
            f"{CLOCK_TOLERANCE.total_seconds():g} s). Nothing to correct."]


def _correction_words(correction: dict) -> str:
    words = (f"Last clock correction: seq {correction.get('seq')} at {correction.get('at')} (the floor was "
             f"{correction.get('floor')})")
    if correction.get("sync_unknown"):
        words += ("; the last sync time is unknown: offline withdrawals, transfers and account payments wait for a "
                  "sync with the bank (`station sync`)")
    return words + "."


@clock.command("show")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the reading as JSON.")
def clock_show(data_dir, as_json):
    """The clock now (local and UTC), the floor (the latest moment the station wrote down by its clock) and each of
    its parts, the state (ready, clock_wrong, clock_not_set) and what to do.

    Example: station clock show --data-dir /var/lib/station
    """
    from station.clock import read_clock
    from station.protocol.times import utc_text

    st = open_station(data_dir)
    try:
        reading = read_clock(st)
        if as_json:
            behind = reading.behind
            click.echo(json.dumps({
                "now": utc_text(reading.now), "timezone": st.timezone.key, "state": reading.state.value,
                "floor": None if reading.floor is None else utc_text(reading.floor),
                "behind_ms": None if behind is None else behind // timedelta(milliseconds=1),
                "parts": {name: None if moment is None else utc_text(moment)
                          for name, moment in reading.parts.items()},
                "last_correction": reading.last_correction}, ensure_ascii=False))
            return
        _echo_clock_reading(st, reading)
        for line in _state_words(reading):
            click.echo(line)
        if reading.last_correction:
            click.echo(_correction_words(reading.last_correction))
    finally:
        st.close()


@clock.command("accept")
@data_dir_option
@click.option("--reason", default=None,
              help="Why, in a few words (journaled; the bank reads it), e.g. 'fake-hwclock restored a later time'.")
@click.option("--yes", is_flag=True, help="Do not ask: the clock was already checked against a phone.")
def clock_accept(data_dir, reason, yes):
    """Accept the clock as right now: for a clock that ran ahead and was set right, so that the station, which
    refuses to record while the clock reads earlier than what it already wrote down, serves again at once.

    Journals a clock_corrected entry (the bank sees it, recon lists it), brings every part of the floor ahead of the
    clock back to it and ends every agent's session. When the last sync was stamped by the clock ahead, offline
    withdrawals, transfers and account payments wait for the next sync with the bank.

    Example: station clock accept --data-dir /var/lib/station --reason "fake-hwclock restored a later time"
    """
    from station.clock import accept_clock, clean_reason, read_clock
    from station.device_state import DeviceState, device_state
    from station.errors import ClockNotBehind, ClockNotSet, InvalidClockReason, StationBusy, StationError, StorageFull
    from station.protocol.times import utc_text

    try:
        reason = clean_reason(reason)
    except InvalidClockReason as exc:
        raise click.BadParameter(exc.message, param_hint="--reason") from exc
    st = open_station(data_dir)
    try:
        reading = read_clock(st)
        if reading.state is DeviceState.CLOCK_NOT_SET:
            raise ClockNotSet()
        if reading.state is not DeviceState.CLOCK_WRONG:
            raise ClockNotBehind()
        if not yes:
            _echo_clock_reading(st, reading)
            if not click.confirm(f"Is the clock right NOW ({reading.now.astimezone(st.timezone):%H:%M on %Y-%m-%d}, "
                                 "local time)? Check it against a phone"):
                raise click.ClickException("Nothing recorded. Set the clock right (`timedatectl set-ntp true`, or "
                                           "`timedatectl set-time`), then run `station clock show` again.")
        correction = accept_clock(st, reason)
        state = device_state(st)
    except ClockNotSet as exc:
        raise click.ClickException(
            "The clock is not set (it reads before this release was built): there is nothing to accept. Wait for "
            "network time or set the clock (`timedatectl`), then run `station clock show`.") from exc
    except ClockNotBehind as exc:
        floor = read_clock(st).floor
        raise click.ClickException(
            "The clock is not behind what this station already wrote down "
            f"({'nothing yet' if floor is None else utc_text(floor)}): nothing to correct.") from exc
    except StorageFull as exc:
        raise click.ClickException(f"Storage is full: the correction was not recorded. Free space in {st.data_dir}'s "
                                   "file system, then accept again.") from exc
    except StationBusy as exc:
        raise click.ClickException("The station is busy writing; try again in a moment.") from exc
    except StationError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        st.close()
    behind = span_words(timedelta(milliseconds=correction.behind_ms))
    click.echo(f"Clock corrected at seq {correction.seq}: it read {behind} behind {utc_text(correction.floor)}; the "
               f"floor is now {utc_text(correction.at)}. Agents log in again.")
    if correction.sync_unknown:
        click.echo("The last sync was stamped by the clock ahead, so when the station last heard from the bank is "
                   "unknown: offline withdrawals, transfers and account payments wait for a sync. Run `station sync` "
                   "now.")
    else:
        click.echo("Run `station sync` to let the bank know.")
    if state is not DeviceState.READY:
        click.echo(f"The station still records nothing new: {state.value.replace('_', ' ')} "
                   "(`station status` says what to do).")
