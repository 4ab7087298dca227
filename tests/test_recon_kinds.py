"""One test per kind of discrepancy: a clean history of three stations (``recon_support.history``) reconciles with
no discrepancy at all; each test injects exactly one anomaly, the way it would happen (an insider's SQL, a bank
booking, a cloned device, a station that does not sync, a clock moved, an entry signed by the station's own key),
and recon reports exactly one discrepancy of that kind at that place, and nothing else.

The biller kinds and ``missing_tail`` have their own tests (tests/test_recon_billers.py, tests/test_sync_tail.py).
On SQLite and, with ``TEST_DATABASE_URL``, PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from recon_support import STATIONS, account_of, history_fixture  # noqa: F401
from sync_support import append_forged_entry

from station import receipts
from station.clock import accept_clock
from station.journal import export_journal
from station.link import note_failure
from station.protocol.times import utc_text
from station.protocol.tokens import Signer, b64url, canonical_json, generate_signing_key
from station.sync import SyncRefused, sync_once
from sync_server.admin import add_station, revoke_station
from sync_server.checks import check_ledger
from sync_server.db import Entry, HomeStation, Posting, ReconItem
from sync_server.db import Station as BankStation
from sync_server.journal_import import import_journal
from sync_server.recon import integrity, ledger, risk
from sync_server.recon.i18n import render
from sync_server.recon.kinds import KINDS
from sync_server.recon.report import values

#: Kinds tested elsewhere: the billers' files (tests/test_recon_billers.py) and the signed tails
#: (tests/test_sync_tail.py).
ELSEWHERE = {"biller_missing_in_file", "biller_unexpected_in_file", "biller_amount_mismatch", "biller_duplicate",
             "missing_tail"}


def where(found) -> list[tuple]:
    """Each discrepancy as (kind, station, seq, txn, account)."""
    return [(d.kind, d.station, d.seq, d.txn, d.account) for d in found]


def only(found, kind: str):
    """The one discrepancy found, which must be of ``kind``."""
    assert [d.kind for d in found] == [kind], [(d.kind, d.station, d.seq, d.account, d.detail) for d in found]
    return found[0]


def seq_of(history, station_id: str, label: str) -> int:
    """The seq of the story's receipt ``label`` (e.g. ``"enquiry-0"``) at the station."""
    return history.seq_of(station_id, history.receipts[station_id][label].txn)


def test_every_kind_has_a_test_here_or_elsewhere():
    tested = {name.removeprefix("test_").split("__")[0] for name in globals() if name.startswith("test_")}
    assert set(KINDS) - ELSEWHERE <= tested
    here = Path(__file__).parent
    elsewhere = (here / "test_recon_billers.py").read_text(encoding="utf-8") + (
        here / "test_sync_tail.py").read_text(encoding="utf-8")
    assert all(f'"{kind}"' in elsewhere for kind in ELSEWHERE)


# -- the clean history ----------------------------------------------------------------------------------------
def test_clean(history):
    """Every kind of operation, at three stations over two days, synced: nothing to report."""
    findings = history.findings()
    assert where(findings.discrepancies) == []
    history.db()
    assert check_ledger() == []
    assert not Entry.select().where(Entry.outcome == "rejected").exists()
    assert not ReconItem.select().exists()
    heads = {station_id: history.head(station_id) for station_id in STATIONS}
    assert findings.entries == sum(heads.values())
    assert [(p["station"], p["entries"], p["acked_seq"], p["head_verified"]) for p in findings.stations] == [
        (station_id, heads[station_id], heads[station_id], True) for station_id in STATIONS]
    # Every type of the story is there, reversals and cancellations settled, day closes within the tolerance.
    types = {entry.type for entry in Entry.select()}
    assert {"withdrawal", "deposit", "transfer", "transfer_cancel", "bill_payment", "reversal", "balance_enquiry",
            "day_open", "day_close"} <= types
    variances = sorted(history.payload(e.station_id, e.seq)["variance"]
                       for e in Entry.select().where(Entry.type == "day_close"))
    assert variances == [-800, -500, -500, 0, 0, 300]
    assert history.find(date_from="2026-11-03", date_to="2026-11-03", stations=("ST-0002",)) == []
    assert history.find(verify_all=True) == []


