"""Appending to and verifying the station's journal.

``append_entry`` must be called inside the write transaction that also writes the entry's business rows
(``station.writepath`` and the other writers do this): the new entry's seq is the head's + 1 and its ``prev``
the head's hash, both read in that same IMMEDIATE transaction, so entries stay gapless and chained even with
several writer threads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from joserfc.jwk import KeySet

from station.context import Station
from station.db import JournalEntry
from station.protocol.tokens import (
    PROTOCOL_VERSION,
    ChainProblem,
    chain_hash,
    genesis_prev,
    public_jwk,
    unverified_payload,
    utc_timestamp,
    verify_chain,
)


def journal_head(st: Station) -> tuple[int, str | None]:
    """(seq, token) of the last entry, or (0, None) for an empty journal."""
    row = st.db.execute_sql("SELECT seq, token FROM journal_entry ORDER BY seq DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else (0, None)


def append_entry(
    st: Station, entry_type: str, moment: datetime, body: dict, txn: str | None = None
) -> JournalEntry:
    """Sign and store the next entry with the station's key; returns the stored row (``row.token`` is the receipt)."""
    station_id = st.station_id
    head_seq, head_token = journal_head(st)
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
    token = st.signer.sign(payload)
    st.db.execute_sql(
        "INSERT INTO journal_entry (seq, type, txn, token, recorded_at) VALUES (?, ?, ?, ?, ?)",
        (seq, entry_type, txn, token, JournalEntry.recorded_at.db_value(moment)),
    )
    return JournalEntry(seq=seq, type=entry_type, txn=txn, token=token, recorded_at=moment)


def append_start_entry(st: Station) -> JournalEntry:
    """The journal's first entry (seq 1): the station's public key, signed by it."""
    return append_entry(st, "start", st.now(), {"jwk": public_jwk(st.signing_key), "software": "station-kit"})


def iter_entries(st: Station, after_seq: int = 0, batch: int = 2000) -> Iterator[tuple[int, str]]:
    """(seq, token) pairs in seq order, read in pages so a long journal does not sit in memory."""
    last = after_seq
    while True:
        rows = st.db.execute_sql(
            "SELECT seq, token FROM journal_entry WHERE seq > ? ORDER BY seq LIMIT ?", (last, batch)
        ).fetchall()
        if not rows:
            return
        yield from rows
        last = rows[-1][0]


def verify_journal(st: Station, keys: KeySet | None = None) -> tuple[int, ChainProblem | None]:
    """Verify the whole journal against ``keys`` (default: the station's own): (entries checked, first problem)."""
    station_id = st.station_id
    keys = keys or st.keyset()
    count = 0

    def counted():
        nonlocal count
        for pair in iter_entries(st):
            count += 1
            yield pair

    problem = verify_chain(counted(), keys, station_id)
    if problem is None and count == 0:
        problem = ChainProblem(1, "the journal is empty: no start entry")
    return count, problem


def export_journal(st: Station, out: Path) -> int:
    """Write ``journal.jsonl`` and ``jwks.json`` into ``out``; returns the number of entries."""
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(out / "journal.jsonl", "w", encoding="utf-8") as handle:
        for seq, token in iter_entries(st):
            entry_type = unverified_payload(token)["type"]
            handle.write(json.dumps({"seq": seq, "type": entry_type, "jws": token}) + "\n")
            count += 1
    (out / "jwks.json").write_text(json.dumps(st.public_jwks(), indent=2), encoding="utf-8")
    return count

