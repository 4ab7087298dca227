"""Appending to and verifying the station's journal.

``append_entry`` must be called inside the write transaction that also writes the entry's business rows
(the services do this): the new entry's seq is the head's + 1 and its ``prev`` the head's hash, both read in
that same IMMEDIATE transaction, so entries stay gapless and chained even with several writer threads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from joserfc.jwk import KeySet
from peewee import fn

from station.db import JournalEntry, db_proxy
from station.protocol.tokens import (
    PROTOCOL_VERSION,
    ChainProblem,
    Signer,
    chain_hash,
    genesis_prev,
    unverified_payload,
    utc_timestamp,
    verify_chain,
)


def journal_head() -> tuple[int, str | None]:
    """(seq, token) of the last entry, or (0, None) for an empty journal."""
    row = db_proxy.execute_sql("SELECT seq, token FROM journal_entry ORDER BY seq DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else (0, None)


def append_entry(
    signer: Signer, station_id: str, entry_type: str, moment: datetime, body: dict, txn: str | None = None
) -> JournalEntry:
    """Sign and store the next entry; returns the stored row (``row.token`` is the receipt)."""
    head_seq, head_token = journal_head()
    seq = head_seq + 1
    payload = {
        **body,
        "v": PROTOCOL_VERSION,
        "station": station_id,
        "seq": seq,
        "type": entry_type,
        "ts": utc_timestamp(moment),
        "prev": chain_hash(head_token) if head_token else genesis_prev(station_id),
    }
    if txn is not None:
        payload["txn"] = txn
    token = signer.sign(payload)
    db_proxy.execute_sql(
        "INSERT INTO journal_entry (seq, type, txn, token, recorded_at) VALUES (?, ?, ?, ?, ?)",
        (seq, entry_type, txn, token, JournalEntry.recorded_at.db_value(moment)),
    )
    return JournalEntry(seq=seq, type=entry_type, txn=txn, token=token, recorded_at=moment)


def iter_entries(after_seq: int = 0, batch: int = 2000) -> Iterator[tuple[int, str]]:
    """(seq, token) pairs in seq order, read in pages so a long journal does not sit in memory."""
    last = after_seq
    while True:
        rows = list(
            JournalEntry.select(JournalEntry.seq, JournalEntry.token)
            .where(JournalEntry.seq > last)
            .order_by(JournalEntry.seq)
            .limit(batch)
            .tuples()
        )
        if not rows:
            return
        yield from rows
        last = rows[-1][0]


def verify_journal(keys: KeySet, station_id: str) -> tuple[int, ChainProblem | None]:
    """Verify the whole journal: (entries checked, first problem or None)."""
    count = 0

    def counted():
        nonlocal count
        for pair in iter_entries():
            count += 1
            yield pair

    problem = verify_chain(counted(), keys, station_id)
    if problem is None and count == 0:
        problem = ChainProblem(1, "the journal is empty: no start entry")
    return count, problem


def export_journal(st, out: Path) -> int:
    """Write ``journal.jsonl`` and ``jwks.json`` into ``out``; returns the number of entries."""
    out.mkdir(parents=True, exist_ok=True)
    st.activate()
    count = 0
    with open(out / "journal.jsonl", "w", encoding="utf-8") as handle:
        for seq, token in iter_entries():
            entry_type = unverified_payload(token)["type"]
            handle.write(json.dumps({"seq": seq, "type": entry_type, "jws": token}) + "\n")
            count += 1
    (out / "jwks.json").write_text(json.dumps(st.public_jwks(), indent=2), encoding="utf-8")
    return count


def summarise(st) -> dict:
    """Entries by type, and count and total amount (fen) of customer operations by type and status."""
    from station.db import Operation
    from station.services import drawer_cash

    st.activate()
    entries = dict(
        JournalEntry.select(JournalEntry.type, fn.COUNT(JournalEntry.seq)).group_by(JournalEntry.type).tuples()
    )
    operations = {}
    query = Operation.select(
        Operation.type, Operation.status, fn.COUNT(Operation.txn), fn.SUM(Operation.amount_fen)
    ).group_by(Operation.type, Operation.status)
    for op_type, status, count, total in query.tuples():
        operations.setdefault(op_type, {})[status] = {"count": count, "amount_fen": total}
    head_seq, _ = journal_head()
    return {
        "station": st.station_id,
        "head_seq": head_seq,
        "entries_by_type": entries,
        "operations": operations,
        "drawer_cash_fen": drawer_cash(),
    }