# -- completeness ---------------------------------------------------------------------------------------------
def test_seq_gap__an_entry_deleted_from_the_middle(history):
    """An insider deletes a balance enquiry (it posted nothing): the seqs skip one."""
    seq = seq_of(history, "ST-0002", "enquiry-0")
    with history.insider():
        Entry.delete().where((Entry.station_id == "ST-0002") & (Entry.seq == seq)).execute()
    gap = only(history.find(), "seq_gap")
    assert (gap.station, gap.seq, gap.day) == ("ST-0002", seq, "2026-11-03")
    assert (gap.detail["first"], gap.detail["last"], gap.detail["missing"]) == (seq, seq, 1)
    # Its chain from genesis is not proved any more, though its head's signature still verifies.
    assert [p["head_verified"] for p in history.findings().stations] == [True, False, True]


def test_seq_gap__the_first_entries_deleted(history):
    """An insider deletes the station's first entries (start and the agents added: no postings): the chain has
    no genesis any more, so nothing of it is proved, though every remaining link holds."""
    with history.insider():
        Entry.delete().where((Entry.station_id == "ST-0003") & (Entry.seq <= 3)).execute()
    gap = only(history.find(), "seq_gap")
    assert (gap.station, gap.seq, gap.detail["first"], gap.detail["last"]) == ("ST-0003", 1, 1, 3)
    assert [p["head_verified"] for p in history.findings().stations] == [True, True, False]


def test_seq_gap__acknowledged_entries_the_bank_no_longer_holds(history):
    """The last entry (a day close) is deleted with its postings and the balances put back as before it: the bank
    acknowledged a seq it does not hold. Implied: the station's signed tail claim names that entry too, so it is
    also ``missing_tail`` (the same seq, from the station's signature rather than the bank's own record)."""
    head = history.head("ST-0001")
    assert history.payload("ST-0001", head)["type"] == "day_close"
    history.unpost("ST-0001", head)
    with history.insider():
        Entry.delete().where((Entry.station_id == "ST-0001") & (Entry.seq == head)).execute()
    found = history.find()
    assert sorted(where(found)) == [("missing_tail", "ST-0001", head, None, None),
                                    ("seq_gap", "ST-0001", head, None, None)]
    gap = next(d for d in found if d.kind == "seq_gap")
    assert (gap.detail["first"], gap.detail["last"], gap.detail["missing"]) == (head, head, 1)


def test_station_silent(history):
    """ST-0003 stops syncing; the others go on. Silent past ``recon.station_silent_hours`` (48), not at it."""
    last_sync = history.now
    history.clock.advance(hours=48)
    history.sync("ST-0001", "ST-0002")
    assert history.find() == []
    history.clock.advance(minutes=1)
    history.sync("ST-0001", "ST-0002")
    silent = only(history.find(), "station_silent")
    assert (silent.station, silent.seq, silent.day) == ("ST-0003", None, None)
    assert silent.detail["hours"] == 48 and silent.detail["limit"] == 48
    assert silent.detail["since"] == utc_text(last_sync)
    history.policy(recon={"station_silent_hours": 72})
    assert history.find() == []
    # A station registered but not enrolled yet has nothing to sync: never silent.
    history.db()
    add_station("ST-0004", "Not yet installed")
    assert history.find(now=history.now + timedelta(days=30), stations=("ST-0004",)) == []


