"""Operator tasks behind the ``sync-server`` command: stations, enrollment codes, imports, demo data.

Imports validate every row first and report every bad row by its line number; only a file without errors is
written, in one transaction, so nothing is ever half-imported.
"""

from __future__ import annotations

import csv
import io
import random
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from peewee import fn
from stdnum import luhn

from station.protocol.demo_data import (
    DEMO_CUSTOMER_PIN,
    DEMO_PIN_LOG2_N,
    GIVEN_NAMES,
    SURNAMES,
    demo_billers,
    demo_birth_year,
    demo_risk_level,
    demo_wmp_products,
)
from station.protocol.enrollment_qr import STATION_ID_PATTERN
from station.protocol.money import AmountError, parse_amount
from station.protocol.pins import PIN_RE, make_pin_verifier
from station.protocol.times import parse_utc, utc_text
from sync_server.authorize import cancellation_pending
from sync_server.book import Book, station_account
from sync_server.db import (
    Account,
    Authorization,
    Biller,
    BlockedPayee,
    Customer,
    Entry,
    Hold,
    HomeStation,
    KnownPayee,
    Posting,
    ReconItem,
    ServerSetting,
    Station,
    Transfer,
    WmpProduct,
    db_proxy,
    is_postgres,
)
from sync_server.lifecycle import (
    MAX_NAME_CHARS,
    MAX_REASON_CHARS,
    operator_text,
    record_event,
)
from sync_server.policy import DEFAULT_SERVER_POLICY, clock_offset_flagged, server_policy, station_policy
from sync_server.service import new_enrollment_code

BANK_BOOKING = "BANK"


class AdminError(RuntimeError):
    """An operator request that cannot be done (message says why)."""


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class ImportFailed(AdminError):
    def __init__(self, errors: list[RowError]):
        self.errors = errors
        super().__init__("nothing imported; fix these rows:\n" + "\n".join(str(e) for e in errors))


# -- stations -----------------------------------------------------------------------------------------------
#: Longest name, village and agent the enrollment sheet prints on a station's card.
STATION_TEXT_LIMITS = {"name": 60, "village": 60, "agent": 40, "county": 60}


def station_text(field: str, value: str | None) -> tuple[str, str | None]:
    """A station's ``field`` as stored: runs of spaces (also the full-width one) made one, ends trimmed; and the
    problem with it (a control or other unprintable character, too long, a name left empty), or None."""
    value = value or ""
    for position, ch in enumerate(value, start=1):
        if not (ch.isprintable() or unicodedata.category(ch) == "Zs"):
            return value, f"{field} holds a character that cannot be printed (U+{ord(ch):04X} at position {position})"
    text = " ".join(value.split())
    if field == "name" and not text:
        return text, "name is empty"
    if len(text) > STATION_TEXT_LIMITS[field]:
        return text, f"{field} is longer than {STATION_TEXT_LIMITS[field]} characters"
    return text, None


def check_station_id(station_id: str | None) -> str | None:
    """The problem with a station id, or None."""
    if STATION_ID_PATTERN.fullmatch(station_id or ""):
        return None
    return "a station id is 1 to 40 letters, digits, '-' or '_', e.g. ST-0001"


def add_station(station_id: str, name: str, village: str | None = None, agent: str | None = None,
                county: str | None = None) -> str:
    """Register a station (or issue a new code for one not yet enrolled, taking the name and any village, agent or
    county given); returns a one-time enrollment code."""
    problems = [check_station_id(station_id)]
    details = {}
    for field, value in (("name", name), ("village", village), ("agent", agent), ("county", county)):
        if value is not None:
            details[field], problem = station_text(field, value)
            problems.append(problem)
    problems = [problem for problem in problems if problem]
    if problems:
        message = "; ".join(problems)
        raise AdminError(message[0].upper() + message[1:] + ".")
    details = {field: value or None for field, value in details.items()}
    with db_proxy.atomic():
        station = Station.get_or_none(Station.station_id == station_id)
        if station is None:
            Station.create(station_id=station_id, created_at=utc_text(datetime.now(UTC)), **details)
        elif station.status != "pending":
            # A second device under the same id would restart the journal at seq 1: a fork. Never allow it.
            raise AdminError(f"Station {station_id} is {station.status}; a replacement device gets a new id "
                             f"(revoke {station_id} first if the old device is lost).")
        else:
            Station.update(**details).where(Station.station_id == station_id).execute()
        return new_enrollment_code(station_id)


