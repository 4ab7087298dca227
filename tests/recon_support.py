"""A clean history for recon's tests: three stations' business days built through the real path.

``history`` (a pytest fixture, over SQLite and, with ``TEST_DATABASE_URL``, PostgreSQL; a test module imports
``history_fixture``) runs the sync server of ``sync_support.server``, enrolls ST-0001, ST-0002 and ST-0003 with
one-time codes, and at each station and on each of two business days (3 and 4 November 2026, Beijing time): opens
the counter with a counted float, serves customers (withdrawals with a fee, a deposit, a transfer to a known
payee, a transfer cancelled before the bank executed it, a bill paid in cash, a mobile top-up and a bill paid from
the account, a withdrawal reversed by the supervisor, a balance enquiry, a transfer stopped at the fraud warning),
closes the day with a small shortage or surplus within the cash tolerance, and syncs; the bank then executes the
transfers that are due.
Nothing in it is an anomaly: recon must report no discrepancy at all on it (``tests/test_recon_kinds.py``).

Time is a ``FakeClock`` shared by the stations and the bank (``ServerClock`` makes the server's ``now`` the same
clock), so days, ``received_at``, the clock offsets the bank measures (0) and the last syncs are deterministic:
recon runs ``as of`` that clock (``History.find``, ``History.recon``).

Tests inject one anomaly into the history (an insider's SQL through ``insider``, a bank booking, a station that
keeps its journal to itself, a moved clock, an entry signed by the station's own key) and look at what recon finds.
"""

from __future__ import annotations

import copy
import json
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sync_support import (
    BankTemplate,
    append_only_lifted,
    build_bank,
    copy_bank,
    drop_pg_database,
    empty_public_schema,
    enrolled_station,
    pg_bank_template,
    pg_template_url,
    server_db,
    start_server,
)
from ui_helpers import identity_present

from station import agents, business_day, operations, receipts
from station.business_day import DENOMINATIONS_FEN
from station.context import Station
from station.db import Customer, Operation, Payee
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN
from station.identity import identity_required
from station.journal import journal_head
from station.protocol.envelope import make_tail_claim
from station.protocol.times import utc_text
from station.protocol.tokens import chain_hash, unverified_payload
from station.sync import sync_once
from sync_server import service
from sync_server.admin import BANK_BOOKING, execute_due_transfers, load_demo_data
from sync_server.book import Book
from sync_server.db import DEBIT_NORMAL, Account, Entry, Posting, ServerSetting, StationTail, connect_url, db_proxy
from sync_server.db import Station as BankStation
from sync_server.recon.context import Scope
from sync_server.recon.kinds import Discrepancy

STATIONS = ("ST-0001", "ST-0002", "ST-0003")
#: Fees the bank sets for the stations (withdrawals are free by default; here they are not).
FEES = {"withdrawal": 200, "bill_payment": 100}
#: Each day's count at each station against what its drawer should hold: all within the default tolerance.
VARIANCES = ({"ST-0001": 0, "ST-0002": -500, "ST-0003": 300}, {"ST-0001": -500, "ST-0002": 0, "ST-0003": -800})
OPEN_AT = time(7, 40)
FLOAT = {"10000": 300}  # 3,000 yuan in hundreds


def counts_of(fen: int) -> dict:
    """A drawer count of exactly ``fen`` (a multiple of 1 jiao), largest denominations first."""
    assert fen >= 0 and fen % 10 == 0, fen
    counts = {}
    for denomination in DENOMINATIONS_FEN:
        pieces, fen = divmod(fen, denomination)
        if pieces:
            counts[str(denomination)] = pieces
    return counts


def account_of(station_id: str, index: int) -> str:
    """The demo customer ``index`` of a station (``sync_server.admin.demo_customer_rows``)."""
    return f"DM{station_id[-4:]}{index:04d}"


class ServerClock:
    """The sync server's ``now`` (enrollment codes, ``received_at``, clock offsets, last syncs) from a FakeClock.

    The server reads the time only through ``datetime.now`` in ``sync_server.service``; this stands in for that
    module's ``datetime`` while a test runs (the server thread shares the module).
    """

    def __init__(self, clock):
        clock_ = clock

        class _ServerDateTime(datetime):
            @classmethod
            def now(cls, tz=None):
                return clock_.now if tz is None else clock_.now.astimezone(tz)

        self.datetime = _ServerDateTime