def test_station_revoked(history, tmp_path):
    """ST-0003 records a day, sends only its first entries, and is stolen: revoked, it is listed with the entries
    its signed journal end names beyond what arrived (not also as ``missing_tail``: it cannot sync any more).
    Its journal imported from the recovered device, it stays listed, with nothing missing."""
    st = history.station("ST-0003")
    with history.day("ST-0003", sync=False) as counter:
        counter.deposit(account_of("ST-0003", 4), 10_000)
        counter.deposit(account_of("ST-0003", 5), 20_000)
    st.config.setdefault("sync", {})["max_entries"] = 2
    held = sync_once(st, max_batches=1).acked_seq
    st.config["sync"].pop("max_entries")
    head = history.head("ST-0003")
    assert held < head
    history.db()
    revoke_station("ST-0003", reason="device stolen", by="Wang Fang")
    revoked_at = history.bank_station("ST-0003").revoked_at
    revoked = only(history.find(), "station_revoked")
    assert (revoked.station, revoked.seq, revoked.day) == ("ST-0003", None, None)
    assert revoked.detail == {"revoked_at": revoked_at, "held": held, "claimed": head, "missing": head - held}
    explained = render("en", KINDS["station_revoked"].explanation, values(revoked, "en"))
    assert explained == (f"Station ST-0003 was revoked at {revoked_at}: the bank holds its journal up to seq "
                         f"{held}, and {head - held} more entries the station signed for (up to seq {head}) never "
                         f"arrived.")
    with st.bound():
        export_journal(st, tmp_path / "export")
    import_journal(tmp_path / "export", "ST-0003", by="Wang Fang")
    revoked = only(history.find(), "station_revoked")
    assert revoked.detail == {"revoked_at": revoked_at, "held": head, "claimed": head, "missing": 0}
    assert history.find(stations=("ST-0001", "ST-0002")) == []


# -- integrity ------------------------------------------------------------------------------------------------
def test_fork__a_cloned_device_sends_another_history(history, tmp_path):
    """ST-0001's SD card is copied into a second device; both serve customers; the copy's batch contradicts what
    the bank holds, is refused, and the station is flagged."""
    clone = history.clone_device("ST-0001", tmp_path / "clone")
    fork_seq = history.head("ST-0001") + 1
    with history.day("ST-0001") as counter:
        counter.deposit(account_of("ST-0001", 12), 10_000)
    history.clock.advance(minutes=5)
    with history.day(clone, sync=False) as counter:
        counter.withdraw(account_of("ST-0001", 13), 10_000)
    with pytest.raises(SyncRefused) as refused:
        sync_once(clone)
    assert refused.value.problem.get("type", "").endswith("fork")
    station = history.bank_station("ST-0001")
    assert station.flagged and station.flag_reason.startswith(f"fork at seq {fork_seq}:")
    fork = only(history.find(), "fork")
    assert (fork.station, fork.seq) == ("ST-0001", fork_seq)


def _altered(token: str, change) -> str:
    """``token`` with its payload changed and its signature kept (it no longer verifies)."""
    from station.protocol.tokens import unverified_payload

    header, _, signature = token.split(".")
    payload = unverified_payload(token)
    change(payload)
    return f"{header}.{b64url(canonical_json(payload))}.{signature}"


@pytest.mark.parametrize("position", ["middle", "head"])
def test_bad_signature__a_stored_entry_altered(history, position):
    """An insider changes a stored entry's payload without the station's key: the balance shown on a balance
    enquiry (in the middle of the chain), or the operations count of the last day close (the head)."""
    if position == "middle":
        seq = seq_of(history, "ST-0001", "enquiry-1")
        field = "balance"
    else:
        seq = history.head("ST-0001")
        field = "operations"
    token = history.entry("ST-0001", seq).token

    def change(payload):
        payload[field] += 100

    history.replace_tokens("ST-0001", {seq: _altered(token, change)}, head=False)
    bad = only(history.find(), "bad_signature")
    assert (bad.station, bad.seq) == ("ST-0001", seq)
    assert [p["head_verified"] for p in history.findings().stations] == [False, True, True]


def test_bad_signature__under_a_rebuilt_chain_only_verify_all_finds_it(history):
    """An insider alters a withdrawal's stored payload without its signature, and (with the station's key) signs
    every later entry again onto it: the chain links and the head verifies, so only ``--verify-all``, which checks
    every signature, finds the altered entry."""
    seq = seq_of(history, "ST-0002", "withdrawal-0")

    def change(payload):
        original = history.entry("ST-0002", seq).token

        def keep_signature(altered):
            return _altered(original, lambda p: p.update(altered))

        payload["agent"] = "A99"
        return payload, keep_signature

    history.rechain("ST-0002", seq, change)
    assert history.payload("ST-0002", seq)["agent"] == "A99"
    assert history.find() == []
    bad = only(history.find(verify_all=True), "bad_signature")
    assert (bad.station, bad.seq) == ("ST-0002", seq)
    code, document = history.recon_json("--verify-all", "--lang", "en")
    assert code == 1 and [(d["kind"], d["station"], d["seq"]) for d in document["discrepancies"]] == [
        ("bad_signature", "ST-0002", seq)]
    assert document["period"]["verify_all"] is True


