"""Real-time authorization at the bank: grants hold money until used or expired, refusals say why, the entry that
names a grant consumes it, and the ledger's invariants hold throughout (SQLite, and PostgreSQL when set up)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
from stdnum import luhn
from sync_support import append_forged_entry, enrolled_station, server_db
from test_server_ingest import check_against_openapi, problem_type

from station import receipts
from station.protocol import authorizations as protocol
from station.protocol import key_codecs
from station.protocol.heads import new_nonce
from station.protocol.times import utc_text
from station.sync import ENCRYPTION_KEY_FILE, sync_once
from sync_server.admin import block_payee, execute_due_transfers, import_customers, parse_customers_csv, revoke_station
from sync_server.authorize import authorize, expire_all
from sync_server.book import Book
from sync_server.checks import check_ledger
from sync_server.db import Account, Authorization, Customer, Entry, Hold, ReconItem, Transfer
from sync_server.db import Station as ServerStation

PATH = "/api/v1/stations/{station_id}/authorizations"
CUSTOMER = "AUTH0001"
OTHER = "AUTH0002"  # homed at ST-0002 only
PAYEE = "6222000011112222"
CARD = "6217009911111111"


def customers_csv() -> str:
    card = CARD[:-1] + luhn.calc_check_digit(CARD[:-1])
    return ("account_id,name,card_number,passbook_number,pin,balance,home_stations\n"
            f"{CUSTOMER},李奶奶,{card},,246810,1500,ST-0001\n"
            f"{OTHER},张大爷,,8800990001,135790,800,ST-0002\n")


@pytest.fixture
def bank(server, tmp_path, clock):
    """ST-0001 enrolled and synced; customer AUTH0001 (1,500 yuan, home ST-0001: 1,000 yuan held there)."""
    server_db()
    import_customers(parse_customers_csv(customers_csv(), pin_log2_n=8))
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    server_db()
    assert held("ST-0001") == 100_000 and balance() == 150_000
    yield st
    st.close()


def balance(account: str = CUSTOMER) -> int:
    server_db()
    return Account.get_by_id(account).balance_fen


def held(station_id: str, account: str = CUSTOMER) -> int:
    server_db()
    row = Hold.get_or_none((Hold.station_id == station_id) & (Hold.account_id == account))
    return row.amount_fen if row else 0


def available(account: str = CUSTOMER, now: datetime | None = None) -> int:
    server_db()
    book = Book("-", {account}, utc_text(now or datetime.now(UTC)))
    return book.available(account)


def sound() -> None:
    server_db()
    assert check_ledger() == []


def server_keys(server):
    return server.app.extensions["server_keys"]


def request(st, kind: str = "withdrawal", *, amount: int = 10_000, fee: int = 0, account: str = CUSTOMER,
            txn: str | None = None, ts: datetime | None = None, nonce: str | None = None, **extra) -> dict:
    defaults = {"transfer": {"payee_account": PAYEE}, "bill_payment": {"biller": "ELEC-SGCC"},
                "transfer_cancel": {"ref_txn": receipts.new_txn_id()}}.get(kind, {})
    return protocol.request_payload(
        station_id=st.station_id, nonce=nonce or new_nonce(), ts=utc_text(ts or datetime.now(UTC)), kind=kind,
        txn=txn or receipts.new_txn_id(), agent="A01", account=account, amount=amount, fee=fee,
        **{**defaults, **extra})


def sealed(server, st, payload: dict, signer=None) -> bytes:
    server_key = server_keys(server).public()["encryption_jwk"]
    return protocol.seal_request(payload, signer or st.signer, key_codecs.encryption_public_from_jwk(server_key))


def headers(payload: dict) -> dict:
    return {protocol.HEADER_STATION: payload["station"], protocol.HEADER_NONCE: payload["nonce"],
            "Content-Type": protocol.CONTENT_TYPE}


def post(server, st, payload: dict, body: bytes | None = None, extra_headers: dict | None = None):
    return requests.post(server.url + PATH.format(station_id=payload["station"]),
                         data=sealed(server, st, payload) if body is None else body,
                         headers={**headers(payload), **(extra_headers or {})}, timeout=30)


def opened(server, st, payload: dict, body: bytes) -> protocol.Authorization:
    key = key_codecs.encryption_private_from_text((st.data_dir / ENCRYPTION_KEY_FILE).read_text(encoding="utf-8"))
    return protocol.open_answer(body, request=payload, server_signing_jwk=server_keys(server).public()["signing_jwk"],
                                station_encryption_key=key)


def ask(server, st, kind: str = "withdrawal", **fields) -> tuple[dict, protocol.Authorization]:
    """Over HTTP: the request and the bank's verified answer."""
    payload = request(st, kind, **fields)
    response = post(server, st, payload)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == protocol.CONTENT_TYPE
    return payload, opened(server, st, payload, response.content)


