"""Appending to and verifying the station's journal.

``append_entry`` must be called inside the write transaction that also writes the entry's business rows
(``station.writepath`` and the other writers do this): the new entry's seq is the head's + 1 and its ``prev``
the head's hash, both read in that same IMMEDIATE transaction, so entries stay gapless and chained even with
several writer threads.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from joserfc.jwk import KeySet

from station import errors
from station.context import Station
from station.db import JournalEntry
from station.device_state import keep_clock_floor
from station.journal_rows import row_problems
from station.keys import current_signer
from station.protocol.entry_types import entry_problem, field_problems
from station.protocol.journal_checks import JournalProblem, check_journal_semantics
from station.protocol.journal_export import JOURNAL_FILE, JWKS_FILE, export_line, mislabelled, read_export
from station.protocol.times import utc_text
from station.protocol.tokens import (
    PROTOCOL_VERSION,
    ChainProblem,
    chain_hash,
    genesis_prev,
    public_jwk,
    unverified_payload,
    verify_chain,
)


def journal_head(st: Station) -> tuple[int, str | None]:
    """(seq, token) of the last entry, or (0, None) for an empty journal."""
    row = st.db.execute_sql("SELECT seq, token FROM journal_entry ORDER BY seq DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else (0, None)


def chain_base(st: Station) -> tuple[int, str]:
    """(seq, chain value) the device's journal continues after: (0, genesis) for a station's first device; the
    bank's head for a replacement device (``station.sync.enroll_station``), whose journal starts after it."""
    base = st.setting("chain_base")
    if base:
        return base["seq"], base["head"]
    return 0, genesis_prev(st.station_id)


def chain_value_before(st: Station, seq: int) -> str:
    """The ``prev`` of entry ``seq``: the chain value after entry ``seq - 1`` (or the chain base)."""
    base_seq, base_head = chain_base(st)
    if seq - 1 <= base_seq:
        return base_head
    return chain_hash(JournalEntry.get_by_id(seq - 1).token)


class UnsignableEntry(ValueError):
    """An entry that is not what its type's spec says: a programming error in a writer, refused before signing."""


def entry_payload(st: Station, entry_type: str, moment: datetime, body: dict, txn: str | None = None) -> dict:
    """The next entry's payload: ``body`` with ``v``, ``station``, ``seq`` (head + 1), ``type``, ``ts`` and ``prev``
    (the head's hash), read inside the caller's write transaction."""
    station_id = st.station_id
    head_seq, head_token = journal_head(st)
    if head_token is None:
        head_seq, prev = chain_base(st)
    else:
        prev = chain_hash(head_token)
    payload = {
        **body,
        "v": PROTOCOL_VERSION,
        "station": station_id,
        "seq": head_seq + 1,
        "type": entry_type,
        "ts": utc_text(moment),
        "prev": prev,
    }
    if txn is not None:
        payload["txn"] = txn
    return payload


def store_entry(st: Station, payload: dict, moment: datetime) -> JournalEntry:
    """Sign ``payload`` (from :func:`entry_payload`) with the station's key and store it as the next entry.

    It checks nothing of the fields: :func:`append_entry` does, and is what every writer calls.
    """
    token = current_signer(st).sign(payload)
    seq, entry_type, txn = payload["seq"], payload["type"], payload.get("txn")
    st.db.execute_sql(
        "INSERT INTO journal_entry (seq, type, txn, token, recorded_at) VALUES (?, ?, ?, ?, ?)",
        (seq, entry_type, txn, token, JournalEntry.recorded_at.db_value(moment)),
    )
    return JournalEntry(seq=seq, type=entry_type, txn=txn, token=token, recorded_at=moment)