def list_stations() -> list[dict]:
    """Every station with its status, flag, sync state, chain head, enrolled signing key and clock.

    ``acked_seq``/``head`` and ``signing_jwk`` are what an auditor of an exported journal needs from the bank:
    the outside head that catches entries deleted from the end, and the trust anchor. ``clock_offset_ms`` is the
    bank's time minus the station's as measured at its last sync (positive: the station's clock is behind);
    ``clock_wrong`` says it is beyond the policy's limit (``sync_server.policy.clock_offset_limit_ms``).
    """
    policy = server_policy()
    return [
        {"station_id": s.station_id, "name": s.name, "status": s.status, "flagged": s.flagged,
         "flag_reason": s.flag_reason, "acked_seq": s.acked_seq, "head": s.head, "signing_jwk": s.signing_jwk,
         "last_sync_at": s.last_sync_at, "clock_offset_ms": s.clock_offset_ms,
         "clock_wrong": clock_offset_flagged(s.clock_offset_ms, policy)}
        for s in Station.select().order_by(Station.station_id)
    ]


def list_entries(station_id: str, outcome: str | None = None) -> list[dict]:
    """A station's entries as the bank received them, in seq order: type, txn, outcome and rejection reason.

    ``type`` is what the payload said, also for a type the bank does not know (rejected as ``unknown_type``).
    """
    query = Entry.select(Entry.seq, Entry.type, Entry.txn, Entry.outcome, Entry.reason, Entry.received_at).where(
        Entry.station_id == station_id)
    if outcome is not None:
        query = query.where(Entry.outcome == outcome)
    return list(query.order_by(Entry.seq).dicts())


def list_recon_items(station_id: str | None = None) -> list[dict]:
    """Reconciliation items (e.g. ``rejected_offline_debit``: a debit the bank rejected after the agent may have
    paid the cash out), by station and seq."""
    query = ReconItem.select(ReconItem.station_id, ReconItem.seq, ReconItem.kind, ReconItem.account_id,
                             ReconItem.amount_fen, ReconItem.reason, ReconItem.created_at)
    if station_id is not None:
        query = query.where(ReconItem.station_id == station_id)
    return list(query.order_by(ReconItem.station_id, ReconItem.seq, ReconItem.kind).dicts())


def list_authorizations(station_id: str | None = None, status: str | None = None) -> list[dict]:
    """The bank's real-time authorizations, newest first: grants (active, used, expired) and refusals, with the
    money each holds (``hold_fen``, while active and not expired) and the entry that used it."""
    query = Authorization.select(
        Authorization.auth_id, Authorization.station_id, Authorization.txn, Authorization.kind,
        Authorization.account_id, Authorization.amount_fen, Authorization.fee_fen, Authorization.hold_fen,
        Authorization.status, Authorization.reason, Authorization.created_at, Authorization.expires_at,
        Authorization.execute_after, Authorization.used_seq)
    if station_id is not None:
        query = query.where(Authorization.station_id == station_id)
    if status is not None:
        query = query.where(Authorization.status == status)
    return list(query.order_by(Authorization.created_at.desc(), Authorization.auth_id).dicts())


