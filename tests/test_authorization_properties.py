"""Property: whatever a station asks in real time and records, in any order and at any pace, the bank keeps its
word and its ledger: a customer's offline holds and live grants never exceed the balance, every check of the
ledger passes, a grant is used once at most, and an entry for exactly the operation granted settles while its
grant is live.

Hypothesis draws sequences of steps at one station: ask for a withdrawal or a transfer (``authorize`` at the
bank's time), record an entry naming a grant (exactly as granted, or with another amount), record an offline
withdrawal, let time pass (past expiries too), push the journal (``sync_once`` into ``service.ingest`` at the same
bank time), or mark the expired grants. Bank time only moves forward, also between examples.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sync_support import BACKENDS, append_forged_entry, enrolled_station, server_db, start_module_bank
from ui_helpers import identity_present

from station import receipts
from station.protocol import authorizations as protocol
from station.protocol import key_codecs
from station.protocol.heads import new_nonce
from station.protocol.times import utc_text
from station.sync import sync_once
from sync_server import service
from sync_server.admin import import_customers, parse_customers_csv
from sync_server.authorize import authorize, expire_all
from sync_server.book import Book
from sync_server.checks import (
    balance_matches_postings,
    customer_balance_not_negative,
    holds_within_balance,
    legs_balance,
)
from sync_server.db import Authorization, Customer, Entry, db_proxy
from sync_server.problems import Problem

PAYEE = "6222000011112222"


class BankClock:
    """The bank's time in these tests (and the station's: its entries carry it)."""

    def __init__(self):
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class Response:
    def __init__(self, status_code: int, body: dict):
        self.status_code, self._body, self.headers, self.reason = status_code, body, {}, ""

    def json(self) -> dict:
        return self._body


class InProcessBank:
    """What ``sync_once`` posts to: ``service.ingest`` at the bank clock's time, in this thread."""

    def __init__(self, keys, clock: BankClock):
        self.keys, self.clock = keys, clock

    def post(self, url, data, headers, **_):
        station_id = url.rsplit("/", 2)[-2]
        server_db()
        try:
            return Response(200, service.ingest(self.keys, station_id, headers, data, now=self.clock.now))
        except Problem as problem:
            return Response(problem.status, problem.body())


@pytest.fixture(scope="module", params=BACKENDS)
def bank_station(request, tmp_path_factory):
    """A server and ST-0001 enrolled, for the whole module."""
    tmp = tmp_path_factory.mktemp("authorizations")
    server = start_module_bank(request, tmp, ["ST-0001"])
    clock = BankClock()
    station = enrolled_station(server, tmp, "ST-0001", clock)
    yield station, server.app.extensions["server_keys"], clock
    station.close()
    server.stop()
    if not db_proxy.obj.is_closed():
        db_proxy.obj.close()


ask = st.tuples(st.just("ask"), st.sampled_from(["withdrawal", "transfer"]), st.integers(1, 100))
use = st.tuples(st.just("use"), st.integers(0, 20), st.sampled_from(["exact", "exact", "other amount"]))
push = st.tuples(st.just("push"))
#: Asking, using and pushing weigh more than the rest, so that most examples carry grants through to settlement.
steps = st.lists(st.one_of(
    ask, ask, use, use, push,
    st.tuples(st.just("offline"), st.integers(1, 60)),
    st.tuples(st.just("wait"), st.sampled_from([1, 60, 299, 301, 900])),
    st.tuples(st.just("expire")),
), min_size=4, max_size=16).map(lambda plan: [*plan, ("push",)])


def new_customer() -> str:
    """A customer of 3,000 yuan at home at ST-0001, new for each example (limits and balance untouched)."""
    server_db()
    account = f"PROP{Customer.select().where(Customer.account_id.startswith('PROP')).count():04d}"
    import_customers(parse_customers_csv("account_id,name,card_number,passbook_number,pin,balance,home_stations\n"
                                         f"{account},王奶奶,,,246810,3000,ST-0001\n", pin_log2_n=8))
    return account