@pytest.mark.parametrize("cause", ["prev", "head"])
def test_broken_chain(history, cause):
    """``prev``: an insider with the station's key rewrites ST-0002's history from a balance enquiry whose ``prev``
    is wrong, every later entry signed again onto it: each entry is validly signed, one link is broken.
    ``head``: the bank's recorded chain head of ST-0002 is changed."""
    if cause == "prev":
        seq = seq_of(history, "ST-0002", "enquiry-0")
        signer = history.station("ST-0002").signer

        def change(payload):
            payload["prev"] = b64url(b"\x00" * 32)
            return payload, signer.sign

        history.rechain("ST-0002", seq, change)
    else:
        seq = history.head("ST-0002")
        with history.insider():
            BankStation.update(head=b64url(b"\x01" * 32)).where(BankStation.station_id == "ST-0002").execute()
    broken = only(history.find(), "broken_chain")
    assert (broken.station, broken.seq, broken.detail["cause"]) == ("ST-0002", seq, cause)
    assert broken.detail["reason"] == integrity.BREAK_REASONS[cause]


def test_unknown_key__an_entry_signed_by_another_device(history):
    """A stored entry of ST-0003 replaced by the same payload signed by a key the bank never enrolled."""
    seq = seq_of(history, "ST-0003", "enquiry-0")
    foreign = Signer(generate_signing_key())
    history.replace_tokens("ST-0003", {seq: foreign.sign(history.payload("ST-0003", seq))}, head=False)
    unknown = only(history.find(), "unknown_key")
    assert (unknown.station, unknown.seq, unknown.detail["kid"]) == ("ST-0003", seq, foreign.kid)


# -- ledger ---------------------------------------------------------------------------------------------------
def test_entry_without_postings(history):
    """An insider deletes the postings of a bill paid from an account, and puts the balances back to match."""
    seq = seq_of(history, "ST-0001", "bill_account-0")
    receipt = history.receipts["ST-0001"]["bill_account-0"]
    history.unpost("ST-0001", seq)
    missing = only(history.find(), "entry_without_postings")
    assert where([missing]) == [("entry_without_postings", "ST-0001", seq, receipt.txn, account_of("ST-0001", 2))]
    assert (missing.amount_fen, missing.detail["type"]) == (3_280, "bill_payment")


@pytest.mark.parametrize("at", ["no entry", "an enquiry", "a rejected deposit"])
def test_postings_without_entry(history, at):
    """An insider posts 10 yuan from a customer to ST-0002's fees (balances moved to match) under a seq the
    station never signed, under a balance enquiry's seq (which moves no money), or under a deposit the bank
    rejected (its per-transaction limit lowered while the station was offline)."""
    if at == "no entry":
        seq = history.head("ST-0002") + 5
    elif at == "an enquiry":
        seq = seq_of(history, "ST-0002", "enquiry-1")
    else:
        history.policy(station={"limits": {"deposit": {"per_txn": 10_000}}})
        history.next_morning()
        with history.day("ST-0002") as counter:
            seq = counter.deposit(account_of("ST-0002", 11), 50_000).seq
        assert history.entry("ST-0002", seq).reason == "over_transaction_limit"
        assert history.find() == []  # a rejected deposit is nothing to recover, and the count absorbed the cash
    customer = account_of("ST-0002", 9)
    with history.insider():
        Posting.insert_many([dict(station_id="ST-0002", seq=seq, leg=0, account_id=customer, amount_fen=1_000,
                                  memo="fee"),
                             dict(station_id="ST-0002", seq=seq, leg=1, account_id="fees:ST-0002", amount_fen=-1_000,
                                  memo="fee")]).execute()
        history.move_balance(customer, 1_000)
        history.move_balance("fees:ST-0002", -1_000)
    orphan = only(history.find(), "postings_without_entry")
    assert (orphan.station, orphan.seq, orphan.amount_fen) == ("ST-0002", seq, 1_000)
    assert orphan.detail["reason"] == {"no entry": ledger.NO_ENTRY, "an enquiry": ledger.MOVES_NOTHING,
                                       "a rejected deposit": ledger.REJECTED}[at]


