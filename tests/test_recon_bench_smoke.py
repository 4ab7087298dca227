"""The benchmark's generator (``tests/recon_history.py``) stays honest: at a tiny size its history is what stations
and the bank would have written, and recon finds nothing in it.

On SQLite and, when ``TEST_DATABASE_URL`` is set, PostgreSQL (the ``database_url`` fixture), where the rows go in
with COPY as in the benchmark.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from recon_history import (
    StationSigner,
    build_small_history,
    last_business_date,
    station_history,
)

from station.protocol.journal_checks import check_journal_semantics
from station.protocol.tokens import Signer, chain_hash, unverified_payload, verification_key, verify_chain
from sync_server.checks import check_ledger
from sync_server.db import Entry, Station, connect_url, db_proxy
from sync_server.recon.context import Scope
from sync_server.recon.run import find_discrepancies

NOW = datetime(2026, 11, 20, 1, 30, tzinfo=UTC)
#: Four business days per station: days open on the cash left by the day before, holds are refreshed.
STATIONS, ENTRIES = 3, 130


@pytest.fixture
def history_db(database_url):
    database = connect_url(database_url)
    db_proxy.initialize(database)
    database.connect()
    yield database
    database.close()


def test_generated_tokens_are_the_stations_own():
    """Ed25519 is deterministic: the generator's tokens are byte for byte what ``tokens.Signer`` signs."""
    signer = StationSigner("smoke", "ST-0001")
    rows = station_history(1, ENTRIES, last_business_date(NOW), "smoke").tables["entry"]
    reference = Signer(signer.jwk_key)
    for _, _, _, _, token, *_ in rows[:5] + rows[-5:]:
        assert reference.sign(unverified_payload(token)) == token


def test_clean_history_verifies_and_balances(history_db):
    """Every journal verifies with the enrolled key, makes sense (drawer, references, counts), ends at the
    station's head; the ledger's own invariant checks pass."""
    stations = build_small_history(history_db, STATIONS, ENTRIES, NOW)
    assert Entry.select().count() == STATIONS * ENTRIES
    types = set()
    for station in Station.select().order_by(Station.station_id):
        tokens = list(Entry.select(Entry.seq, Entry.token).where(Entry.station_id == station.station_id)
                      .order_by(Entry.seq).tuples())
        assert verify_chain(tokens, verification_key(station.signing_jwk), station.station_id) is None
        assert check_journal_semantics([unverified_payload(token) for _, token in tokens]) == []
        assert (station.acked_seq, station.head) == (ENTRIES, chain_hash(tokens[-1][1]))
        payloads = [unverified_payload(token) for _, token in tokens]
        assert sum(1 for p in payloads if p["type"] == "day_close") == 4
        types |= {p["type"] for p in payloads} | {f"bill_payment/{p['funding']}" for p in payloads if "funding" in p}
    assert {"withdrawal", "deposit", "bill_payment/cash", "bill_payment/account", "balance_enquiry", "reversal",
            "day_open", "day_close"} <= types
    assert [s.station_id for s in Station.select().order_by(Station.station_id)] == stations
    assert check_ledger() == []


def test_recon_finds_nothing_in_the_clean_history(history_db):
    build_small_history(history_db, STATIONS, ENTRIES, NOW)
    findings = find_discrepancies(history_db, Scope(), NOW)
    assert findings.entries == STATIONS * ENTRIES
    assert [(d.kind, d.station, d.seq, d.account) for d in findings.discrepancies] == []