def replace_station(station_id: str, by: str = "") -> str:
    """A one-time code with which a new device takes over an enrolled station (the old one died): it continues
    the chain from the bank's head. Import the old device's journal first if it can still be read."""
    with db_proxy.atomic():
        station = Station.get_or_none(Station.station_id == station_id)
        if station is None:
            raise AdminError(f"No station {station_id}.")
        if station.status != "active":
            raise AdminError(f"Station {station_id} is {station.status}: only an enrolled station's device is "
                             "replaced (a pending one enrolls with `station add`'s code).")
        if station.flagged:
            raise AdminError(f"Station {station_id} is flagged ({station.flag_reason}): look at it and clear the "
                             "flag first (`sync-server station show` / `clear-flag`).")
        now = datetime.now(UTC)
        code = new_enrollment_code(station_id, now, purpose="replace")
        record_event(station_id, "replacement_issued", by or "-",
                     f"replacement code issued; the bank holds seq 1..{station.acked_seq}",
                     {"acked_seq": station.acked_seq}, now=now)
        return code


def revoke_station(station_id: str, *, reason: str = "not given", by: str = "unknown") -> None:
    """Refuse the station's uploads from now on and release the allowances and real-time authorizations held for
    it (a ``revoked`` event).

    Its keys stay published (``GET /api/v1/stations/ID/jwks``) so its receipts keep verifying, and its journal can
    still be imported from the device or a backup (``journal_import``). ``sync-server station revoke`` requires
    ``reason`` and ``by``; the defaults are for scripts and tests. Text that is not printable is refused
    (``lifecycle.LifecycleError``).
    """
    reason = operator_text(reason, "the reason (--reason)", MAX_REASON_CHARS)
    by = operator_text(by, "your name (--by)", MAX_NAME_CHARS)
    now = datetime.now(UTC)
    with db_proxy.atomic():
        station = Station.get_or_none(Station.station_id == station_id)
        if station is None:
            raise AdminError(f"No station {station_id}.")
        if station.status == "revoked":
            raise AdminError(f"Station {station_id} was already revoked at {station.revoked_at}.")
        Station.update(status="revoked", revoked_at=utc_text(now)).where(Station.station_id == station_id).execute()
        Hold.update(amount_fen=0).where(Hold.station_id == station_id).execute()
        # Its live real-time authorizations are released too: an entry naming one settles only as an expired
        # grant would (from what the customer has available then).
        Authorization.update(status="expired").where(
            (Authorization.station_id == station_id) & (Authorization.status == "active")).execute()
        record_event(station_id, "revoked", by, reason,
                     {"status_before": station.status, "acked_seq": station.acked_seq}, now=now)


def block_payee(account: str, reason: str = "") -> None:
    """Refuse transfers to ``account`` (stations learn it with their next downlink)."""
    BlockedPayee.insert(account=account, reason=reason).on_conflict(
        conflict_target=[BlockedPayee.account], update={BlockedPayee.reason: reason}).execute()


# -- customers ----------------------------------------------------------------------------------------------
CUSTOMER_COLUMNS = ("account_id", "name", "card_number", "passbook_number", "pin", "balance", "home_stations",
                    "birth_year", "risk_level")


def _bank_booking(legs: list[tuple[str, int, str]]) -> None:
    """Post a bank-side ledger transaction (opening balances) under station id ``BANK``."""
    if sum(amount for _, amount, _ in legs) != 0:
        raise AdminError("postings do not sum to zero")
    seq = (Posting.select(fn.MAX(Posting.seq)).where(Posting.station_id == BANK_BOOKING).scalar() or 0) + 1
    book = Book(BANK_BOOKING, {account for account, _, _ in legs}, utc_text(datetime.now(UTC)))
    book.ensure_account("equity:opening", "opening_equity")
    book.post(legs)
    book.flush()
    Posting.insert_many([dict(station_id=BANK_BOOKING, seq=seq, leg=i, account_id=a, amount_fen=amt, memo=memo)
                         for i, (a, amt, memo) in enumerate(legs)]).execute()


