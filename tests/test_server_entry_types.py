"""Signed entries the registry does not know, or whose fields have the wrong JSON type, are rejected with a reason
in the signed ack: no postings, no 500, no retry loop, and the station shows the operation as rejected."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sync_support import append_forged_entry, enrolled_station, server_db

from station import receipts
from station.db import JournalEntry, Operation
from station.journal import journal_head
from station.protocol.times import utc_text
from station.protocol.tokens import chain_hash, unverified_payload
from station.sync import sync_once
from sync_server.admin import list_entries
from sync_server.book import ledger_totals
from sync_server.cli import cli
from sync_server.db import Entry, Posting

ACCOUNT = "DM00010001"


def forge_operation(st, entry_type: str, body: dict):
    """A signed entry of ``entry_type`` and its operation row, as a newer (or tampered) station would write them."""
    txn = receipts.new_txn_id()
    with st.write():
        entry = append_forged_entry(st, entry_type, st.now(), {"agent": "A01", **body}, txn=txn)
        Operation.create(txn=txn, seq=entry.seq, type=entry_type, request_hash="-", agent_id="A01",
                         business_date=st.local_date().isoformat(), amount_fen=10_000, created_at=st.now())
    return entry


def postings_of(station_id: str, seq: int) -> int:
    server_db()
    return Posting.select().where((Posting.station_id == station_id) & (Posting.seq == seq)).count()


@pytest.mark.parametrize("entry_type, body", [
    ("insurance_order", {"account": ACCOUNT, "amount": 10_000, "product": "INS-90D"}),
    ("customer", {"account": ACCOUNT}),  # once raised TypeError in the server: a 500 for ever
])
def test_an_unknown_type_is_rejected_as_unknown_type(server, tmp_path, clock, entry_type, body):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    forged = forge_operation(st, entry_type, body)
    assert sync_once(st).rejected == {forged.seq: "unknown_type"}
    assert postings_of("ST-0001", forged.seq) == 0
    server_db()
    stored = Entry.get((Entry.station_id == "ST-0001") & (Entry.seq == forged.seq))
    assert (stored.type, stored.outcome, stored.reason) == (entry_type, "rejected", "unknown_type")
    assert sum(ledger_totals().values()) == 0
    with st.bound():
        op = Operation.get(Operation.seq == forged.seq)
    assert (op.status, op.outcome_reason) == ("rejected", "unknown_type")
    # Listed for the bank's staff, by the command and by the function behind it.
    assert [(e["seq"], e["type"], e["reason"]) for e in list_entries("ST-0001", outcome="rejected")] == [
        (forged.seq, entry_type, "unknown_type")]
    result = CliRunner().invoke(cli, ["entries", "list", "--database-url", server.database_url,
                                      "--station", "ST-0001", "--outcome", "rejected"])
    assert result.exit_code == 0, result.output
    assert f"{forged.seq}\t{entry_type}\trejected\tunknown_type" in result.output


@pytest.mark.parametrize("amount", [10.0, "100", True, None, -1, 10**12])
def test_an_amount_that_is_not_integer_fen_is_rejected(server, tmp_path, clock, amount):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    forged = forge_operation(st, "deposit", {"account": ACCOUNT, "amount": amount})
    assert sync_once(st).rejected == {forged.seq: "invalid_amount"}
    assert postings_of("ST-0001", forged.seq) == 0
    with st.bound():
        assert Operation.get(Operation.seq == forged.seq).status == "rejected"


@pytest.mark.parametrize("body", [
    {"account": ACCOUNT, "amount": 10_000, "note": "a field deposits do not have"},
    {"account": ACCOUNT + "\u0000", "amount": 10_000},  # PostgreSQL refuses a NUL in text: never a 500
    {"account": "\u202e1000100MD", "amount": 10_000},  # a bidi override would print reversed on the receipt
    {"account": ["DM00010001"], "amount": 10_000},
    {"account": ACCOUNT, "amount": 10_000, "txn": "not-a-uuid"},
])
def test_a_field_of_the_wrong_json_type_is_malformed(server, tmp_path, clock, body):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.write():
        forged = append_forged_entry(st, "deposit", st.now(), {"agent": "A01", **body},
                              txn=body.get("txn", receipts.new_txn_id()))
    assert sync_once(st).rejected == {forged.seq: "malformed_entry"}
    assert postings_of("ST-0001", forged.seq) == 0


def test_a_float_seq_is_rejected_not_applied(server, tmp_path, clock):
    """``"seq": 21.0`` equals 21 in Python: the server must still refuse it as not an integer."""
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    head_seq, head_token = journal_head(st)
    seq = head_seq + 1
    payload = {"v": 1, "station": st.station_id, "seq": float(seq), "type": "deposit", "ts": utc_text(st.now()),
               "prev": chain_hash(head_token), "agent": "A01", "account": ACCOUNT, "amount": 10_000,
               "txn": receipts.new_txn_id()}
    token = st.signer.sign(payload)
    assert isinstance(unverified_payload(token)["seq"], float)
    with st.write():
        JournalEntry.create(seq=seq, type="deposit", txn=payload["txn"], token=token, recorded_at=st.now())
    assert sync_once(st).rejected == {seq: "malformed_entry"}
    assert postings_of("ST-0001", seq) == 0


def test_a_non_canonical_token_is_rejected_and_the_next_entry_settles(server, tmp_path, clock):
    """A deposit signed with spaces in its JSON (two encodings of one entry would give two chain hashes) is settled as
    rejected ``malformed_entry``; the station's outbox moves on and the deposit after it is applied."""
    import json

    from joserfc import jws

    from station.protocol.tokens import _registry

    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    head_seq, head_token = journal_head(st)
    seq = head_seq + 1
    payload = {"v": 1, "station": st.station_id, "seq": seq, "type": "deposit", "ts": utc_text(st.now()),
               "prev": chain_hash(head_token), "agent": "A01", "account": ACCOUNT, "amount": 10_000,
               "txn": receipts.new_txn_id()}
    token = jws.serialize_compact({"alg": "Ed25519", "kid": st.signer.kid}, json.dumps(payload).encode(),
                                  st.signing_key, registry=_registry)
    with st.write():
        JournalEntry.create(seq=seq, type="deposit", txn=payload["txn"], token=token, recorded_at=st.now())
    good = forge_operation(st, "deposit", {"account": ACCOUNT, "amount": 20_000})
    result = sync_once(st)
    assert result.rejected == {seq: "malformed_entry"}
    assert postings_of("ST-0001", seq) == 0 and postings_of("ST-0001", good.seq) > 0