def ask_at(server, st, now: datetime, kind: str = "withdrawal", **fields) -> tuple[dict, protocol.Authorization]:
    """The plain function at the bank's time ``now`` (the request's ts is ``now`` too)."""
    payload = request(st, kind, ts=now, **fields)
    server_db()
    answer = authorize(server_keys(server), st.station_id, headers(payload), sealed(server, st, payload), now=now)
    return payload, opened(server, st, payload, answer.body)


def grant_row(auth_id: str) -> Authorization:
    server_db()
    return Authorization.get_by_id(auth_id)


def record_entry(st, entry_type: str, body: dict, txn: str) -> int:
    """The station signs an entry naming the grant (as the station's online operations write it) and syncs."""
    if entry_type == "transfer":
        body = {"warned": True, **body}  # PAYEE is new to the customer: the station showed the fraud warning
    with st.db.atomic():
        entry = append_forged_entry(st, entry_type, st.now(), {"agent": "A01", **body}, txn=txn)
    return entry.seq


def push(st) -> dict:
    result = sync_once(st)
    return result.rejected


# -- grants and refusals ----------------------------------------------------------------------------------------
def test_a_grant_holds_amount_and_fee_and_the_available_balance_drops(server, bank):
    before = available()
    payload, answer = ask(server, bank, amount=30_000)
    assert answer.granted and answer.reason is None and answer.auth_id
    assert answer.balance == 150_000 and answer.acked_seq == bank.setting("acked_seq")
    assert answer.execute_after is None
    expires = datetime.fromisoformat(answer.expires_at)
    assert expires - datetime.fromisoformat(answer.server_time) == timedelta(seconds=300)
    row = grant_row(answer.auth_id)
    assert (row.status, row.kind, row.txn, row.account_id, row.hold_fen) == (
        "active", "withdrawal", payload["txn"], CUSTOMER, 30_000)
    assert available() == before - 30_000
    # It fitted the available balance: the station's offline allowance is untouched.
    assert held("ST-0001") == 100_000
    sound()


def test_a_grant_beyond_the_available_balance_takes_the_rest_from_the_stations_own_offline_hold(server, bank):
    assert available() == 50_000
    _, answer = ask(server, bank, "transfer", amount=70_000, fee=200)
    assert answer.granted
    # 50,000 from the available balance, 20,200 out of the station's offline hold: holds + grants = balance.
    assert held("ST-0001") == 100_000 - 20_200
    assert available() == 0
    server_db()
    assert Book("-", {CUSTOMER}, utc_text(datetime.now(UTC))).held(CUSTOMER) == balance()
    _, refused = ask(server, bank, "transfer", amount=79_801, fee=200)
    assert (refused.granted, refused.reason, refused.auth_id) == (False, "insufficient_funds", None)
    _, last = ask(server, bank, "transfer", amount=79_600, fee=200)
    assert last.granted and held("ST-0001") == 0
    sound()


def test_insufficient_funds_is_refused_and_recorded_for_the_audit(server, bank):
    payload, answer = ask(server, bank, "transfer", amount=150_000, fee=200)
    assert not answer.granted and answer.reason == "insufficient_funds" and answer.balance == 150_000
    assert answer.expires_at is None
    server_db()
    row = Authorization.get(Authorization.txn == payload["txn"])
    assert (row.status, row.reason, row.hold_fen) == ("refused", "insufficient_funds", 0)
    assert available() == 50_000
    sound()


