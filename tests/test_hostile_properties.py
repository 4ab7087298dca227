"""Property: whatever JSON a station signs inside a correctly chained entry, the bank answers every entry.

Hypothesis writes batches of entries whose payloads are arbitrary JSON (known and unknown types, the registry's
field names and others, text with NUL and other control characters, floats, huge integers, nested structures),
some of them one field away from a well-formed entry so the posting rules run too. Each batch is signed with the
station's real key through its own signer and sent by its own sync to a real server: no server error, an outcome
for every entry, the ledger's invariants hold, and the station's outbox drains.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sync_support import BACKENDS, enrolled_station, server_db, start_module_bank

from station import receipts
from station.db import JournalEntry
from station.journal import entry_payload
from station.protocol.entry_types import ENVELOPE_FIELDS, SPECS, EntryType
from station.sync import sync_once
from sync_server.checks import check_ledger
from sync_server.db import Entry, db_proxy

ACCOUNT = "DM00010001"
FIELD_NAMES = sorted({name for spec in SPECS.values() for name in spec.fields} | set(ENVELOPE_FIELDS))

#: A well-formed body of each type the station writes after its start entry (its own key's rows aside).
VALID_BODIES = {
    EntryType.DEPOSIT: {"agent": "A01", "account": ACCOUNT, "amount": 10_000},
    EntryType.WITHDRAWAL: {"agent": "A01", "account": ACCOUNT, "amount": 10_000, "fee": 200},
    EntryType.TRANSFER: {"agent": "A01", "account": ACCOUNT, "amount": 10_000, "payee_account": "6222020200112233445",
                         "payee_name": "Li Wei", "warned": True},
    EntryType.TRANSFER_STOPPED: {"agent": "A01", "account": ACCOUNT, "amount": 800_000,
                                 "payee_account": "6222020200112233445", "payee_name": "公安局安全账户",
                                 "new_payee": True, "over_threshold": True, "markers": ["公安"]},
    EntryType.BILL_PAYMENT: {"agent": "A01", "amount": 5_000, "biller": "ELEC-SGCC", "ref": "1234567890",
                             "funding": "cash"},
    EntryType.FEEDBACK: {"agent": "A01", "category": "praise", "text": "kind and quick"},
    EntryType.DAY_OPEN: {"agent": "A01", "amount": 3_000_000, "counts": {"10000": 300}},
    # ``ts`` is the Clock's below (2026-11-02T23:40): the floor an hour after it.
    EntryType.CLOCK_CORRECTED: {"floor": "2026-11-03T00:40:00.000Z", "behind_ms": 3_600_000, "by": "technician",
                                "reason": "fake-hwclock"},
}

texts = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(codec="utf-8", categories=["Cc", "Cf", "Zl", "Zp", "Lo"]), max_size=10),
    st.sampled_from(["Li\x00Wei", "\x1bp\x00\x19\xfa", "\x1dV\x00", "\x1b@", "\u202e", "x" * 300, ACCOUNT]),
)
integers = st.one_of(st.integers(-10, 10**6), st.integers(), st.sampled_from([0, -1, 2**53, 2**63, -(2**63), 10**30]))
scalars = st.one_of(st.none(), st.booleans(), integers, st.floats(allow_nan=False, allow_infinity=False), texts)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8)),
                                                 inner, max_size=3)), max_leaves=8)
field_names = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12))
entry_types = st.one_of(st.sampled_from([str(t) for t in EntryType]),
                        st.sampled_from(["customer", "_init__", "__init__", "billers", "HANDLERS", ""]), json_values)

arbitrary_payloads = st.fixed_dictionaries({"type": entry_types}, optional={
    "txn": st.one_of(st.builds(receipts.new_txn_id), json_values),
    "v": json_values, "ts": json_values,
}).flatmap(lambda fixed: st.dictionaries(field_names, json_values, max_size=6).map(lambda rest: {**rest, **fixed}))


@st.composite
def near_valid_payloads(draw) -> dict:
    """A well-formed entry with one field changed, removed or added."""
    entry_type = draw(st.sampled_from(sorted(VALID_BODIES)))
    payload = {"type": str(entry_type), "txn": receipts.new_txn_id(), **VALID_BODIES[entry_type]}
    if entry_type in (EntryType.DAY_OPEN, EntryType.CLOCK_CORRECTED):
        del payload["txn"]
    name = draw(st.one_of(st.sampled_from(sorted(payload)), field_names))
    if draw(st.booleans()) and name in payload and name != "type":
        del payload[name]
    else:
        payload[name] = draw(json_values)
    return payload


batches = st.lists(st.one_of(arbitrary_payloads, near_valid_payloads()), min_size=1, max_size=6)


class Clock:
    def __init__(self):
        self.now = datetime(2026, 11, 2, 23, 40, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module", params=BACKENDS)
def hostile_station(request, tmp_path_factory):
    """One server and one enrolled station ST-0001 for the whole module (Hypothesis runs many examples)."""
    tmp = tmp_path_factory.mktemp("hostile")
    server = start_module_bank(request, tmp, ["ST-0001", "ST-0002"])
    st_ = enrolled_station(server, tmp, "ST-0001", Clock())
    yield st_
    st_.close()
    server.stop()
    if not db_proxy.obj.is_closed():
        db_proxy.obj.close()


def sign_payload(station, fields: dict) -> int:
    """Sign ``fields`` as the station's next entry, chained and in the journal's format; returns its seq.

    ``v``, ``ts`` and ``type`` come from ``fields`` when it has them; ``station``, ``seq`` and ``prev`` are the
    chain's (a wrong one is a chain break, which refuses the batch by design)."""
    with station.write():
        payload = entry_payload(station, "placeholder", station.now(), {})
        payload.update({k: v for k, v in fields.items() if k not in ("station", "seq", "prev")})
        if "type" not in fields:
            del payload["type"]
        token = station.signer.sign(payload)
        kind, txn = payload.get("type"), payload.get("txn")
        JournalEntry.create(seq=payload["seq"], type=kind if isinstance(kind, str) else "?",
                            txn=txn if isinstance(txn, str) else None, token=token, recorded_at=station.now())
    return payload["seq"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(payloads=batches)
def test_any_signed_json_gets_an_outcome_and_the_outbox_drains(hostile_station, payloads):
    station = hostile_station
    seqs = [sign_payload(station, fields) for fields in payloads]
    result = sync_once(station, attempts=1)
    assert result.pending == 0 and result.acked_seq == seqs[-1]
    assert set(result.rejected) <= set(seqs)
    server_db()
    outcomes = dict(Entry.select(Entry.seq, Entry.outcome).where(
        (Entry.station_id == "ST-0001") & Entry.seq.between(seqs[0], seqs[-1])).tuples())
    assert sorted(outcomes) == seqs
    assert all(outcome in ("settled", "rejected", "acknowledged") for outcome in outcomes.values())
    assert {seq for seq, outcome in outcomes.items() if outcome == "rejected"} == set(result.rejected)
    assert check_ledger() == []