@dataclass
class Counter:
    """A business day open at one station: its agent and supervisor logged in."""

    history: History
    st: Station
    agent: agents.AgentSession
    supervisor: agents.AgentSession
    variance: int = 0

    def step(self, minutes: float = 2) -> None:
        """A customer later (the agent's session and a PIN stay fresh for 10 and 5 minutes)."""
        self.history.clock.advance(minutes=minutes)

    def auth(self, account_id: str) -> agents.CustomerAuth:
        """The customer of ``account_id`` typed the right PIN."""
        self.step()
        customer = Customer.get(Customer.account_id == account_id)
        return agents.authenticate_customer(self.st, self.agent, customer, DEMO_CUSTOMER_PIN)

    def withdraw(self, account_id: str, amount: int):
        identity = identity_present(self.st) if identity_required(self.st, amount, False) else None
        return operations.withdraw_cash(self.st, self.agent, self.auth(account_id), amount, receipts.new_txn_id(),
                                        identity=identity)

    def deposit(self, account_id: str, amount: int):
        return operations.deposit_cash(self.st, self.agent, self.auth(account_id), amount, receipts.new_txn_id())

    def transfer(self, account_id: str, amount: int):
        """A transfer to the customer's known payee."""
        auth = self.auth(account_id)
        payee = Payee.select().where(Payee.customer == auth.customer_id).get()
        return operations.transfer(self.st, self.agent, auth, payee.account, payee.name, amount,
                                   receipts.new_txn_id())

    def cancel(self, account_id: str, transfer_txn: str):
        return operations.cancel_transfer(self.st, self.agent, self.auth(account_id), transfer_txn,
                                          receipts.new_txn_id())

    def bill_cash(self, biller: str, reference: str, amount: int):
        self.step()
        return operations.pay_bill(self.st, self.agent, None, biller, reference, amount, receipts.new_txn_id())

    def bill_from_account(self, account_id: str, biller: str, reference: str, amount: int):
        return operations.pay_bill(self.st, self.agent, self.auth(account_id), biller, reference, amount,
                                   receipts.new_txn_id(), funding="account")

    def enquiry(self, account_id: str):
        return operations.balance_enquiry(self.st, self.agent, self.auth(account_id), receipts.new_txn_id())

    def stop(self, account_id: str, amount: int):
        """The customer stops at the fraud warning: a transfer to a "safe account" that is never sent."""
        self.step()
        customer = Customer.get(Customer.account_id == account_id)
        return operations.stop_transfer(self.st, self.agent, customer, "6222000099990000", "公安局安全账户", amount,
                                        receipts.new_txn_id())

    def reverse(self, txn: str, reason: str = "agent keyed the wrong customer"):
        self.step()
        return operations.reverse(self.st, self.supervisor, txn, receipts.new_txn_id(), reason)


