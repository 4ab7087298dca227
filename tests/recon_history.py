"""A clean central history of many stations, signed as stations sign, written straight into the server's tables.

Recon's benchmark (``tests/bench/recon_scale.py``) needs a million entries; its smoke test
(``tests/test_recon_bench_smoke.py``) keeps this generator honest at a tiny size. Going through the real path
(enroll, operate, sync) costs about a millisecond per entry; this writes what that path would leave behind:

- per station: a ``station`` row as ``sync_server.service.enroll`` and the last sync leave it (active, the
  enrolled ``signing_jwk`` with its ``kid``, ``acked_seq``/``synced_seq`` the last seq, ``head`` the chain value
  after it, ``last_sync_at`` the evening before ``now``, ``clock_offset_ms`` 0), the tail claim of its last batch
  (``station_tail``, signed as ``envelope.make_tail_claim`` signs it), its 20 home customers (opening balances
  posted against opening equity under station ``BANK``, as ``admin.import_customers`` posts them), their holds as
  the last sync refreshed them (``allowances.refresh_allowances``);
- its journal: ``start``, two ``agent_added`` (an agent, a supervisor), then business days of ``day_open``,
  customer operations (withdrawals, deposits, bills paid in cash or from the account, balance enquiries, and a
  supervisor's reversal of one of the day's deposits or withdrawals now and then) and ``day_close``. Each entry
  is a real token: JWS compact, header ``{"alg":"Ed25519","kid":...}``, canonical JSON payload with every field
  docs/protocol.md lists for its type, ``prev`` chained from the genesis value, signed with the station's own
  Ed25519 key (deterministic from the seed, so a run is reproducible);
- what the bank's posting rules (``sync_server.posting_rules.Applier``) make of each entry, day by day as the
  evening sync would apply it: the outcome, the legs (with their memos), the accounts and their balances (the
  sum of their postings on the account's normal side), seen txns and the daily totals.

Every operation respects the station's policy and the bank's rules (holds refreshed at each evening's sync, daily
limits, withdrawal multiples, drawer never below zero, commission minimums and daily cap), and every day close
counts what the drawer should hold (now and then a variance of a few yuan, within recon's tolerance). So the
history is CLEAN: ``sync_server.recon.run.find_discrepancies`` must find nothing in it, and the smoke test also
checks each journal with ``verify_chain`` and ``check_journal_semantics``.

Not generated (yet): transfers and their cancellations (they need the bank's executions), PIN lockouts, feedback.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from joserfc.jwk import OKPKey

from station.protocol.demo_data import CHINA_MOBILE, GIVEN_NAMES, SURNAMES, TOP_UPS_FEN, demo_billers
from station.protocol.envelope import make_tail_claim
from station.protocol.key_codecs import encryption_public_jwk
from station.protocol.policy import DEFAULT_POLICY
from station.protocol.times import utc_text
from station.protocol.tokens import (
    ALG,
    PROTOCOL_VERSION,
    Signer,
    b64url,
    canonical_json,
    chain_hash,
    genesis_prev,
    key_id,
    public_jwk,
    verification_jwk,
)
from sync_server.admin import import_billers
from sync_server.book import station_account
from sync_server.db import DEBIT_NORMAL, ServerSetting, is_postgres, migrate_database
from sync_server.policy import DEFAULT_SERVER_POLICY

CUSTOMERS_PER_STATION = 20
#: Customer operations in one business day (a busy village shop on pension day has more).
OPERATIONS_PER_DAY = 30
#: The float the agent counts in every morning (50,000 yuan).
FLOAT_FEN = 5_000_000
AGENT, SUPERVISOR = "A01", "S01"
#: Station id of the bank's own bookings (opening balances), as ``sync_server.admin.BANK_BOOKING``.
BANK = "BANK"
OPENING_EQUITY = "equity:opening"
#: One PIN verifier string for every generated customer (recon never reads it).
PIN_VERIFIER = "scrypt$8$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#: Bills paid in the generated history: (biller code, reference digits, amounts).
BILLS = (("ELEC-SGCC", 10), ("WATER-COUNTY", 8), ("GAS-COUNTY", 11), ("MOBILE-CMCC", None))

POLICY = DEFAULT_POLICY
TIMEZONE = ZoneInfo(POLICY["timezone"])
COMMISSION = DEFAULT_SERVER_POLICY["commission"]
COMMISSION_MIN = DEFAULT_SERVER_POLICY["commission_min_amount_fen"]
COMMISSION_CAP = DEFAULT_SERVER_POLICY["commission_daily_cap_fen"]
ALLOWANCE = DEFAULT_SERVER_POLICY["offline_allowance_fen"]
DENOMINATIONS = (10_000, 5_000, 2_000, 1_000, 500, 100, 50, 10)

#: The columns written per table, in order (the server's schema, ``sync_server/db.py``).
COLUMNS = {
    "station": ("station_id", "name", "status", "flagged", "flag_reason", "signing_jwk", "encryption_jwk", "kid",
                "acked_seq", "head", "created_at", "enrolled_at", "last_sync_at", "clock_offset_ms", "revoked_at",
                "synced_seq"),
    "customer": ("account_id", "name", "card_number", "passbook_number", "status", "pin_verifier"),
    "home_station": ("station_id", "account_id"),
    "account": ("account_id", "kind", "name", "balance_fen"),
    "hold": ("station_id", "account_id", "amount_fen", "updated_at"),
    "entry": ("station_id", "seq", "type", "txn", "token", "received_at", "outcome", "reason"),
    "posting": ("station_id", "seq", "leg", "account_id", "amount_fen", "memo"),
    "seen_txn": ("txn", "station_id", "seq"),
    "daily_total": ("station_id", "local_date", "kind", "subject", "amount_fen"),
    "station_tail": ("station_id", "seq", "head", "claim", "received_at"),
    "station_key": ("station_id", "kid", "jwk", "from_seq", "source", "created_at"),
}


def station_id_of(number: int) -> str:
    return f"ST-{number:04d}"


def last_business_date(now: datetime) -> date:
    """The newest business day of a history reconciled at ``now``: the station's local yesterday."""
    return now.astimezone(TIMEZONE).date() - timedelta(days=1)