@pytest.mark.parametrize("status, reason", [("locked", "account_locked"), ("closed", "account_closed")])
def test_locked_and_closed_accounts_are_refused(server, bank, status, reason):
    server_db()
    Customer.update(status=status).where(Customer.account_id == CUSTOMER).execute()
    for kind in ("withdrawal", "balance_enquiry"):
        _, answer = ask(server, bank, kind, amount=10_000 if kind == "withdrawal" else 0)
        assert (answer.granted, answer.reason, answer.balance) == (False, reason, 150_000)


def test_an_unknown_account_is_refused_without_a_balance(server, bank):
    for account in ("NOSUCH0001", "cash:ST-0001"):
        _, answer = ask(server, bank, account=account)
        assert (answer.granted, answer.reason, answer.balance) == (False, "unknown_account", None)


def test_a_blocked_payee_and_an_unknown_biller_are_refused(server, bank):
    server_db()
    block_payee(PAYEE, "reported fraud")
    _, answer = ask(server, bank, "transfer", amount=10_000, fee=200)
    assert answer.reason == "payee_blocked"
    _, answer = ask(server, bank, "bill_payment", amount=5_000, biller="NO-SUCH-BILLER")
    assert answer.reason == "unknown_biller"
    _, answer = ask(server, bank, "bill_payment", amount=5_000)
    assert answer.granted


def test_the_limits_are_the_station_policys_as_the_bank_applies_them(server, bank):
    _, answer = ask(server, bank, amount=100_010)
    assert answer.reason == "over_transaction_limit"
    _, first = ask(server, bank, amount=60_000)
    assert first.granted
    # The day's limit counts the live grants of the day at this station: 60,000 + 50,000 > 100,000.
    _, second = ask(server, bank, amount=50_000)
    assert second.reason == "over_daily_limit"


def test_a_balance_enquiry_is_granted_with_the_balance_and_holds_nothing(server, bank):
    _, answer = ask(server, bank, "balance_enquiry", amount=0)
    assert answer.granted and answer.balance == 150_000
    assert grant_row(answer.auth_id).hold_fen == 0
    assert available() == 50_000


# -- idempotency and replay -------------------------------------------------------------------------------------
def test_the_same_txn_asked_again_gets_the_same_grant_and_one_hold(server, bank):
    payload, first = ask(server, bank, amount=20_000)
    again = {**payload, "nonce": new_nonce(), "ts": utc_text(datetime.now(UTC))}
    response = post(server, bank, again)
    second = opened(server, bank, again, response.content)
    assert (second.auth_id, second.expires_at) == (first.auth_id, first.expires_at)
    assert available() == 30_000
    server_db()
    assert Authorization.select().where(Authorization.txn == payload["txn"]).count() == 1
    # Other fields under the same txn: refused, nothing held.
    other = {**payload, "nonce": new_nonce(), "amount": 30_000}
    response = post(server, bank, other)
    assert response.status_code == 409 and problem_type(response) == "authorization-conflict"
    check_against_openapi(response, PATH)
    assert available() == 30_000


def test_a_refused_txn_may_be_asked_again(server, bank):
    payload, refused = ask(server, bank, "transfer", amount=150_000, fee=200)
    assert refused.reason == "insufficient_funds"
    again = {**payload, "nonce": new_nonce(), "amount": 40_000}
    granted = opened(server, bank, again, post(server, bank, again).content)
    assert granted.granted
    server_db()
    assert sorted(row.status for row in Authorization.select().where(Authorization.txn == payload["txn"])) == [
        "active", "refused"]


def test_a_replayed_nonce_is_refused(server, bank):
    payload, _ = ask(server, bank)
    body = sealed(server, bank, payload)
    response = post(server, bank, payload, body)
    assert response.status_code == 409 and problem_type(response) == "replayed"
    check_against_openapi(response, PATH)