def append_entry(
    st: Station, entry_type: str, moment: datetime, body: dict, txn: str | None = None, *, keep_floor: bool = True
) -> JournalEntry:
    """Sign and store the next entry with the station's key; returns the stored row (``row.token`` is the receipt).

    The payload must be what its type's spec says (``station.protocol.entry_types``): the station never signs an
    entry the bank would reject as malformed. ``keep_floor``: an entry stamped before the clock floor keeps it
    (``station.device_state.keep_clock_floor``); only the clock correction, the entry that lowers the floor, passes
    False (``station.clock``).
    """
    payload = entry_payload(st, entry_type, moment, body, txn)
    if entry_problem(payload) is not None:
        # A writer's bug, never a person's input (the services refuse bad input first).
        raise UnsignableEntry(f"refusing to sign a {entry_type} entry: {'; '.join(field_problems(payload))}")
    if keep_floor:
        keep_clock_floor(st, moment)
    return store_entry(st, payload, moment)


def append_start_entry(st: Station) -> JournalEntry:
    """The journal's first entry: the station's public key, signed by it. Seq 1, or on a replacement device the
    seq after the bank's head, which it names (``continues``)."""
    body = {"jwk": public_jwk(st.signing_key), "software": "station-kit"}
    base_seq, _ = chain_base(st)
    if base_seq:
        body["continues"] = base_seq
    return append_entry(st, "start", st.now(), body)


def iter_entries(st: Station, after_seq: int = 0, batch: int = 2000) -> Iterator[tuple[int, str]]:
    """(seq, token) pairs in seq order, read in pages so a long journal does not sit in memory.

    A token is ASCII; one whose stored bytes are not (damage) comes out with U+FFFD in their place, so that it fails
    verification at its seq instead of stopping the read of the whole journal."""
    last = after_seq
    while True:
        rows = st.db.execute_sql(
            "SELECT seq, CAST(token AS BLOB) FROM journal_entry WHERE seq > ? ORDER BY seq LIMIT ?", (last, batch)
        ).fetchall()
        if not rows:
            return
        yield from ((seq, token.decode("ascii", errors="replace")) for seq, token in rows)
        last = rows[-1][0]


@dataclass(frozen=True)
class JournalAudit:
    """What ``station verify-journal`` found: every problem, the chain's first (if any) leading."""

    station: str
    entries: int
    chain_verified: bool
    problems: list[JournalProblem] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        """True when the chain verifies and the entries make sense together."""
        return not self.problems

    def as_dict(self) -> dict:
        """The ``--json`` output: station, entries, intact, problems, and the first problem's bad_seq/reason."""
        result = {"station": self.station, "entries": self.entries, "intact": self.intact,
                  "problems": [problem.as_dict() for problem in self.problems]}
        if self.problems:
            result.update(bad_seq=self.problems[0].seq, reason=self.problems[0].reason)
        return result


def audit_entries(
    pairs: Callable[[], Iterable[tuple[int, str]]],
    keys: KeySet,
    station_id: str,
    *,
    bank_head: tuple[int, str] | None = None,
    first_seq: int = 1,
    prev: str | None = None,
) -> JournalAudit:
    """Verify the chain of ``pairs()`` (seq, token), then, only if it holds, check what the entries say.

    ``pairs`` is called once per pass (the chain, then the semantics), so a long journal is never held in memory.
    ``bank_head`` is ``(acked_seq, head)`` from the bank: entry ``acked_seq`` must exist and hash to ``head``;
    without it, entries deleted from the end of a journal cannot be noticed.
    """
    count = 0

    def counted():
        nonlocal count
        for pair in pairs():
            count += 1
            yield pair

    problem = verify_chain(counted(), keys, station_id, first_seq=first_seq, prev=prev)
    if problem is None and count == 0:
        problem = ChainProblem(1, "the journal is empty: no start entry")
    if problem is not None:
        return JournalAudit(station_id, count, False, [JournalProblem(problem.seq, problem.reason)])
    seen_head: list[str] = []

    def payloads():
        for seq, token in pairs():
            if bank_head is not None and seq == bank_head[0]:
                seen_head.append(chain_hash(token))
            yield unverified_payload(token)

    problems = check_journal_semantics(payloads())
    if bank_head is not None:
        acked_seq, head = bank_head
        if not seen_head:
            problems.insert(0, JournalProblem(
                count, f"the journal ends at seq {count}, the bank acknowledged seq {acked_seq}: entries are missing"))
        elif seen_head[0] != head:
            problems.insert(0, JournalProblem(acked_seq, "the chain does not reach the head the bank acknowledged"))
    return JournalAudit(station_id, count, True, problems)