def counts_of(amount: int) -> dict:
    """A drawer count of ``amount`` fen (a multiple of 10), largest notes first, as the station stores it."""
    counts = {}
    for denomination in DENOMINATIONS:
        pieces, amount = divmod(amount, denomination)
        if pieces:
            counts[str(denomination)] = pieces
    if amount:
        raise ValueError("a drawer holds multiples of 10 fen")
    return counts


class StationSigner:
    """A station's Ed25519 key (from the seed) and the tokens it signs: exactly ``tokens.Signer``'s bytes (Ed25519
    is deterministic; the smoke test compares), without joserfc's per-call overhead."""

    def __init__(self, seed: str, station_id: str):
        secret = hashlib.sha256(f"{seed}|signing|{station_id}".encode()).digest()
        self.private = Ed25519PrivateKey.from_private_bytes(secret)
        raw_public = self.private.public_key().public_bytes_raw()
        self.jwk_key = OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": b64url(raw_public),
                                          "d": b64url(secret)})
        self.kid = key_id(self.jwk_key)
        self.public_jwk = public_jwk(self.jwk_key)
        self._header = b64url(canonical_json({"alg": ALG, "kid": self.kid}))
        encryption_secret = hashlib.sha256(f"{seed}|encryption|{station_id}".encode()).digest()
        self.encryption_jwk = encryption_public_jwk(X25519PrivateKey.from_private_bytes(encryption_secret))

    def sign(self, payload: dict) -> str:
        signing_input = f"{self._header}.{b64url(canonical_json(payload))}"
        return f"{signing_input}.{b64url(self.private.sign(signing_input.encode('ascii')))}"


@dataclass
class StationRows:
    """Every row one station's history puts in the server's tables (``COLUMNS`` order), and its totals."""

    station_id: str
    tables: dict[str, list[tuple]] = field(default_factory=lambda: {name: [] for name in COLUMNS})
    #: Fen the station's customers were given at opening (the bank's opening equity is debited by them).
    opening_fen: int = 0
    entries: int = 0


@dataclass
class _Customer:
    account_id: str
    balance: int  # on the account's normal side (credit): what the bank owes the customer
    hold: int = 0