def parse_customers_csv(text: str, *, pin_log2_n: int | None = None) -> list[dict]:
    """Validate a customers CSV (columns ``CUSTOMER_COLUMNS``; ``pin`` or ``pin_verifier``); raise ImportFailed."""
    reader = csv.DictReader(io.StringIO(text))
    missing = {"account_id", "name", "home_stations"} - set(reader.fieldnames or [])
    if missing or not ({"pin", "pin_verifier"} & set(reader.fieldnames or [])):
        raise ImportFailed([RowError(1, "columns must include account_id, name, pin (or pin_verifier), "
                                     f"home_stations; missing {sorted(missing) or ['pin']}")])
    rows, errors, seen = [], [], set()
    for line, row in enumerate(reader, start=2):
        problems = []
        account_id = (row.get("account_id") or "").strip()
        if not re.fullmatch(r"[A-Za-z0-9]{4,32}", account_id):
            problems.append("account_id must be 4 to 32 letters or digits")
        elif account_id in seen:
            problems.append(f"account_id {account_id} appears twice")
        seen.add(account_id)
        name = (row.get("name") or "").strip()
        if not name:
            problems.append("name is empty")
        card = (row.get("card_number") or "").strip() or None
        if card and not re.fullmatch(r"\d{16,19}", card):
            problems.append("card_number must be 16 to 19 digits")
        passbook = (row.get("passbook_number") or "").strip() or None
        if passbook and not re.fullmatch(r"\d{8,15}", passbook):
            problems.append("passbook_number must be 8 to 15 digits")
        verifier = (row.get("pin_verifier") or "").strip()
        pin = (row.get("pin") or "").strip()
        if not verifier and not PIN_RE.match(pin):
            problems.append("pin must be 4 to 6 digits (or give pin_verifier)")
        if verifier and not verifier.startswith("scrypt$"):
            problems.append("pin_verifier must be a scrypt verifier")
        try:
            balance = parse_amount((row.get("balance") or "0").strip() or "0", allow_zero=True)
        except AmountError as exc:
            problems.append(f"balance: {exc.message}")
            balance = 0
        homes = [h.strip() for h in (row.get("home_stations") or "").split(";") if h.strip()]
        birth_year = (row.get("birth_year") or "").strip()
        if birth_year and not (re.fullmatch(r"\d{4}", birth_year) and 1900 <= int(birth_year) <= 2100):
            problems.append("birth_year must be a year such as 1948")
        risk_level = (row.get("risk_level") or "").strip().upper().removeprefix("R")
        if risk_level and risk_level not in ("1", "2", "3", "4", "5"):
            problems.append("risk_level must be 1 to 5 (R1 to R5), or empty when not assessed")
        if problems:
            errors.append(RowError(line, "; ".join(problems)))
            continue
        rows.append(dict(account_id=account_id, name=name, card_number=card, passbook_number=passbook,
                         pin=pin, pin_verifier=verifier, balance_fen=balance, home_stations=homes,
                         birth_year=int(birth_year) if birth_year else None,
                         risk_level=int(risk_level) if risk_level else None,
                         status=(row.get("status") or "active").strip() or "active"))
    if errors:
        raise ImportFailed(errors)
    for row in rows:
        if not row["pin_verifier"]:
            kwargs = {"log2_n": pin_log2_n} if pin_log2_n else {}
            row["pin_verifier"] = make_pin_verifier(row.pop("pin"), **kwargs)
        row.pop("pin", None)
    return rows