def test_unbalanced_postings(history):
    """An insider deletes the commission leg of a deposit (and moves that account's balance back)."""
    seq = seq_of(history, "ST-0003", "deposit-0")
    removed = history.unpost("ST-0003", seq, accounts=("commission:ST-0003",))
    assert [amount for _, _, amount in removed] == [50]
    unbalanced = only(history.find(), "unbalanced_postings")
    assert (unbalanced.station, unbalanced.seq, unbalanced.amount_fen, unbalanced.expected_fen) == (
        "ST-0003", seq, -50, 0)


@pytest.mark.parametrize("entry", ["withdrawal", "reversal"])
def test_amount_mismatch(history, entry):
    """An insider takes 1 yuan more from a customer (a withdrawal's debit) or gives 1 yuan more back (a
    reversal's credit, which must be the exact inverse of its original's legs), against the agent's commission
    account: the postings still sum to zero and the balances agree with them, but the customer's leg is not what
    the signed entry says."""
    customer = account_of("ST-0001", 2 if entry == "withdrawal" else 5)
    label = "withdrawal-0" if entry == "withdrawal" else "reversal-0"
    seq = seq_of(history, "ST-0001", label)
    legs = {account: amount for _, account, amount in history.postings("ST-0001", seq)}
    signed = legs[customer]
    assert (signed, legs["agent:ST-0001"]) == ((20_200, -100) if entry == "withdrawal" else (-10_200, 100))
    delta = 100 if entry == "withdrawal" else -100
    with history.insider():
        for account, change in ((customer, delta), ("agent:ST-0001", -delta)):
            Posting.update(amount_fen=Posting.amount_fen + change).where(
                (Posting.station_id == "ST-0001") & (Posting.seq == seq) & (Posting.account_id == account)).execute()
            history.move_balance(account, change)
    mismatch = only(history.find(), "amount_mismatch")
    assert where([mismatch]) == [("amount_mismatch", "ST-0001", seq, history.receipts["ST-0001"][label].txn,
                                  customer)]
    assert (mismatch.amount_fen, mismatch.expected_fen, mismatch.detail["type"]) == (signed + delta, signed, entry)


def test_amount_mismatch_on_a_leg_the_token_does_not_explain(history):
    """An insider adds a balanced pair of legs to a withdrawal: 10 yuan to another customer, taken from the
    station's fee income. The fee leg is then wrong and the other customer's leg has no place in the entry."""
    seq = seq_of(history, "ST-0001", "withdrawal-0")
    other = account_of("ST-0002", 3)
    legs = history.postings("ST-0001", seq)
    with history.insider():
        Posting.insert_many([
            dict(station_id="ST-0001", seq=seq, leg=len(legs), account_id=other, amount_fen=-1_000, memo="x"),
            dict(station_id="ST-0001", seq=seq, leg=len(legs) + 1, account_id="fees:ST-0001", amount_fen=1_000,
                 memo="x")]).execute()
        history.move_balance(other, -1_000)
        history.move_balance("fees:ST-0001", 1_000)
    mismatch = only(history.find(), "amount_mismatch")
    assert (mismatch.station, mismatch.seq) == ("ST-0001", seq)
    assert mismatch.account in (other, "fees:ST-0001")