class _History:
    """One station's journal and the bank's ledger of it, written as the station and the bank would."""

    def __init__(self, number: int, entries: int, last_day: date, seed: str):
        self.station_id = station_id_of(number)
        self.number = number
        self.rng = random.Random(f"{seed}|{self.station_id}")
        self.signer = StationSigner(seed, self.station_id)
        self.rows = StationRows(self.station_id)
        self.target_entries = entries
        self.last_day = last_day
        self.seq = 0
        self.prev = genesis_prev(self.station_id)
        self.balances: dict[str, list] = {}  # account id -> [kind, name, balance on its normal side]
        self.totals: dict[tuple[str, str, str], int] = {}
        self.customers: list[_Customer] = []
        self.received_at = ""
        self.drawer = 0

    # -- the journal ----------------------------------------------------------------------------------------
    def append(self, entry_type: str, moment: datetime, body: dict, txn: str | None = None,
               outcome: str = "acknowledged", legs: Iterable[tuple[str, int, str]] = ()) -> int:
        """Sign the next entry (as ``station.journal.entry_payload`` builds it), store it and the bank's legs."""
        self.seq += 1
        payload = {**body, "v": PROTOCOL_VERSION, "station": self.station_id, "seq": self.seq, "type": entry_type,
                   "ts": utc_text(moment), "prev": self.prev}
        if txn is not None:
            payload["txn"] = txn
        token = self.signer.sign(payload)
        self.prev = chain_hash(token)
        self.rows.tables["entry"].append((self.station_id, self.seq, entry_type, txn, token, self.received_at,
                                          outcome, None))
        if txn is not None:
            self.rows.tables["seen_txn"].append((txn, self.station_id, self.seq))
        self.post(self.station_id, self.seq, [leg for leg in legs if leg[1] != 0])
        return self.seq

    def post(self, station_id: str, seq: int, legs: list[tuple[str, int, str]]) -> None:
        """``Book.post`` and the posting rows ``Applier.apply`` writes (legs of zero already left out)."""
        assert sum(amount for _, amount, _ in legs) == 0, legs
        for leg, (account_id, amount, memo) in enumerate(legs):
            account = self.balances[account_id]
            account[2] += amount if account[0] in DEBIT_NORMAL else -amount
            self.rows.tables["posting"].append((station_id, seq, leg, account_id, amount, memo))

    def acct(self, kind: str, extra: str | None = None) -> str:
        account_id, kind = station_account(kind, self.station_id, extra)
        self.balances.setdefault(account_id, [kind, account_id, 0])
        return account_id

    def txn(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def add_total(self, key: tuple[str, str, str], amount: int) -> None:
        self.totals[key] = self.totals.get(key, 0) + amount

    def count(self, day: str, op_type: str, account: str | None, amount: int, sign: int = 1) -> None:
        """``Applier._count``: a settled limited operation in its day's totals (its customer's, and deposits')."""
        if account is not None:
            self.add_total((day, op_type, account), sign * amount)
        if op_type == "deposit":
            self.add_total((day, op_type, ""), sign * amount)

    def commission(self, day: str, op_type: str, amount: int) -> list[tuple[str, int, str]]:
        """``Applier._commission``: the agent's legs, above the type's minimum and within the daily cap."""
        if amount < COMMISSION_MIN.get(op_type, 0):
            return []
        key = (day, "commission", AGENT)
        fen = min(COMMISSION.get(op_type, 0), COMMISSION_CAP - self.totals.get(key, 0))
        if fen <= 0:
            return []
        self.add_total(key, fen)
        return [(self.acct("commission_expense"), fen, "agent commission"),
                (self.acct("agent_payable"), -fen, "agent commission")]

    # -- the history ----------------------------------------------------------------------------------------
    def build(self) -> StationRows:
        customer_ops = self.target_entries - 3
        days = max(1, round(customer_ops / (OPERATIONS_PER_DAY + 2)))
        operations = customer_ops - 2 * days
        if operations < 0:
            raise ValueError("a station's history needs at least 5 entries")
        first_day = self.last_day - timedelta(days=days - 1)
        enrolled = datetime.combine(first_day - timedelta(days=1), time(16, 0), TIMEZONE).astimezone(UTC)
        self.setup_customers(enrolled)
        self.received_at = utc_text(enrolled + timedelta(minutes=5))
        self.append("start", enrolled + timedelta(minutes=1), {"jwk": self.signer.public_jwk,
                                                               "software": "station-kit"})
        self.append("agent_added", enrolled + timedelta(minutes=2), {"agent": AGENT, "role": "agent"})
        self.append("agent_added", enrolled + timedelta(minutes=3), {"agent": SUPERVISOR, "role": "supervisor"})
        self.refresh_holds()
        for index in range(days):
            per_day = operations // days + (1 if index < operations % days else 0)
            self.business_day(first_day + timedelta(days=index), per_day)
        self.finish(enrolled)
        return self.rows

    def setup_customers(self, enrolled: datetime) -> None:
        tables = self.rows.tables
        for index in range(CUSTOMERS_PER_STATION):
            account_id = f"BC{self.number:05d}{index:03d}"
            name = self.rng.choice(SURNAMES) + self.rng.choice(GIVEN_NAMES)
            opening = self.rng.randrange(2_000, 60_000) * 100
            self.customers.append(_Customer(account_id, opening))
            tables["customer"].append((account_id, name, None, f"88{self.number:06d}{index:04d}", "active",
                                       PIN_VERIFIER))
            tables["home_station"].append((self.station_id, account_id))
            self.balances[account_id] = ["customer", name, 0]
            self.balances.setdefault(OPENING_EQUITY, ["opening_equity", OPENING_EQUITY, 0])
            # admin._bank_booking: one BANK transaction per customer; seqs unique across stations.
            self.post(BANK, (self.number - 1) * CUSTOMERS_PER_STATION + index + 1,
                      [(OPENING_EQUITY, opening, "opening balance"), (account_id, -opening, "opening balance")])
            self.rows.opening_fen += opening
        for customer in self.customers:
            customer.balance = self.balances[customer.account_id][2]

    def refresh_holds(self) -> None:
        """The evening sync (a complete one): each home customer's hold is the allowance within the balance."""
        for customer in self.customers:
            customer.balance = self.balances[customer.account_id][2]
            customer.hold = max(0, min(ALLOWANCE, customer.balance))

    def business_day(self, day: date, operations: int) -> None:
        local_day = day.isoformat()
        opening = datetime.combine(day, time(8, 30), TIMEZONE).astimezone(UTC)
        self.received_at = utc_text(datetime.combine(day, time(18, 5), TIMEZONE).astimezone(UTC)
                                    + timedelta(seconds=self.number % 600))
        cash = self.acct("station_cash")
        delta = FLOAT_FEN - self.balances[cash][2]
        self.append("day_open", opening, {"agent": AGENT, "amount": FLOAT_FEN, "counts": counts_of(FLOAT_FEN)},
                    legs=[(cash, delta, "float counted in"), (self.acct("float_funding"), -delta, "float counted in")])
        self.drawer = FLOAT_FEN
        step = timedelta(seconds=(9 * 3600) // max(1, operations + 1))
        moment = opening
        undoable: list[tuple[int, str, str, dict, list]] = []  # (seq, txn, type, payload body, legs)
        for _ in range(operations):
            moment += step
            self.operation(local_day, moment, undoable)
        moment += step
        variance = self.rng.choice((-200, -50, 30, 100)) if self.rng.random() < 0.1 else 0
        counted = self.drawer + variance
        delta = counted - self.balances[cash][2]
        self.append("day_close", moment, {
            "agent": AGENT, "amount": counted, "expected": self.drawer, "variance": variance,
            "counts": counts_of(counted), "operations": operations, "business_date": local_day},
            legs=[(cash, delta, "day close count"), (self.acct("cash_variance"), -delta, "cash over/short")])
        self.drawer = counted
        self.refresh_holds()

    def operation(self, day: str, moment: datetime, undoable: list) -> None:
        roll = self.rng.random()
        customer = self.rng.choice(self.customers)
        if roll < 0.03 and undoable:
            original = undoable.pop(self.rng.randrange(len(undoable)))
            if not self.reversal(day, moment, original):
                self.deposit(day, moment, customer, self.rng.randrange(10, 3_000) * 100, undoable)
        elif roll < 0.40:
            amount = self.rng.randrange(1, 21) * 1_000
            used = self.totals.get((day, "withdrawal", customer.account_id), 0)
            if (amount <= customer.hold and amount <= self.drawer
                    and used + amount <= POLICY["limits"]["withdrawal"]["daily"]):
                self.withdrawal(day, moment, customer, amount, undoable)
            else:
                self.deposit(day, moment, customer, self.rng.randrange(10, 3_000) * 100, undoable)
        elif roll < 0.70:
            self.deposit(day, moment, customer, self.rng.randrange(10, 3_000) * 100, undoable)
        elif roll < 0.90:
            self.bill_payment(day, moment, customer)
        else:
            txn = self.txn()
            self.append("balance_enquiry", moment, {
                "agent": AGENT, "account": customer.account_id, "amount": 0, "balance": customer.balance,
                "offline_available": customer.hold}, txn=txn, outcome="settled")

    def withdrawal(self, day, moment, customer: _Customer, amount: int, undoable) -> None:
        legs = [(customer.account_id, amount, "withdrawal"), (self.acct("station_cash"), -amount, "cash paid out"),
                *self.commission(day, "withdrawal", amount)]
        txn = self.txn()
        body = {"agent": AGENT, "account": customer.account_id, "amount": amount}
        seq = self.append("withdrawal", moment, body, txn=txn, outcome="settled", legs=legs)
        customer.hold -= amount
        self.drawer -= amount
        self.count(day, "withdrawal", customer.account_id, amount)
        undoable.append((seq, txn, "withdrawal", body, legs))

    def deposit(self, day, moment, customer: _Customer, amount: int, undoable) -> None:
        legs = [(self.acct("station_cash"), amount, "cash taken in"), (customer.account_id, -amount, "deposit"),
                *self.commission(day, "deposit", amount)]
        txn = self.txn()
        body = {"agent": AGENT, "account": customer.account_id, "amount": amount}
        seq = self.append("deposit", moment, body, txn=txn, outcome="settled", legs=legs)
        self.drawer += amount
        self.count(day, "deposit", customer.account_id, amount)
        undoable.append((seq, txn, "deposit", body, legs))

    def bill_payment(self, day, moment, customer: _Customer) -> None:
        biller, digits = self.rng.choice(BILLS)
        if digits is None:
            ref = self.rng.choice(CHINA_MOBILE) + f"{self.rng.randrange(10**8):08d}"
            amount = self.rng.choice(TOP_UPS_FEN)
        else:
            ref = f"{self.rng.randrange(10**digits):0{digits}d}"
            amount = self.rng.randrange(200, 3_000) * 10
        body = {"agent": AGENT, "amount": amount, "biller": biller, "ref": ref}
        used = self.totals.get((day, "bill_payment", customer.account_id), 0)
        from_account = (self.rng.random() < 0.3 and amount <= customer.hold
                        and used + amount <= POLICY["limits"]["bill_payment"]["daily"])
        if from_account:
            body.update(funding="account", account=customer.account_id)
            source = customer.account_id
        else:
            body["funding"] = "cash"
            source = self.acct("station_cash")
        legs = [(source, amount, f"bill {biller} {ref}"),
                (self.acct("biller_payable", biller), -amount, "bill payable"),
                *self.commission(day, "bill_payment", amount)]
        self.append("bill_payment", moment, body, txn=self.txn(), outcome="settled", legs=legs)
        if from_account:
            customer.hold -= amount
            self.count(day, "bill_payment", customer.account_id, amount)
        else:
            self.drawer += amount

    def reversal(self, day, moment, original: tuple) -> bool:
        """A supervisor undoes one of today's deposits or withdrawals (``Applier._reversal``: inverse legs);
        False when the drawer or the customer's available balance could not take it (nothing written)."""
        seq, txn, op_type, body, legs = original
        amount, account_id = body["amount"], body["account"]
        customer = next(c for c in self.customers if c.account_id == account_id)
        cash = amount if op_type == "deposit" else -amount  # the original's effect on the drawer
        available = self.balances[account_id][2] - customer.hold
        if cash > self.drawer or (op_type == "deposit" and amount > available):
            return False
        inverse = [(account, -fen, "reversal") for account, fen, _ in legs]
        self.append("reversal", moment, {
            "agent": SUPERVISOR, "account": account_id, "amount": amount, "ref_seq": seq, "ref_txn": txn,
            "reason": "wrong amount keyed"}, txn=self.txn(), outcome="settled", legs=inverse)
        self.drawer -= cash
        self.count(day, op_type, account_id, amount, -1)
        commission = sum(fen for account, fen, _ in legs if self.balances[account][0] == "commission_expense")
        if commission:
            self.add_total((day, "commission", AGENT), -commission)
        return True

    def finish(self, enrolled: datetime) -> None:
        tables = self.rows.tables
        received = self.received_at
        jwk = {**verification_jwk(self.signer.public_jwk), "kid": self.signer.kid}
        tables["station"].append((
            self.station_id, f"Bench station {self.station_id}", "active", False, None,
            json.dumps(jwk, sort_keys=True, ensure_ascii=False),
            json.dumps(self.signer.encryption_jwk, sort_keys=True, ensure_ascii=False), self.signer.kid, self.seq,
            self.prev, utc_text(enrolled - timedelta(hours=1)), utc_text(enrolled), received, 0, None, self.seq))
        # Its one key, enrolled from seq 1 (``service.enroll``).
        tables["station_key"].append((self.station_id, self.signer.kid, json.dumps(jwk, sort_keys=True,
                                      ensure_ascii=False), 1, "enrollment", utc_text(enrolled)))
        for account_id, (kind, name, balance) in self.balances.items():
            if account_id != OPENING_EQUITY:
                tables["account"].append((account_id, kind, name, balance))
        for customer in self.customers:
            tables["hold"].append((self.station_id, customer.account_id, customer.hold, received))
        for (local_date, kind, subject), amount in sorted(self.totals.items()):
            tables["daily_total"].append((self.station_id, local_date, kind, subject, amount))
        # The last batch's tail claim (the sync server keeps the newest: ``service._keep_tail``).
        claim = make_tail_claim(Signer(self.signer.jwk_key), station_id=self.station_id, seq=self.seq,
                                head=self.prev, ts=received)
        tables["station_tail"].append((self.station_id, self.seq, self.prev, claim, received))
        self.rows.entries = self.seq


def station_history(number: int, entries: int, last_day: date, seed: str) -> StationRows:
    """The rows of station ``number``'s clean history of exactly ``entries`` entries, ending on ``last_day``."""
    return _History(number, entries, last_day, seed).build()


def opening_equity_row(opening_fen: int) -> tuple:
    """The bank's opening equity account once every station's customers were given ``opening_fen`` in total: it is
    credit-normal and was debited by each opening balance."""
    return (OPENING_EQUITY, "opening_equity", OPENING_EQUITY, -opening_fen)


def entries_per_station(total: int, stations: int) -> list[int]:
    """``total`` entries spread over ``stations`` (the first ones get one more when it does not divide)."""
    return [total // stations + (1 if index < total % stations else 0) for index in range(stations)]


# -- writing ------------------------------------------------------------------------------------------------
def copy_rows(connection, rows: StationRows | dict[str, list[tuple]]) -> None:
    """COPY the rows into PostgreSQL through a psycopg 3 connection (the caller commits)."""
    tables = rows.tables if isinstance(rows, StationRows) else rows
    with connection.cursor() as cursor:
        for table, table_rows in tables.items():
            if not table_rows:
                continue
            columns = ", ".join(f'"{name}"' for name in COLUMNS[table])
            with cursor.copy(f'COPY "{table}" ({columns}) FROM STDIN') as copy:
                for row in table_rows:
                    copy.write_row(row)


def insert_rows(database, rows: StationRows | dict[str, list[tuple]]) -> None:
    """Insert the rows through a peewee database (SQLite, or PostgreSQL at small sizes)."""
    tables = rows.tables if isinstance(rows, StationRows) else rows
    for table, table_rows in tables.items():
        if not table_rows:
            continue
        columns = ", ".join(f'"{name}"' for name in COLUMNS[table])
        marks = ", ".join([database.param] * len(COLUMNS[table]))
        database.cursor().executemany(f'INSERT INTO "{table}" ({columns}) VALUES ({marks})', table_rows)


def prepare_database(database) -> None:
    """What every history needs besides the stations: the schema, the default policy and the demo billers."""
    migrate_database(database)
    with database.atomic():
        import_billers(demo_billers())
        ServerSetting.insert(key="policy", value=DEFAULT_SERVER_POLICY).on_conflict(
            conflict_target=[ServerSetting.key], action="NOTHING").execute()


def write_rows(database, rows: StationRows | dict[str, list[tuple]]) -> None:
    """COPY on PostgreSQL (as the benchmark loads), executemany on SQLite, through a peewee database."""
    if is_postgres(database):
        copy_rows(database.connection(), rows)
    else:
        insert_rows(database, rows)


def build_small_history(database, stations: int, entries: int, now: datetime, seed: str = "bench") -> list[str]:
    """A clean history of ``stations`` stations of ``entries`` entries each, written in this process through the
    peewee ``database`` the models are bound to; returns the station ids."""
    prepare_database(database)
    opening = 0
    with database.atomic():
        for number in range(1, stations + 1):
            rows = station_history(number, entries, last_business_date(now), seed)
            write_rows(database, rows)
            opening += rows.opening_fen
        write_rows(database, {"account": [opening_equity_row(opening)]})
    return [station_id_of(number) for number in range(1, stations + 1)]