def import_customers(rows: list[dict], payees: dict[str, list[tuple[str, str]]] | None = None) -> int:
    """Create or update customers; a new customer's opening balance is posted against opening equity.

    An existing customer's balance is never overwritten (it is the ledger's); everything else is updated.
    """
    count = 0
    with db_proxy.atomic():
        for row in rows:
            data = {k: row[k] for k in ("name", "card_number", "passbook_number", "pin_verifier", "status")}
            data["birth_year"] = row.get("birth_year")
            data["risk_level"] = row.get("risk_level")
            existing = Customer.get_or_none(Customer.account_id == row["account_id"])
            if existing is None:
                Customer.create(account_id=row["account_id"], **data)
                Account.insert(account_id=row["account_id"], kind="customer", name=row["name"]).on_conflict(
                    conflict_target=[Account.account_id], action="NOTHING").execute()
                if row["balance_fen"]:
                    _bank_booking([("equity:opening", row["balance_fen"], "opening balance"),
                                   (row["account_id"], -row["balance_fen"], "opening balance")])
            else:
                Customer.update(**data).where(Customer.account_id == row["account_id"]).execute()
            HomeStation.delete().where(HomeStation.account_id == row["account_id"]).execute()
            for station_id in row["home_stations"]:
                HomeStation.insert(station_id=station_id, account_id=row["account_id"]).on_conflict(
                    conflict_target=[HomeStation.station_id, HomeStation.account_id], action="NOTHING").execute()
            for payee_account, payee_name in (payees or {}).get(row["account_id"], []):
                KnownPayee.insert(account_id=row["account_id"], payee_account=payee_account, name=payee_name
                                  ).on_conflict(conflict_target=[KnownPayee.account_id, KnownPayee.payee_account],
                                                update={KnownPayee.name: payee_name}).execute()
            count += 1
    return count


# -- billers ------------------------------------------------------------------------------------------------
BILLER_COLUMNS = ("code", "kind", "name_zh", "name_en", "ref_pattern", "ref_prefixes", "min_fen", "max_fen",
                  "denominations")


#: In a reference pattern: an escaped character or a [...] set (a brace inside either is a plain character),
#: and a repeat count.
_ESCAPE_OR_SET = re.compile(r"\\.|\[(?:\\.|[^\]])*\]")
_REPEAT_COUNT = re.compile(r"\{\d*(?:,\d*)?\}")


def ref_pattern_problem(pattern) -> str | None:
    """What is wrong with a biller's reference pattern (None: nothing): stations match references with it."""
    if not isinstance(pattern, str) or not pattern.strip():
        return "ref_pattern is empty"
    try:
        re.compile(pattern.strip())
    except re.error:
        return "ref_pattern is not a valid regular expression"
    # Python reads a '{' that starts no repeat count as a plain character: "\d{10" (cut at its comma) compiles,
    # yet matches only the text "1{10". Outside escapes and [...] sets, braces must be repeat counts.
    bare = _REPEAT_COUNT.sub("", _ESCAPE_OR_SET.sub("", pattern))
    if "{" in bare or "}" in bare:
        return "ref_pattern has a '{' or '}' that is not a repeat count such as {10} or {10,12}"
    return None



def parse_billers_csv(text: str) -> list[dict]:
    """Validate a billers CSV (columns ``BILLER_COLUMNS``; lists separated by ';'); raise ImportFailed."""
    reader = csv.DictReader(io.StringIO(text))
    missing = {"code", "kind", "name_zh", "name_en", "ref_pattern"} - set(reader.fieldnames or [])
    if missing:
        raise ImportFailed([RowError(1, f"missing columns {sorted(missing)}")])
    rows, errors = [], []
    for line, row in enumerate(reader, start=2):
        problems = []
        code = (row.get("code") or "").strip()
        if not re.fullmatch(r"[A-Z0-9-]{2,32}", code):
            problems.append("code must be 2 to 32 capital letters, digits or '-'")
        kind = (row.get("kind") or "").strip()
        if kind not in ("electricity", "water", "gas", "mobile"):
            problems.append("kind must be electricity, water, gas or mobile")
        if problem := ref_pattern_problem(row.get("ref_pattern")):
            problems.append(problem)

        def fen_list(text):
            return [int(x) for x in (text or "").split(";") if x.strip()]

        try:
            min_fen = int((row.get("min_fen") or "100").strip())
            max_fen = int((row.get("max_fen") or "200000").strip())
            denominations = fen_list(row.get("denominations")) or None
            if min_fen <= 0 or max_fen < min_fen:
                problems.append("min_fen must be positive and at most max_fen")
        except ValueError:
            problems.append("min_fen, max_fen and denominations are whole numbers of fen")
            min_fen = max_fen = 0
            denominations = None
        if problems:
            errors.append(RowError(line, "; ".join(problems)))
            continue
        prefixes = [p.strip() for p in (row.get("ref_prefixes") or "").split(";") if p.strip()] or None
        rows.append(dict(code=code, kind=kind, name_zh=row["name_zh"].strip(), name_en=row["name_en"].strip(),
                         ref_pattern=row["ref_pattern"].strip(), ref_prefixes=prefixes, min_fen=min_fen,
                         max_fen=max_fen, denominations=denominations))
    if errors:
        raise ImportFailed(errors)
    return rows