def _ask(station, keys, clock, customer: str, kind: str, units: int) -> tuple[dict, protocol.Authorization]:
    amount = units * 1_000  # withdrawals: multiples of 10 yuan, at most 1,000 yuan
    payload = protocol.request_payload(
        station_id="ST-0001", nonce=new_nonce(), ts=utc_text(clock.now), kind=kind, txn=receipts.new_txn_id(),
        agent="A01", account=customer, amount=amount, fee=200 if kind == "transfer" else 0,
        **({"payee_account": PAYEE} if kind == "transfer" else {}))
    server_key = key_codecs.encryption_public_from_jwk(keys.public()["encryption_jwk"])
    body = protocol.seal_request(payload, station.signer, server_key)
    headers = {protocol.HEADER_STATION: "ST-0001", protocol.HEADER_NONCE: payload["nonce"]}
    server_db()
    answer = authorize(keys, "ST-0001", headers, body, now=clock.now)
    station_key = key_codecs.encryption_private_from_text(
        (station.data_dir / "keys" / "encryption.key").read_text(encoding="utf-8"))
    return payload, protocol.open_answer(answer.body, request=payload, server_signing_jwk=keys.public()[
        "signing_jwk"], station_encryption_key=station_key)


def _entry_body(station, payload: dict, auth_id: str, amount: int) -> dict:
    body = {"agent": "A01", "account": payload["account"], "amount": amount, "auth": auth_id}
    if payload["kind"] == "transfer":
        body.update(fee=200, payee_account=PAYEE, payee_name="王", warned=True)  # a new payee: past the warning
    else:
        body.update(_identity(station, amount))
    return body


def _identity(station, amount: int) -> dict:
    """A withdrawal above ``id_check_fen`` records the ID card of the person present (the bank checks it is there)."""
    return identity_present(station) if amount > station.policy["id_check_fen"] else {}


def _sound(clock: BankClock, customer: str) -> None:
    server_db()
    failures = [*legs_balance(), *balance_matches_postings(), *holds_within_balance(now=clock.now),
                *customer_balance_not_negative()]
    assert failures == []
    book = Book("-", {customer}, utc_text(clock.now))
    assert 0 <= book.held(customer) <= book.balance(customer)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=steps)
def test_grants_entries_and_expiries_keep_the_holds_within_the_balance(bank_station, plan):
    station, keys, clock = bank_station
    http = InProcessBank(keys, clock)
    customer = new_customer()
    grants: list[tuple[dict, protocol.Authorization]] = []
    recorded_txns: set[str] = set()
    #: seq -> auth_id of the entries recorded exactly as granted, the first entry with the grant's txn; not pushed
    first_uses: dict[int, str] = {}
    named: dict[int, str] = {}  # seq -> auth_id of every entry naming a grant, not pushed yet
    for step in plan:
        if step[0] == "ask":
            payload, answer = _ask(station, keys, clock, customer, step[1], step[2])
            if answer.granted:
                grants.append((payload, answer))
        elif step[0] == "use" and grants:
            payload, answer = grants[step[1] % len(grants)]
            amount = payload["amount"] + (0 if step[2] == "exact" else 1_000)
            with station.db.atomic():
                entry = append_forged_entry(station, payload["kind"], clock.now,
                                            _entry_body(station, payload, answer.auth_id, amount), txn=payload["txn"])
            named[entry.seq] = answer.auth_id
            if step[2] == "exact" and payload["txn"] not in recorded_txns:
                first_uses[entry.seq] = answer.auth_id
            recorded_txns.add(payload["txn"])
        elif step[0] == "offline":
            with station.db.atomic():
                append_forged_entry(station, "withdrawal", clock.now,
                                    {"agent": "A01", "account": customer, "amount": step[1] * 1_000,
                                     **_identity(station, step[1] * 1_000)},
                                    txn=receipts.new_txn_id())
        elif step[0] == "wait":
            clock.now += timedelta(seconds=step[1])
        elif step[0] == "push":
            server_db()
            live = {auth_id for (auth_id,) in Authorization.select(Authorization.auth_id).where(
                (Authorization.status == "active") & (Authorization.expires_at > utc_text(clock.now))).tuples()}
            sync_once(station, http=http)
            server_db()
            outcomes = dict(Entry.select(Entry.seq, Entry.outcome).where(
                (Entry.station_id == "ST-0001") & Entry.seq.in_(list(named) or [0])).tuples())
            for seq, auth_id in named.items():
                row = Authorization.get_by_id(auth_id)
                if outcomes[seq] == "settled":
                    assert (row.status, row.used_seq) == ("used", seq)
                if seq in first_uses and auth_id in live:
                    assert outcomes[seq] == "settled"  # exactly the operation granted, while its grant is live
            named.clear()
            first_uses.clear()
        elif step[0] == "expire":
            server_db()
            expire_all(clock.now)
        _sound(clock, customer)
    server_db()
    used = [seq for (seq,) in Authorization.select(Authorization.used_seq).where(
        Authorization.used_seq.is_null(False)).tuples()]
    assert len(used) == len(set(used))