def test_amount_mismatch_on_a_commission_beyond_the_policy(history):
    """An insider pays the agent 10 yuan more commission on a withdrawal than the policy's 1 yuan: the pair
    balances, but no withdrawal earns more than the policy's commission."""
    seq = seq_of(history, "ST-0001", "withdrawal-0")
    with history.insider():
        for account, change in (("commission:ST-0001", 1_000), ("agent:ST-0001", -1_000)):
            Posting.update(amount_fen=Posting.amount_fen + change).where(
                (Posting.station_id == "ST-0001") & (Posting.seq == seq) & (Posting.account_id == account)).execute()
            history.move_balance(account, change)
    mismatch = only(history.find(), "amount_mismatch")
    assert (mismatch.station, mismatch.seq, mismatch.account) == ("ST-0001", seq, "commission:ST-0001")
    assert (mismatch.amount_fen, mismatch.expected_fen) == (1_100, 100)


@pytest.mark.parametrize("account, station", [
    (account_of("ST-0002", 4), None),  # a customer's: no station's
    ("fees:ST-0002", "ST-0002"),  # a station's own account
    ("equity:opening", None),  # the bank's own account
])
def test_balance_mismatch(history, account, station):
    """An insider changes an account's stored balance by 100 yuan without any posting."""
    before = history.balance(account)
    with history.insider():
        history.move_balance(account, -10_000)
    mismatch = only(history.find(), "balance_mismatch")
    assert (mismatch.station, mismatch.seq, mismatch.account) == (station, None, account)
    assert mismatch.amount_fen - mismatch.expected_fen == history.balance(account) - before
    assert mismatch.expected_fen == before


# -- cash -----------------------------------------------------------------------------------------------------
def test_cash_variance(history):
    """A third day: ST-0001 counts exactly the tolerance short (10 yuan: no discrepancy), ST-0002 one jiao more
    short than the tolerance."""
    history.next_morning()
    with history.day("ST-0001", variance=-1_000) as counter:
        counter.deposit(account_of("ST-0001", 12), 10_000)
    with history.day("ST-0002", variance=-1_010) as counter:
        counter.withdraw(account_of("ST-0002", 12), 10_000)
    close = history.payload("ST-0002", history.head("ST-0002"))
    variance = only(history.find(), "cash_variance")
    assert (variance.station, variance.seq, variance.day) == ("ST-0002", history.head("ST-0002"), "2026-11-05")
    assert (variance.amount_fen, variance.expected_fen) == (-1_010, close["expected"])
    assert variance.detail["tolerance_fen"] == 1_000


def test_cash_variance__the_tolerance_is_the_banks_policy(history):
    """With a tolerance of 4 yuan, the clean history's closes 5 and 8 yuan short are discrepancies."""
    history.policy(recon={"cash_variance_tolerance_fen": 400})
    found = history.find()
    assert {d.kind for d in found} == {"cash_variance"}
    assert sorted((d.station, d.day, d.amount_fen) for d in found) == [
        ("ST-0001", "2026-11-04", -500), ("ST-0002", "2026-11-03", -500), ("ST-0003", "2026-11-04", -800)]


def test_float_mismatch(history):
    """A bank booking puts 50 yuan into ST-0003's cash account (against its float funding) after its last count:
    the ledger is balanced and every balance agrees with its postings, but the drawer by the journal does not."""
    counted = history.payload("ST-0003", history.head("ST-0003"))["amount"]
    history.bank_booking([("cash:ST-0003", 5_000, "cash delivered"), ("float:ST-0003", -5_000, "cash delivered")])
    history.db()
    assert check_ledger() == []
    mismatch = only(history.find(), "float_mismatch")
    assert (mismatch.station, mismatch.account) == ("ST-0003", "cash:ST-0003")
    assert (mismatch.amount_fen, mismatch.expected_fen) == (counted + 5_000, counted)


# -- risk -----------------------------------------------------------------------------------------------------
def test_rejected_offline_debit(history):
    """The bank moves a customer's home from ST-0001 while the station is offline; the station pays the customer
    out twice, the second time the supervisor reverses it at once (the customer gave the cash back). The bank
    rejects both withdrawals; only the first is cash to recover."""
    customer = account_of("ST-0001", 11)
    history.db()
    HomeStation.delete().where((HomeStation.station_id == "ST-0001") & (HomeStation.account_id == customer)).execute()
    history.next_morning()
    with history.day("ST-0001") as counter:
        paid = counter.withdraw(customer, 50_000)
        undone = counter.withdraw(customer, 20_000)
        counter.reverse(undone.txn)
    assert history.entry("ST-0001", paid.seq).reason == "not_authorized"
    assert history.entry("ST-0001", undone.seq).reason == "not_authorized"
    debit = only(history.find(), "rejected_offline_debit")
    assert where([debit]) == [("rejected_offline_debit", "ST-0001", paid.seq, paid.txn, customer)]
    assert (debit.amount_fen, debit.detail["reason"], debit.day) == (50_000, "not_authorized", "2026-11-05")