def import_billers(rows: list[dict]) -> int:
    """Create or update billers from validated rows, in one transaction; ImportFailed for a broken pattern.

    The patterns are checked here as well as in ``parse_billers_csv``, so that no path (the demo data included)
    can store one a station cannot compile: every bill of that biller would be refused.
    """
    broken = [RowError(line, f"{row.get('code')}: {problem}") for line, row in enumerate(rows, start=1)
              if (problem := ref_pattern_problem(row.get("ref_pattern")))]
    if broken:
        raise ImportFailed(broken)
    with db_proxy.atomic():
        for row in rows:
            fields = {getattr(Biller, k): v for k, v in row.items() if k != "code"}
            Biller.insert(**row).on_conflict(conflict_target=[Biller.code], update=fields).execute()
    return len(rows)


# -- the bank side of transfers -----------------------------------------------------------------------------
def execute_due_transfers(now: datetime | None = None) -> int:
    """Execute pending transfers whose delay has passed: clearing -> payee (a customer here, else external).

    A transfer whose payee was blocked during the delay stays pending (the delay exists to stop such transfers):
    the customer may still cancel it, and an operator decides. So does a transfer the bank has granted a
    cancellation of in real time while that grant is live (``authorize.cancellation_pending``): its cancellation
    entry is on its way. Each transfer is claimed under its row lock (PostgreSQL), which a cancellation grant
    takes too, so a grant and the execution never both happen.
    """
    now = now or datetime.now(UTC)
    now_text = utc_text(now)
    done = 0
    blocked = BlockedPayee.select(BlockedPayee.account)
    # As text, a row a previous release wrote (``+00:00``, microseconds) compares with ``now_text`` correctly to
    # the millisecond and may look due up to 1 ms early, never late: the SQL picks the candidates, and the
    # parsed times decide.
    candidates = Transfer.select().where((Transfer.status == "pending") & (Transfer.execute_after <= now_text)
                                         & Transfer.payee_account.not_in(blocked))
    due = [transfer for transfer in candidates if parse_utc(transfer.execute_after) <= now]
    for transfer in due:
        with db_proxy.atomic():
            row = Transfer.select().where(
                (Transfer.station_id == transfer.station_id) & (Transfer.seq == transfer.seq)
                & (Transfer.status == "pending") & Transfer.payee_account.not_in(blocked))
            if is_postgres():
                row = row.for_update()
            # Read after the row lock: a cancellation granted meanwhile is seen (and one granted later waits).
            if not row.exists() or cancellation_pending(transfer.station_id, transfer.txn, now_text):
                continue
            Transfer.update(status="executed", executed_at=now_text).where(
                (Transfer.station_id == transfer.station_id) & (Transfer.seq == transfer.seq)).execute()
            clearing, _ = station_account("transfer_clearing", transfer.station_id)
            internal = Customer.get_or_none(Customer.account_id == transfer.payee_account)
            if internal is not None:
                target = internal.account_id
            else:
                target, kind = station_account("external_clearing", transfer.station_id)
            book = Book(BANK_BOOKING, {target} if internal else set(), now_text)
            book.ensure_account(clearing, "transfer_clearing")
            if internal is None:
                book.ensure_account(target, kind)
            legs = [(clearing, transfer.amount_fen, f"execute {transfer.txn}"),
                    (target, -transfer.amount_fen, f"transfer {transfer.txn}")]
            seq = (Posting.select(fn.MAX(Posting.seq)).where(Posting.station_id == BANK_BOOKING).scalar() or 0) + 1
            book.post(legs)
            book.flush()
            Posting.insert_many([dict(station_id=BANK_BOOKING, seq=seq, leg=i, account_id=a, amount_fen=amt,
                                      memo=memo) for i, (a, amt, memo) in enumerate(legs)]).execute()
            done += 1
    return done