def audit_journal(st: Station, *, bank_head: tuple[int, str] | None = None) -> JournalAudit:
    """Audit the station's own journal against its own keys (``station verify-journal``); a replacement device's
    journal from its chain base on. Once the chain verifies, the business rows are checked against the entries
    (``station.journal_rows``). The database passed ``PRAGMA integrity_check`` when the station was opened."""
    base_seq, base_head = chain_base(st)
    audit = audit_entries(lambda: iter_entries(st), st.keyset(), st.station_id, bank_head=bank_head,
                          first_seq=base_seq + 1, prev=base_head)
    if not audit.chain_verified:
        return audit
    return JournalAudit(audit.station, audit.entries, True, audit.problems + row_problems(st))


def audit_export(
    folder: Path, keys: KeySet, station_id: str | None = None, *, bank_head: tuple[int, str] | None = None
) -> JournalAudit:
    """Audit an exported folder with the given trust anchor ``keys`` (never the folder's own jwks.json).

    ``station_id`` defaults to the station named by the first entry. Beyond :func:`audit_entries`, each line's
    ``type`` must be its payload's (its ``seq`` is checked by the chain). A replacement device's export starts after
    the bank's head N with a start entry that says ``continues`` N: its chain is checked from there (that it
    joins the old device's entry N is the bank's to check: ``--acked-seq``/``--head`` or ``journal import``).
    """
    lines = read_export(folder)
    if station_id is None:
        station_id = str(unverified_payload(lines[0][2]).get("station")) if lines else ""
    first_seq, prev = 1, None
    if lines and lines[0][0] > 1:
        # A replacement device's journal: it starts after the bank's head, with a start entry that names it.
        start = unverified_payload(lines[0][2])
        if start.get("type") == "start" and start.get("continues") == lines[0][0] - 1:
            first_seq, prev = lines[0][0], start.get("prev")
    audit = audit_entries(lambda: ((seq, token) for seq, _, token in lines), keys, station_id,
                          bank_head=bank_head, first_seq=first_seq, prev=prev)
    if not audit.chain_verified:
        return audit
    labels = [JournalProblem(seq, problem) for seq, problem in mislabelled(lines)]
    return JournalAudit(audit.station, audit.entries, True, labels + audit.problems)


def export_journal(st: Station, out: Path) -> int:
    """Write ``journal.jsonl`` and ``jwks.json`` into ``out``; returns the number of entries."""
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(out / JOURNAL_FILE, "w", encoding="utf-8") as handle:
        for seq, token in iter_entries(st):
            handle.write(export_line(seq, token))
            count += 1
    (out / JWKS_FILE).write_text(json.dumps(st.public_jwks(), indent=2), encoding="utf-8")
    return count


# -- a form sent twice -----------------------------------------------------------------------------------------
def form_txn(txn) -> str | None:
    """The UUID a form was issued with, as the journal keeps it (None: the form had none); ``InvalidTxnId`` for
    anything that is not a UUID."""
    if txn is None:
        return None
    try:
        return str(uuid.UUID(str(txn)))
    except ValueError as exc:
        raise errors.InvalidTxnId() from exc


def recorded_by_form(txn: str | None, entry_type: str, fields: dict) -> JournalEntry | None:
    """The entry a form's ``txn`` already recorded (the same form sent again: a double tap), or None; call it in
    the write transaction. ``TxnConflict`` when that txn recorded another type of entry or other ``fields``: a txn
    names one form, never two things."""
    earlier = JournalEntry.get_or_none(JournalEntry.txn == txn) if txn is not None else None
    if earlier is None:
        return None
    said = unverified_payload(earlier.token)
    if earlier.type != entry_type or any(said.get(name) != value for name, value in fields.items()):
        raise errors.TxnConflict()
    return earlier