@pytest.mark.parametrize("minutes", [-11, 11])
def test_a_request_far_from_the_banks_time_is_refused_as_clock_skew(server, bank, minutes):
    payload = request(bank, ts=datetime.now(UTC) + timedelta(minutes=minutes))
    response = post(server, bank, payload)
    assert response.status_code == 400 and problem_type(response) == "clock-skew"
    assert "minutes" in response.json()["detail"] and response.json()["server_time"]
    check_against_openapi(response, PATH)
    assert available() == 50_000


# -- hostile bodies -------------------------------------------------------------------------------------------
def _flipped(body: bytes) -> bytes:
    tampered = bytearray(body)
    tampered[len(tampered) // 2] ^= 0x01
    return bytes(tampered)


def _sealed_text(server, text: bytes, payload: dict) -> bytes:
    from station.protocol.sealing import seal

    server_key = key_codecs.encryption_public_from_jwk(server_keys(server).public()["encryption_jwk"])
    return seal(text, server_key, info=protocol.request_info(payload["station"], payload["nonce"]), level=1)


def test_hostile_bodies_get_a_problem_never_a_500(server, bank):
    from station.protocol.tokens import Signer, generate_signing_key

    payload = request(bank)
    good = sealed(server, bank, payload)
    stranger = Signer(generate_signing_key())
    cases = [
        (good, {protocol.HEADER_NONCE: "short"}, 400, "malformed-request"),
        (good, {protocol.HEADER_STATION: "ST-0002"}, 400, "malformed-request"),
        (b"\0" * (protocol.MAX_SEALED_BYTES + 1), {}, 413, "too-large"),
        (b"", {}, 400, "undecryptable"),
        (_flipped(good), {}, 400, "undecryptable"),
        (good, {protocol.HEADER_NONCE: new_nonce()}, 400, "undecryptable"),  # the nonce is in the HPKE info
        (_sealed_text(server, b"not a token", payload), {}, 400, "malformed-authorization"),
        (_sealed_text(server, b"\xff\xfe", payload), {}, 400, "malformed-authorization"),
        (_sealed_text(server, b"a.b.c", payload), {}, 400, "malformed-authorization"),
        (sealed(server, bank, {**payload, "kind": "deposit"}), {}, 400, "malformed-authorization"),
        (sealed(server, bank, {**payload, "amount": 1.5}), {}, 400, "malformed-authorization"),
        (sealed(server, bank, {**payload, "ts": "yesterday"}), {}, 400, "malformed-authorization"),
        (sealed(server, bank, payload, signer=stranger), {}, 401, "bad-signature"),
        (protocol.seal_request(payload, bank.signer, key_codecs.generate_encryption_key().public_key()), {}, 400,
         "undecryptable"),  # sealed to another key than the bank's
    ]
    for body, extra, status, slug in cases:
        response = post(server, bank, payload, body, extra)
        assert (response.status_code, problem_type(response)) == (status, slug), (slug, response.text)
        check_against_openapi(response, PATH)
    # An answer that is not for this station's key is not opened by it.
    other = request(bank)
    response = post(server, bank, other)
    with pytest.raises(protocol.BadAuthorization):
        opened(server, bank, {**other, "nonce": new_nonce()}, response.content)
    assert available() == 40_000  # only the last request was granted
    sound()


def test_revoked_flagged_unknown_and_pending_stations_are_refused(server, bank):
    payload = request(bank)
    response = post(server, bank, {**payload, "station": "ST-9999"})
    assert response.status_code == 404 and problem_type(response) == "unknown-station"
    server_db()
    ServerStation.update(flagged=True, flag_reason="fork at seq 9").where(
        ServerStation.station_id == "ST-0001").execute()
    response = post(server, bank, payload)
    assert response.status_code == 409 and problem_type(response) == "station-flagged"
    check_against_openapi(response, PATH)
    server_db()
    ServerStation.update(flagged=False).where(ServerStation.station_id == "ST-0001").execute()
    revoke_station("ST-0001", reason="stolen", by="test")
    response = post(server, bank, request(bank))
    assert response.status_code == 403 and problem_type(response) == "station-revoked"
    check_against_openapi(response, PATH)
    response = requests.post(server.url + PATH.format(station_id="ST-0002"), data=b"x",
                             headers={protocol.HEADER_STATION: "ST-0002", protocol.HEADER_NONCE: new_nonce()},
                             timeout=30)
    assert response.status_code == 403 and problem_type(response) == "station-not-enrolled"


def test_revoking_a_station_releases_its_live_grants(server, bank):
    _, answer = ask(server, bank, amount=30_000)
    server_db()
    revoke_station("ST-0001", reason="stolen", by="test")
    assert grant_row(answer.auth_id).status == "expired"
    assert available() == 150_000
    sound()


# -- expiry -------------------------------------------------------------------------------------------------------
def test_a_grant_whose_entry_never_comes_releases_its_hold_at_expiry(server, bank):
    now = datetime.now(UTC)
    _, answer = ask_at(server, bank, now, amount=30_000)
    assert available(now=now) == 20_000
    assert available(now=now + timedelta(seconds=299)) == 20_000
    # Past its expiry it holds nothing, whatever its row still says; the next request's sweep marks it.
    assert available(now=now + timedelta(seconds=300)) == 50_000
    server_db()
    assert check_ledger() == []
    later = now + timedelta(seconds=301)
    _, other = ask_at(server, bank, later, "balance_enquiry", amount=0)
    assert other.granted and grant_row(answer.auth_id).status == "expired"
    assert grant_row(other.auth_id).status == "active"
    assert expire_all(later + timedelta(seconds=300)) == 1
    assert grant_row(other.auth_id).status == "expired"


# -- the entry that names a grant ---------------------------------------------------------------------------------
def test_an_entry_naming_a_live_grant_settles_from_it_and_consumes_it(server, bank):
    payload, answer = ask(server, bank, amount=40_000)
    seq = record_entry(bank, "withdrawal", {"account": CUSTOMER, "amount": 40_000, "auth": answer.auth_id},
                       payload["txn"])
    assert push(bank) == {}
    assert balance() == 110_000
    row = grant_row(answer.auth_id)
    assert (row.status, row.used_seq) == ("used", seq)
    # Settled from the grant: the station's offline hold was neither used nor counted (the refresh after the
    # sync holds the allowance again, within what the customer has).
    assert held("ST-0001") == 100_000 and available() == 10_000
    sound()
    # The same grant again, in a new entry: not authorized, and a recon item (the cash may be paid out).
    seq = record_entry(bank, "withdrawal", {"account": CUSTOMER, "amount": 40_000, "auth": answer.auth_id},
                       receipts.new_txn_id())
    assert push(bank) == {seq: "not_authorized"}
    server_db()
    assert ReconItem.get(ReconItem.seq == seq).reason == "not_authorized"
    assert balance() == 110_000
    sound()


def test_an_authorized_debit_is_no_offline_exposure(server, bank):
    """The station's unsynced exposure cap counts offline debits only: a debit under a grant settles beyond it."""
    from sync_server.db import ServerSetting
    from sync_server.policy import server_policy

    server_db()
    policy = server_policy()
    policy["station"] = {"max_unsynced_fen": 10_000}
    ServerSetting.insert(key="policy", value=policy).on_conflict(
        conflict_target=[ServerSetting.key], update={ServerSetting.value: policy}).execute()
    bank.config.setdefault("sync", {})["max_entries"] = 1  # one entry a batch: the later ones read it stored
    payload, answer = ask(server, bank, amount=40_000)
    grant_seq = record_entry(bank, "withdrawal", {"account": CUSTOMER, "amount": 40_000, "auth": answer.auth_id},
                             payload["txn"])
    offline_seq = record_entry(bank, "withdrawal", {"account": CUSTOMER, "amount": 10_000}, receipts.new_txn_id())
    too_much = record_entry(bank, "withdrawal", {"account": CUSTOMER, "amount": 10_000}, receipts.new_txn_id())
    assert push(bank) == {too_much: "over_exposure_limit"}
    server_db()
    assert {e.seq: e.outcome for e in Entry.select().where(Entry.seq.in_([grant_seq, offline_seq]))} == {
        grant_seq: "settled", offline_seq: "settled"}
    sound()


@pytest.mark.parametrize("change, expected", [
    ({"amount": 30_000}, "not_authorized"),  # another amount than granted
    ({"account": "AUTH0002"}, "not_authorized"),  # another customer
    ({"auth": "no-such-grant"}, "not_authorized"),
    ({"type": "transfer"}, "not_authorized"),  # another kind
    ({"txn": "new"}, "not_authorized"),  # another txn
])
def test_an_entry_that_does_not_match_its_grant_is_not_authorized(server, bank, change, expected):
    change = dict(change)  # shared by the backends' runs
    payload, answer = ask(server, bank, amount=40_000)
    body = {"account": CUSTOMER, "amount": 40_000, "auth": answer.auth_id}
    entry_type = change.pop("type", "withdrawal")
    if entry_type == "transfer":
        body.update(payee_account=PAYEE, payee_name="王", fee=200)
    txn = receipts.new_txn_id() if change.pop("txn", None) else payload["txn"]
    body.update(change)
    seq = record_entry(bank, entry_type, body, txn)
    assert push(bank) == {seq: expected}
    assert balance() == 150_000
    assert grant_row(answer.auth_id).status == "active"
    server_db()
    assert ReconItem.get(ReconItem.seq == seq).reason == expected
    sound()


def test_another_stations_grant_is_not_authorized_here(server, bank, tmp_path, clock):
    other = enrolled_station(server, tmp_path, "ST-0002", clock)
    payload, answer = ask(server, other, account=OTHER, amount=20_000)
    assert answer.granted
    seq = record_entry(bank, "withdrawal", {"account": OTHER, "amount": 20_000, "auth": answer.auth_id},
                       payload["txn"])
    assert push(bank) == {seq: "not_authorized"}
    assert balance(OTHER) == 80_000
    other.close()
    sound()


def test_an_entry_arriving_after_its_grant_expired_settles_only_if_it_still_fits(server, bank):
    past = datetime.now(UTC) - timedelta(minutes=6)
    cash_payload, cash = ask_at(server, bank, past, amount=30_000)  # from the available balance
    late_payload, late = ask_at(server, bank, past, "transfer", amount=90_000, fee=200)  # 70,200 from the hold
    assert cash.granted and late.granted and held("ST-0001") == 29_800
    # Both have expired: the available balance is 120,200, and a new grant takes 100,200 of it.
    _, live = ask(server, bank, "transfer", amount=100_000, fee=200)
    assert live.granted and available() == 20_000
    first = record_entry(bank, "withdrawal", {"account": CUSTOMER, "amount": 30_000, "auth": cash.auth_id},
                         cash_payload["txn"])
    second = record_entry(bank, "transfer", {"account": CUSTOMER, "amount": 90_000, "fee": 200,
                                             "payee_account": PAYEE, "payee_name": "王", "auth": late.auth_id},
                          late_payload["txn"])
    # The first fits what the bank would grant now (20,000 available and 10,000 of the station's hold); the
    # second no longer does.
    assert push(bank) == {second: "authorization_expired"}
    assert balance() == 120_000
    assert grant_row(cash.auth_id).status == "used" and grant_row(late.auth_id).status == "expired"
    server_db()
    assert Entry.get((Entry.station_id == "ST-0001") & (Entry.seq == first)).outcome == "settled"
    assert ReconItem.get(ReconItem.seq == second).reason == "authorization_expired"
    sound()
    # Reconciliation lists the transfer that no longer fitted as a debit beyond what the bank allowed.
    from sync_server.recon.context import Scope
    from sync_server.recon.run import find_discrepancies

    found = [d for d in find_discrepancies(server_db(), Scope()).discrepancies if d.kind == "allowance_exceeded"]
    assert [(d.seq, d.amount_fen, d.detail["reason"]) for d in found] == [(second, 90_200, "authorization_expired")]


def test_a_transfer_under_a_grant_executes_when_the_grant_said(server, bank):
    from sync_server.db import ServerSetting
    from sync_server.policy import server_policy

    server_db()
    policy = {**server_policy(), "transfer_delay_seconds": 600}
    ServerSetting.insert(key="policy", value=policy).on_conflict(
        conflict_target=[ServerSetting.key], update={ServerSetting.value: policy}).execute()
    payload, answer = ask(server, bank, "transfer", amount=60_000, fee=200)
    promised = datetime.fromisoformat(answer.execute_after)
    assert promised - datetime.fromisoformat(answer.server_time) == timedelta(seconds=600)
    record_entry(bank, "transfer", {"account": CUSTOMER, "amount": 60_000, "fee": 200, "payee_account": PAYEE,
                                    "payee_name": "王", "auth": answer.auth_id}, payload["txn"])
    assert push(bank) == {}
    server_db()
    transfer = Transfer.get(Transfer.txn == payload["txn"])
    assert transfer.execute_after == answer.execute_after
    assert execute_due_transfers(promised - timedelta(seconds=1)) == 0
    assert execute_due_transfers(promised) == 1
    sound()


def test_a_cancellation_grant_holds_the_transfer_back_until_its_entry_comes(server, bank):
    transfer_payload, granted = ask(server, bank, "transfer", amount=30_000, fee=200)
    record_entry(bank, "transfer", {"account": CUSTOMER, "amount": 30_000, "fee": 200, "payee_account": PAYEE,
                                    "payee_name": "王", "auth": granted.auth_id}, transfer_payload["txn"])
    assert push(bank) == {}
    assert balance() == 150_000 - 30_200
    cancel_payload, cancel = ask(server, bank, "transfer_cancel", amount=30_000, ref_txn=transfer_payload["txn"])
    assert cancel.granted and grant_row(cancel.auth_id).hold_fen == 0
    # Due now (no delay), yet held back while the cancellation grant is live.
    assert execute_due_transfers() == 0
    record_entry(bank, "transfer_cancel", {"account": CUSTOMER, "ref_txn": transfer_payload["txn"],
                                           "amount": 30_000, "auth": cancel.auth_id}, cancel_payload["txn"])
    assert push(bank) == {}
    server_db()
    assert Transfer.get(Transfer.txn == transfer_payload["txn"]).status == "cancelled"
    assert balance() == 150_000  # the transfer's amount and fee back
    assert grant_row(cancel.auth_id).status == "used"
    assert execute_due_transfers() == 0
    # Executed or cancelled already: not cancellable.
    _, again = ask(server, bank, "transfer_cancel", amount=30_000, ref_txn=transfer_payload["txn"])
    assert (again.granted, again.reason) == (False, "not_cancellable")
    sound()


def test_a_cancellation_grant_that_expires_lets_the_transfer_execute(server, bank):
    transfer_payload, granted = ask(server, bank, "transfer", amount=30_000, fee=200)
    record_entry(bank, "transfer", {"account": CUSTOMER, "amount": 30_000, "fee": 200, "payee_account": PAYEE,
                                    "payee_name": "王", "auth": granted.auth_id}, transfer_payload["txn"])
    push(bank)
    now = datetime.now(UTC)
    ask_at(server, bank, now, "transfer_cancel", amount=30_000, ref_txn=transfer_payload["txn"])
    assert execute_due_transfers(now + timedelta(seconds=1)) == 0
    assert execute_due_transfers(now + timedelta(seconds=301)) == 1
    _, late = ask(server, bank, "transfer_cancel", amount=30_000, ref_txn=transfer_payload["txn"])
    assert late.reason == "not_cancellable"
    sound()


def test_a_cancellation_of_a_transfer_the_bank_has_not_received_is_granted(server, bank):
    _, answer = ask(server, bank, "transfer_cancel", amount=30_000)
    assert answer.granted
    # ...but not of another customer's transfer, nor of an operation that is no transfer.
    payload, withdrawal = ask(server, bank, amount=10_000)
    record_entry(bank, "withdrawal", {"account": CUSTOMER, "amount": 10_000, "auth": withdrawal.auth_id},
                 payload["txn"])
    push(bank)
    _, refused = ask(server, bank, "transfer_cancel", amount=10_000, ref_txn=payload["txn"])
    assert refused.reason == "not_cancellable"


def test_the_endpoint_is_in_the_openapi_document():
    from sync_server.openapi import openapi_document

    operation = openapi_document()["paths"][PATH]["post"]
    assert protocol.CONTENT_TYPE in operation["requestBody"]["content"]
    assert protocol.CONTENT_TYPE in operation["responses"]["200"]["content"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert {protocol.HEADER_STATION, protocol.HEADER_NONCE} <= names
    documented = " ".join(response["description"] for response in operation["responses"].values())
    for slug in ("malformed-request", "too-large", "undecryptable", "malformed-authorization", "bad-signature",
                 "clock-skew", "replayed", "authorization-conflict", "unknown-station", "station-not-enrolled",
                 "station-revoked", "station-flagged"):
        assert slug in documented, slug


def test_the_commands_list_and_expire_authorizations(server, bank):
    import json

    from click.testing import CliRunner

    from sync_server.cli import cli

    _, refused = ask(server, bank, "transfer", amount=150_000, fee=200)
    _, granted = ask(server, bank, amount=20_000)
    url = ["--database-url", server.database_url]
    result = CliRunner().invoke(cli, ["authorizations", "list", "--json", *url])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert sorted((row["kind"], row["status"], row["reason"]) for row in rows) == [
        ("transfer", "refused", "insufficient_funds"), ("withdrawal", "active", None)]
    result = CliRunner().invoke(cli, ["authorizations", "list", "--status", "refused", "--station", "ST-0001", *url])
    assert result.exit_code == 0 and "insufficient_funds" in result.output and granted.auth_id not in result.output
    result = CliRunner().invoke(cli, ["authorizations", "expire", *url])
    assert result.exit_code == 0 and "Marked 0 authorizations expired." in result.output
    server_db()
    Authorization.update(expires_at=utc_text(datetime.now(UTC) - timedelta(seconds=1))).where(
        Authorization.auth_id == granted.auth_id).execute()
    result = CliRunner().invoke(cli, ["authorizations", "expire", *url])
    assert "Marked 1 authorizations expired." in result.output
    assert grant_row(granted.auth_id).status == "expired"


def test_a_balance_enquiry_and_a_cancellation_naming_a_grant_consume_it_only_when_they_match(server, bank):
    payload, answer = ask(server, bank, "balance_enquiry", amount=0)
    enquiry = {"account": CUSTOMER, "amount": 0, "balance": answer.balance, "offline_available": 100_000,
               "as_of": answer.server_time, "auth": answer.auth_id}
    other = record_entry(bank, "balance_enquiry", {**enquiry, "account": OTHER}, payload["txn"])
    again = record_entry(bank, "balance_enquiry", enquiry, receipts.new_txn_id())  # another txn than granted
    assert push(bank) == {other: "not_authorized", again: "not_authorized"}
    assert grant_row(answer.auth_id).status == "active"
    payload, answer = ask(server, bank, "balance_enquiry", amount=0)
    seq = record_entry(bank, "balance_enquiry", {**enquiry, "auth": answer.auth_id}, payload["txn"])
    assert push(bank) == {}
    assert (grant_row(answer.auth_id).status, grant_row(answer.auth_id).used_seq) == ("used", seq)
    # A cancellation naming a grant for another transfer is not authorized, and cancels nothing.
    transfer, granted = ask(server, bank, "transfer", amount=30_000, fee=200)
    record_entry(bank, "transfer", {"account": CUSTOMER, "amount": 30_000, "fee": 200, "payee_account": PAYEE,
                                    "payee_name": "王", "auth": granted.auth_id}, transfer["txn"])
    cancel, cancel_grant = ask(server, bank, "transfer_cancel", amount=30_000)  # another ref_txn
    seq = record_entry(bank, "transfer_cancel", {"account": CUSTOMER, "ref_txn": transfer["txn"], "amount": 30_000,
                                                 "auth": cancel_grant.auth_id}, cancel["txn"])
    assert push(bank) == {seq: "not_authorized"}
    server_db()
    assert Transfer.get(Transfer.txn == transfer["txn"]).status == "pending"
    sound()