@pytest.mark.parametrize("operation", ["transfer", "bill from the account"])
def test_allowance_exceeded(history, operation):
    """``transfer``: the bank lowers the stations' unsynced exposure to 100 yuan while ST-0002 is offline; its
    300-yuan transfer is over it. ``bill from the account``: the customer's home moved away from ST-0002 while
    it was offline; the bill paid from the account is not authorized."""
    customer = account_of("ST-0002", 12)
    if operation == "transfer":
        history.policy(station={"max_unsynced_fen": 10_000})
        reason, amount, customer = "over_exposure_limit", 30_000 + 200, account_of("ST-0002", 9)
    else:
        history.db()
        HomeStation.delete().where((HomeStation.station_id == "ST-0002")
                                   & (HomeStation.account_id == customer)).execute()
        reason, amount = "not_authorized", 4_500 + 100
    history.next_morning()
    with history.day("ST-0002") as counter:
        if operation == "transfer":
            done = counter.transfer(customer, 30_000)
        else:
            done = counter.bill_from_account(customer, "GAS-COUNTY", "55512345678", 4_500)
    assert history.entry("ST-0002", done.seq).reason == reason
    exceeded = only(history.find(), "allowance_exceeded")
    assert where([exceeded]) == [("allowance_exceeded", "ST-0002", done.seq, done.txn, customer)]
    assert (exceeded.amount_fen, exceeded.detail["reason"]) == (amount, reason)


def test_clock_offset(history):
    """At their next sync ST-0001's clock is 4 minutes ahead of the bank's (within ``recon.clock_offset_max_ms``,
    5 minutes) and ST-0002's 6 minutes behind."""
    history.clock.advance(hours=1)
    for station_id, minutes in (("ST-0001", 4), ("ST-0002", -6)):
        st = history.station(station_id)
        st.clock = lambda minutes=minutes: history.clock.now + timedelta(minutes=minutes)
        sync_once(st)
        st.clock = history.clock
    assert (history.bank_station("ST-0001").clock_offset_ms, history.bank_station("ST-0002").clock_offset_ms) == (
        -240_000, 360_000)
    offset = only(history.find(), "clock_offset")
    assert (offset.station, offset.seq) == ("ST-0002", None)
    assert (offset.detail["minutes"], offset.detail["limit"], offset.detail["direction"]) == (6.0, 5.0, "behind")
    history.sync("ST-0002")  # the clock set right: the next sync measures no offset
    assert history.find() == []


def test_clock_corrected(history):
    """ST-0002's clock runs two days ahead while the station probes the bank (fake-hwclock restored a later boot's
    time), then is set right, and its technician accepts it (``station clock accept``). The bank acknowledges the
    correction; recon lists it, with how far ahead the clock had been and the technician's words, once, and nothing
    else. A correction ST-0003 signs with a ``behind_ms`` that does not add up is rejected and listed nowhere."""
    history.clock.advance(hours=1)
    st = history.station("ST-0002")
    real_time = history.clock.now
    st.clock = lambda: real_time + timedelta(days=2)
    note_failure(st, "probe", "unreachable")
    st.clock = history.clock
    correction = accept_clock(st, "fake-hwclock restored a later time {station}")
    history.sync("ST-0002")
    assert history.entry("ST-0002", correction.seq).outcome == "acknowledged"
    found = only(history.find(), "clock_corrected")
    day = real_time.astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
    assert (found.station, found.seq, found.day) == ("ST-0002", correction.seq, day)
    assert found.detail == {"behind_ms": 2 * 86_400_000, "minutes": 2880.0,
                            "note": "fake-hwclock restored a later time {station}"}
    # The technician's words are shown as typed, never read as a message template.
    assert render("en", KINDS["clock_corrected"].explanation, values(found, "en")) == (
        f"The technician of station ST-0002 accepted its clock as right at seq {correction.seq} ({day}): it had "
        "run 2880.0 minutes ahead of what it reads now. Reason given: fake-hwclock restored a later time {station}.")
    assert "比现在快 2880.0 分钟" in render("zh", KINDS["clock_corrected"].explanation, values(found, "zh"))

    forger = history.station("ST-0003")
    with forger.write():
        forged = append_forged_entry(forger, "clock_corrected", forger.now(), {
            "floor": utc_text(forger.now() + timedelta(hours=1)), "behind_ms": 3_000_000, "by": "technician"})
    assert history.sync("ST-0003") == {forged.seq: "malformed_entry"}
    assert [d.kind for d in history.find()] == ["clock_corrected"]