# -- demo data ----------------------------------------------------------------------------------------------
DEMO_CUSTOMERS_PER_STATION = 20


def demo_customer_rows(station_ids: list[str], per_station: int = DEMO_CUSTOMERS_PER_STATION) -> tuple[list, dict]:
    """Demo customers for ``station_ids`` (PIN 123456) and their known payees.

    Account ``DM<station digits><index>``; the first two customers of the first station also call every other
    station home (so the holds across stations show).
    """
    rows, payees = [], {}
    verifier = make_pin_verifier(DEMO_CUSTOMER_PIN, log2_n=DEMO_PIN_LOG2_N)
    for number, station_id in enumerate(station_ids, start=1):
        digits = (re.sub(r"\D", "", station_id) or str(number))[-4:].rjust(4, "0")
        rng = random.Random(f"demo-{station_id}")
        for index in range(per_station):
            account_id = f"DM{digits}{index:04d}"
            card_body, payee_body = f"6217{digits}{index:07d}", f"6222{digits}{index:07d}"
            homes = [station_id]
            if number == 1 and index < 2:
                homes = list(station_ids)
            rows.append(dict(
                account_id=account_id, name=rng.choice(SURNAMES) + rng.choice(GIVEN_NAMES),
                card_number=None if index % 5 == 4 else card_body + luhn.calc_check_digit(card_body),
                passbook_number=f"88{digits}{index:06d}", pin_verifier=verifier, status="active",
                balance_fen=rng.randrange(2_000, 60_000) * 100, home_stations=homes,
                birth_year=demo_birth_year(index), risk_level=demo_risk_level(index),
            ))
            if index % 3 == 0:
                payees[account_id] = [(payee_body + luhn.calc_check_digit(payee_body),
                                       rng.choice(SURNAMES) + rng.choice(GIVEN_NAMES))]
    return rows, payees


def load_demo_data(station_ids: list[str]) -> dict:
    """Idempotent: billers, the default policy, the stations (pending) and their demo customers."""
    import_billers(demo_billers())
    ServerSetting.insert(key="policy", value=DEFAULT_SERVER_POLICY).on_conflict(
        conflict_target=[ServerSetting.key], action="NOTHING").execute()
    for station_id in station_ids:
        if Station.get_or_none(Station.station_id == station_id) is None:
            Station.create(station_id=station_id, name=f"Demo station {station_id}",
                           created_at=utc_text(datetime.now(UTC)))
    rows, payees = demo_customer_rows(station_ids)
    import_customers(rows, payees)
    # Wealth-management products open around today (bank-local): kept as they are when already there.
    today = datetime.now(ZoneInfo(station_policy(server_policy())["timezone"])).date()
    for product in demo_wmp_products(today):
        WmpProduct.insert(**product).on_conflict(conflict_target=[WmpProduct.code], action="NOTHING").execute()
    return {"stations": station_ids, "customers": len(rows), "billers": Biller.select().count()}