@dataclass
class History:
    """The stations, the server and the shared clock of a history, with helpers to change it and run recon."""

    server: object
    clock: object
    tmp_path: Path
    stations: dict[str, Station] = field(default_factory=dict)
    #: What the story recorded, per station: label -> receipt (e.g. ``"withdrawal-0"``: day 0's first withdrawal).
    receipts: dict[str, dict[str, object]] = field(default_factory=dict)
    #: Other devices opened by the test (closed with the history).
    devices: list[Station] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return self.server.database_url

    @property
    def server_url(self) -> str:
        return self.server.url

    @property
    def now(self) -> datetime:
        return self.clock.now

    def db(self):
        """The bank's database, bound in the test's thread."""
        return server_db()

    # -- recon -----------------------------------------------------------------------------------------------
    def find(self, scope: Scope | None = None, now: datetime | None = None, **scope_fields) -> list[Discrepancy]:
        """What ``find_discrepancies`` reports (as of the clock unless ``now``), over all history by default."""
        return self.findings(scope, now, **scope_fields).discrepancies

    def findings(self, scope: Scope | None = None, now: datetime | None = None, **scope_fields):
        from sync_server.recon.run import find_discrepancies

        now = now or self.now
        scope = scope or Scope(now=now, **scope_fields)
        return find_discrepancies(self.db(), scope, now)

    def recon(self, *args: str, as_of: datetime | None = None, input: str | None = None, columns: int = 200
              ) -> Result:
        """``recon ARGS --database-url URL`` through click's CliRunner; ``recon run`` gets ``--as-of`` (the clock)
        unless ARGS name one; tables are ``columns`` wide. The models are bound to the server's database again
        afterwards."""
        from sync_server.recon.cli import cli

        args = list(args)
        if args and args[0] in ("run", "exceptions", "billers", "report"):
            args.append("--database-url")
            args.append(self.database_url)
        if args and args[0] == "run" and "--as-of" not in args:
            args += ["--as-of", (as_of or self.now).isoformat()]
        bound = db_proxy.obj
        try:
            return CliRunner().invoke(cli, args, input=input, catch_exceptions=False, env={"COLUMNS": str(columns)})
        finally:
            db_proxy.initialize(bound)

    def recon_json(self, *args: str, **kwargs) -> tuple[int, dict]:
        """``recon run --format json ARGS``: the exit code and the parsed document."""
        result = self.recon("run", "--format", "json", *args, **kwargs)
        assert result.exit_code in (0, 1), result.output
        return result.exit_code, json.loads(result.stdout)

    # -- the stations --------------------------------------------------------------------------------------
    def station(self, station_id: str) -> Station:
        return self.stations[station_id]

    def sync(self, *station_ids: str) -> dict[int, str]:
        """Sync the stations (all by default); returns the rejections by seq of the last one."""
        rejected: dict[int, str] = {}
        for station_id in station_ids or tuple(self.stations):
            rejected = sync_once(self.stations[station_id]).rejected
        return rejected

    def next_morning(self) -> None:
        """The clock at 07:40 local time the next day."""
        st = next(iter(self.stations.values()))
        local = self.clock.now.astimezone(st.timezone)
        self.clock.now = datetime.combine(local.date() + timedelta(days=1), OPEN_AT, st.timezone).astimezone(UTC)

    @contextmanager
    def day(self, station: str | Station, variance: int = 0, sync: bool = True) -> Iterator[Counter]:
        """A business day at the station (an id, or a device such as ``clone_device``'s): log in, open with the
        float, serve (the block), close with the count ``variance`` fen off what the drawer should hold, then sync
        (unless ``sync`` is False)."""
        st = self.stations[station] if isinstance(station, str) else station
        with st.bound():
            agent = agents.login_agent(st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
            supervisor = agents.login_agent(st, DEMO_AGENTS[1][0], DEMO_AGENTS[1][3])
            business_day.open_day(st, agent, FLOAT)
            counter = Counter(self, st, agent, supervisor, variance)
            yield counter
            counter.step()
            agent = agents.login_agent(st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
            # Beyond the tolerance a close needs a reason and a supervisor's approval (station.business_day).
            approval = {}
            if abs(counter.variance) > business_day.variance_tolerance(st):
                approval = {"reason": "Miscount",
                            "supervisor": agents.login_agent(st, DEMO_AGENTS[1][0], DEMO_AGENTS[1][3])}
            business_day.close_day(st, agent, counts_of(business_day.drawer_cash(st) + counter.variance), **approval)
            if sync:
                sync_once(st)

    def clone_device(self, station_id: str, folder: Path) -> Station:
        """A second device with the station's SD card copied: the same keys, config and journal so far."""
        st = self.stations[station_id]
        shutil.copytree(st.data_dir, folder, ignore=lambda _, names: [n for n in names if n.startswith("station.db")])
        with st.bound():
            target = sqlite3.connect(folder / "station.db")
            try:
                st.db.connection().backup(target)
            finally:
                target.close()
        clone = Station(folder, clock=self.clock)
        self.devices.append(clone)
        return clone

    def head(self, station_id: str) -> int:
        """The station's last seq."""
        with self.stations[station_id].bound():
            return journal_head(self.stations[station_id])[0]

    def operation(self, station_id: str, txn: str) -> Operation:
        with self.stations[station_id].bound():
            return Operation.get_by_id(txn)

    # -- the bank's side -----------------------------------------------------------------------------------
    def entry(self, station_id: str, seq: int) -> Entry:
        self.db()
        return Entry.get((Entry.station_id == station_id) & (Entry.seq == seq))

    def payload(self, station_id: str, seq: int) -> dict:
        return unverified_payload(self.entry(station_id, seq).token)

    def seq_of(self, station_id: str, txn: str) -> int:
        self.db()
        return Entry.get((Entry.station_id == station_id) & (Entry.txn == txn)).seq

    def postings(self, station_id: str, seq: int) -> list[tuple[int, str, int]]:
        """(leg, account, debit-positive fen) of one entry's postings."""
        self.db()
        return list(Posting.select(Posting.leg, Posting.account_id, Posting.amount_fen).where(
            (Posting.station_id == station_id) & (Posting.seq == seq)).order_by(Posting.leg).tuples())

    def balance(self, account_id: str) -> int:
        self.db()
        return Account.get_by_id(account_id).balance_fen

    def bank_station(self, station_id: str) -> BankStation:
        self.db()
        return BankStation.get_by_id(station_id)

    def policy(self, **overrides) -> None:
        """Lay ``overrides`` over the server policy (e.g. ``recon={...}``; ``station={...}`` is merged into the
        stations' overrides, which they learn at their next sync)."""
        self.db()
        value = ServerSetting.get_by_id("policy").value
        if "station" in overrides:
            overrides["station"] = {**value.get("station", {}), **overrides["station"]}
        ServerSetting.update(value={**value, **overrides}).where(ServerSetting.key == "policy").execute()

    @contextmanager
    def insider(self):
        """An insider's (or a botched restore's) writes around the ledger's append-only triggers, in one
        transaction (``sync_support.append_only_lifted``)."""
        with append_only_lifted(self.db()):
            yield

    @staticmethod
    def move_balance(account_id: str, debit_fen: int) -> None:
        """Change a stored balance as a debit of ``debit_fen`` would (on the account's normal side)."""
        account = Account.get_by_id(account_id)
        delta = debit_fen if account.kind in DEBIT_NORMAL else -debit_fen
        Account.update(balance_fen=Account.balance_fen + delta).where(Account.account_id == account_id).execute()

    def unpost(self, station_id: str, seq: int, accounts: tuple[str, ...] | None = None) -> list[tuple]:
        """An insider deletes an entry's postings (only those on ``accounts`` if given) and moves the stored
        balances back, so that every balance still agrees with its postings; returns the deleted legs."""
        legs = [(leg, account, amount) for leg, account, amount in self.postings(station_id, seq)
                if accounts is None or account in accounts]
        with self.insider():
            for leg, account_id, amount in legs:
                Posting.delete().where((Posting.station_id == station_id) & (Posting.seq == seq)
                                       & (Posting.leg == leg)).execute()
                self.move_balance(account_id, -amount)
        return legs

    def bank_booking(self, legs: list[tuple[str, int, str]]) -> int:
        """A bank-side ledger transaction (station id ``BANK``), as ``sync_server.admin`` books them: the legs
        posted and the balances moved in one transaction; returns its seq."""
        from peewee import fn

        database = self.db()
        with database.atomic():
            seq = (Posting.select(fn.MAX(Posting.seq)).where(Posting.station_id == BANK_BOOKING).scalar() or 0) + 1
            book = Book(BANK_BOOKING, set(), utc_text(self.now))
            for account_id, _, _ in legs:
                book.load_account(account_id)
            book.post(legs)
            book.flush()
            Posting.insert_many([dict(station_id=BANK_BOOKING, seq=seq, leg=i, account_id=a, amount_fen=amount,
                                      memo=memo) for i, (a, amount, memo) in enumerate(legs)]).execute()
        return seq

    def replace_tokens(self, station_id: str, tokens: dict[int, str], head: bool = True) -> None:
        """An insider replaces stored tokens (seq -> token); ``head``: the bank's recorded chain head follows the
        new last token, as an insider covering their tracks would make it."""
        with self.insider():
            for seq, token in tokens.items():
                Entry.update(token=token).where((Entry.station_id == station_id) & (Entry.seq == seq)).execute()
            if head:
                last = max(seq for (seq,) in Entry.select(Entry.seq).where(Entry.station_id == station_id).tuples())
                token = self.entry(station_id, last).token
                BankStation.update(head=chain_hash(token)).where(BankStation.station_id == station_id).execute()

    def rechain(self, station_id: str, seq: int, change: Callable[[dict], tuple[dict, Callable[[dict], str]]]
                ) -> dict[int, str]:
        """An insider with the station's key rewrites its stored history from ``seq``: ``change(payload)`` gives
        entry ``seq``'s new payload and the signer to sign it with; every later entry is signed again by the
        station's key with ``prev`` linking to the rewritten one, so the chain breaks nowhere else, and so is the
        station's stored tail claim (its seq, the new chain value, its time), which would otherwise contradict the
        new head. Returns the new tokens by seq (already stored)."""
        self.db()
        stored = dict(Entry.select(Entry.seq, Entry.token).where(
            (Entry.station_id == station_id) & (Entry.seq >= seq)).order_by(Entry.seq).tuples())
        signer = self.stations[station_id].signer
        new: dict[int, str] = {}
        for number in sorted(stored):
            payload = unverified_payload(stored[number])
            if number == seq:
                payload, sign = change(payload)
            else:
                payload["prev"] = chain_hash(new[number - 1])
                sign = signer.sign
            new[number] = sign(payload)
        self.replace_tokens(station_id, new)
        tail = StationTail.get_or_none(StationTail.station_id == station_id)
        if tail is not None and tail.seq in new:
            claim = unverified_payload(tail.claim)
            head = chain_hash(new[tail.seq])
            token = make_tail_claim(signer, station_id=station_id, seq=tail.seq, head=head, ts=claim["ts"])
            StationTail.update(head=head, claim=token).where(StationTail.station_id == station_id).execute()
        return new


def story(counter: Counter, station_id: str, day: int) -> dict[str, object]:
    """One day's customers at one station, every kind of operation; returns the receipts by label."""
    a, b, c, d = (account_of(station_id, index) for index in ((2, 4, 3, 5), (7, 8, 6, 10))[day])
    done = {}
    done["withdrawal"] = counter.withdraw(a, 20_000)
    done["deposit"] = counter.deposit(b, 50_000)
    done["transfer"] = counter.transfer(c, 30_000)
    withdrawn = counter.transfer(c, 10_000)
    done["transfer_cancelled"] = withdrawn
    done["transfer_cancel"] = counter.cancel(c, withdrawn.txn)
    done["bill_cash"] = counter.bill_cash("ELEC-SGCC", f"{3_000_000_000 + day:010d}", 8_550)
    done["bill_account"] = counter.bill_from_account(a, "WATER-COUNTY", f"{40_000_000 + day:08d}", 3_280)
    done["topup"] = counter.bill_cash("MOBILE-CMCC", "13800138000", 5_000)
    mistaken = counter.withdraw(d, 10_000)
    done["withdrawal_reversed"] = mistaken
    done["reversal"] = counter.reverse(mistaken.txn)
    done["enquiry"] = counter.enquiry(b).receipt
    done["transfer_stopped"] = counter.stop(d, 800_000)
    if station_id == "ST-0002" and day == 0:
        # A customer of ST-0001 who also calls ST-0002 home: holds at two stations.
        done["withdrawal_shared"] = counter.withdraw(account_of("ST-0001", 0), 30_000)
    return done


def build_history(server, tmp_path: Path, clock) -> History:
    """Enroll the three stations and run two business days at each (see the module docstring)."""
    history = History(server, clock, tmp_path)
    server_db()
    load_demo_data(["ST-0003"])  # ST-0001 and ST-0002 come with the server fixture
    history.policy(station={"fees": FEES})
    for station_id in STATIONS:
        st = enrolled_station(server, tmp_path, station_id, clock)
        history.stations[station_id] = st
        history.receipts[station_id] = {}
        with st.bound():
            for agent_id, name, role, pin in DEMO_AGENTS:
                agents.add_agent(st, agent_id, name, role, pin)
    for day, variances in enumerate(VARIANCES):
        if day:
            history.next_morning()
        for station_id in STATIONS:
            with history.day(station_id, variances[station_id]) as counter:
                for label, receipt in story(counter, station_id, day).items():
                    history.receipts[station_id][f"{label}-{day}"] = receipt
        history.db()
        execute_due_transfers(history.now)
    history.clock.advance(minutes=30)
    history.sync()  # every station has synced at the same moment: recon runs as of it
    return history


@dataclass
class HistoryTemplate:
    """A history built once: the bank (``BankTemplate``), the stations' closed data folders, the clock's start and
    end, what the story recorded, and where the template's own database is."""

    bank: BankTemplate
    folders: dict[str, Path]
    start: datetime
    end: datetime
    receipts: dict[str, dict[str, object]]
    url: str


@pytest.fixture(scope="session")
def history_templates(tmp_path_factory, bank_templates):
    """``template(backend, clock)``: the clean history built once per test process (xdist worker), backend and
    start of the test's clock, from the ``server`` fixture's bank; each ``history`` is a copy of it (its bank's
    database, the stations' data folders) instead of three enrollments and two business days of syncs per test."""
    built: dict[tuple, HistoryTemplate] = {}

    def template(backend: str, test_clock) -> HistoryTemplate:
        start = test_clock.now
        if (backend, start) not in built:
            root = tmp_path_factory.mktemp(f"history-{backend}")
            if backend == "sqlite":
                url = f"sqlite:///{root / 'sync-server.db'}"
            else:
                url = pg_template_url(f"history{len(built)}")
                empty_public_schema(url)
            keys_dir = root / "server-keys"
            if not copy_bank(bank_templates(backend), url, keys_dir):
                build_bank(url, keys_dir)
            db_proxy.initialize(connect_url(url))
            running = start_server(url, keys_dir)
            clock = type(test_clock)(start)
            try:
                with pytest.MonkeyPatch.context() as patch:
                    patch.setattr(service, "datetime", ServerClock(clock).datetime)
                    history = build_history(running, root, clock)
            finally:
                running.stop()
                if not db_proxy.obj.is_closed():
                    db_proxy.obj.close()
            for st in history.stations.values():
                st.close()
            bank = BankTemplate(keys_dir, sqlite_file=root / "sync-server.db") if backend == "sqlite" else \
                pg_bank_template(url, keys_dir)
            built[backend, start] = HistoryTemplate(bank, {sid: root / sid for sid in STATIONS}, start, clock.now,
                                                    history.receipts, url)
        return built[backend, start]

    yield template
    for template_ in built.values():
        if template_.bank.sqlite_file is None:
            drop_pg_database(template_.url)


@pytest.fixture(name="history")
def history_fixture(database_url, tmp_path, clock, monkeypatch, history_templates) -> History:
    """A clean history of three stations over two business days (SQLite, and PostgreSQL when configured): a copy
    of the one built once per test process (``history_templates``), served by a sync server of its own."""
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    template = history_templates(backend, clock)
    keys_dir = tmp_path / "server-keys"
    monkeypatch.setattr(service, "datetime", ServerClock(clock).datetime)
    if copy_bank(template.bank, database_url, keys_dir):
        db_proxy.initialize(connect_url(database_url))
        running = start_server(database_url, keys_dir)
        clock.now = template.end
        built = History(running, clock, tmp_path, receipts=copy.deepcopy(template.receipts))
        for station_id, folder in template.folders.items():
            shutil.copytree(folder, tmp_path / station_id)
            st = Station(tmp_path / station_id, clock=clock)
            st.update_config("server", {**st.config["server"], "url": running.url})
            built.stations[station_id] = st
    else:  # no pg_dump to copy PostgreSQL with: built from scratch, as the template was
        build_bank(database_url, keys_dir)
        db_proxy.initialize(connect_url(database_url))
        running = start_server(database_url, keys_dir)
        built = build_history(running, tmp_path, clock)
    yield built
    for st in [*built.stations.values(), *built.devices]:
        st.close()
    running.stop()
    if not db_proxy.obj.is_closed():
        db_proxy.obj.close()