@pytest.mark.parametrize("field, reason", [("amount", risk.OTHER_AMOUNT), ("ref_seq", risk.OTHER_SEQ),
                                           ("account", risk.OTHER_ACCOUNT)])
def test_reversal_mismatch(history, field, reason):
    """ST-0003 (its own key) signs a supervisor's reversal of a bill paid from an account that names the right
    txn but another amount, seq or account than the original's. The bank settles a reversal by its txn (the
    inverse of the original's postings, so the ledger is right): recon finds that the reversal does not match."""
    original = history.receipts["ST-0003"]["bill_account-1"]
    seq = seq_of(history, "ST-0003", "bill_account-1")
    body = {"agent": "S01", "ref_txn": original.txn, "ref_seq": seq, "amount": 3_280,
            "account": account_of("ST-0003", 7), "reason": "keyed twice"}
    body[field] = {"amount": 3_820, "ref_seq": seq - 1, "account": account_of("ST-0003", 8)}[field]
    st = history.station("ST-0003")
    history.clock.advance(minutes=10)
    with st.write():
        forged = append_forged_entry(st, "reversal", st.now(), body, txn=receipts.new_txn_id())
    assert sync_once(st).rejected == {}
    mismatch = only(history.find(), "reversal_mismatch")
    assert (mismatch.station, mismatch.seq, mismatch.txn) == ("ST-0003", forged.seq, forged.txn)
    assert mismatch.detail["reason"] == reason
    assert mismatch.detail["ref_txn"] == original.txn


@pytest.mark.parametrize("body", [
    {"agent": "A01", "account": "DM\x00", "amount": 10**30},  # NUL in text, an integer beyond any column
    {"agent": "A01", "account": "DM00030002", "amount": -(2**63), "fee": 2**63},
    {"agent": "A01", "account": ["not", "text"], "amount": {"nested": [[[[1]]]]}, "biller": True},
    {"agent": "A01", "account": "王" * 300, "amount": 1, "ref": "\u202e\u0007"},
], ids=["nul-and-huge", "int64-edges", "wrong-json-types", "long-and-control-text"])
def test_signed_but_malformed_entries_never_break_a_run(history, body):
    """A tampered station signs withdrawals the bank rejects as malformed (it stores them): recon reads their
    tokens like any other, writes nothing it cannot store, and reports the cash the station says it paid out only
    when the amount is one (a rejected withdrawal of a sane amount is money to recover)."""
    st = history.station("ST-0002")
    history.clock.advance(minutes=10)
    with st.write():
        forged = append_forged_entry(st, "withdrawal", st.now(), body, txn=receipts.new_txn_id())
    assert sync_once(st).rejected.get(forged.seq) in ("malformed_entry", "invalid_amount")
    found = history.find()
    assert {d.kind for d in found} <= {"rejected_offline_debit"}, [(d.kind, d.detail) for d in found]
    result = history.recon("run", "--format", "json")
    assert result.exit_code in (0, 1), result.output
    day = forged_day(forged)
    result = history.recon("report", "settlement", "--date", day, "--format", "json")
    assert result.exit_code == 0, result.output  # a rejected entry moves nothing in the ledger: the day ties


def forged_day(entry) -> str:
    """The business day (Beijing) of a station entry."""
    return entry.recorded_at.astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
