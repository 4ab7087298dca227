"""A hand-carried journal at the bank: ``sync-server journal import DIR --station ID``.

When a station's device breaks (or is stolen and later found, or only a backup of it is left), what it recorded
and never synced reaches the bank on a technician's USB stick: ``station export-journal`` on the old SD card
(``station.protocol.journal_export`` is the format). The import is verified exactly like a sync and applied through
the same code (``service.apply_entries``), so an entry counts once however it arrives, and the device (or its
replacement) later syncing the same entries finds them already held.

In order, before anything is written:
1. the station: known and enrolled; active, or revoked (a stolen or retired device's journal is still the bank's
   record of what happened at the counter); never flagged (an operator looks at the fork first);
2. every line verifies with the station's keys as the bank knows them (``keyring.key_track``, never the
   export's own ``jwks.json``): signatures, seq gapless from the first line, each entry chained to the one before
   (the first to genesis, or an export that starts later to the entry the bank holds before it), each line's
   ``type`` label the entry's own; the first failure is named by its seq and nothing is applied;
3. the lines the bank already holds (seq up to its ``acked_seq``) must be exactly the tokens it holds. A
   difference is two histories both signed by the station's key: a fork, refused, and the station flagged with both
   contents kept (``StationFork``), as a sync would be.
Then the new lines are applied in chunks of ``CHUNK`` entries, each chunk its own transaction under the station's
row lock, as the batches of one sync (the last chunk is the sync's last batch: a revoked station's allowances stay
released). A chunk that meets a change made meanwhile (the device synced) is checked again by ``apply_entries``
(duplicates are skipped). An import that stops halfway (the database went away) leaves whole chunks applied;
running it again applies the rest. The audit trail gets a ``journal_imported`` event.

What an import does not do: count as contact with the device (``last_sync_at`` and the clock offset stay the
device's own), or refresh a revoked station's holds: an offline debit it recorded against a hold that revoking
released is rejected ``not_authorized`` and becomes a reconciliation item, like any rejected offline debit (the
agent's cash is settled by reconciliation staff).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from station.protocol.envelope import Batch, OpenedEntry
from station.protocol.journal_export import ExportError, mislabelled, read_export
from station.protocol.tokens import KeyTrack, chain_hash, unverified_payload, verify_chain
from sync_server.db import Entry, Station, db_proxy
from sync_server.keyring import key_track
from sync_server.lifecycle import (
    MAX_NAME_CHARS,
    LifecycleError,
    existing_station,
    operator_text,
    record_event,
)
from sync_server.problems import Problem
from sync_server.service import Fork, apply_entries, locked_station, once_more_on_conflict, record_fork

#: Entries applied per transaction: one chunk is about a sync batch's size.
CHUNK = 500


class ImportRefused(LifecycleError):
    """An export the bank does not import; ``seq`` is the first bad entry when there is one. Nothing was applied."""

    def __init__(self, message: str, seq: int | None = None):
        super().__init__(message)
        self.seq = seq


@dataclass(frozen=True)
class ImportResult:
    """What an import did: the seqs it applied (none: ``first`` and ``last`` are None), how many of them the bank
    rejected under its rules, and how far the bank now holds the station's journal."""

    station_id: str
    first: int | None
    last: int | None
    rejected: int
    held_to: int

    @property
    def entries(self) -> int:
        return 0 if self.first is None else self.last - self.first + 1

    @property
    def message(self) -> str:
        """One line for the operator."""
        if self.first is None:
            return f"Nothing new: the bank already holds seq 1..{self.held_to} of station {self.station_id}."
        rejected = (f"; {self.rejected} rejected by the bank's rules (sync-server entries list --station "
                    f"{self.station_id} --outcome rejected)" if self.rejected else "")
        return (f"Imported seq {self.first}..{self.last} of station {self.station_id} ({self.entries} entries"
                f"{rejected}). The bank now holds seq 1..{self.held_to}.")


def importable_station(station_id: str) -> Station:
    """The station, if its journal may be imported now; else :class:`ImportRefused` saying why."""
    try:
        station = existing_station(station_id)
    except LifecycleError as exc:
        raise ImportRefused(str(exc)) from None
    check_importable(station)
    return station


def check_importable(station: Station) -> None:
    """Refuse a station that has not enrolled (no key to verify with) or is flagged (an operator looks first)."""
    if station.status == "pending":
        raise ImportRefused(f"Station {station.station_id} has not enrolled: the bank holds no key to verify its "
                            f"journal.")
    if station.flagged:
        raise ImportRefused(f"Station {station.station_id} is flagged ({station.flag_reason}). Look at it with "
                            f"`sync-server station show {station.station_id}` and clear the flag before importing.")


def import_journal(folder: Path, station_id: str, *, by: str, now: datetime | None = None,
                   chunk: int = CHUNK) -> ImportResult:
    """Verify the export in ``folder`` against what the bank knows of ``station_id`` and apply what is new.

    Raises :class:`ImportRefused` (nothing applied) for an export that does not verify or contradicts the bank.
    """
    by = operator_text(by, "your name (--by)", MAX_NAME_CHARS)
    now = now or datetime.now(UTC)
    try:
        lines = read_export(Path(folder))
    except ExportError as exc:
        raise ImportRefused(f"The export cannot be read: {exc}. Nothing was imported.") from None
    if not lines:
        raise ImportRefused("The export holds no entries. Nothing was imported.")
    station = importable_station(station_id)
    track = _verify(lines, station)
    new = _new_lines(lines, station, now)
    if not new:
        return ImportResult(station_id, None, None, 0, station.acked_seq)
    return _apply(new, station_id, by, now, chunk, track)


def _verify(lines: list[tuple[int, str, str]], station: Station) -> KeyTrack:
    """Signatures, chain and labels of every line, with the bank's keys; :class:`ImportRefused` at the first bad
    seq."""
    station_id = station.station_id
    first = lines[0][0]
    named = _named_station(lines[0][2])
    if named is not None and named != station_id:
        raise ImportRefused(f"This export is the journal of station {named}, not {station_id}. Nothing was "
                            f"imported.", first)
    prev = None
    if first > 1:
        before = Entry.select(Entry.token).where((Entry.station_id == station_id) & (Entry.seq == first - 1)).scalar()
        if before is None:
            raise ImportRefused(f"The export starts at seq {first}, and the bank holds no entry {first - 1} of "
                                f"station {station_id} to chain it to (it holds seq 1..{station.acked_seq}). "
                                f"Export the whole journal. Nothing was imported.", first)
        prev = chain_hash(before)
    # The keys as the bank knows them, followed along the chain (rotations, a replacement device's start).
    track = key_track(station_id, first)
    problem = verify_chain(((seq, token) for seq, _, token in lines), track, station_id, first_seq=first, prev=prev)
    if problem is not None:
        raise ImportRefused(f"The export does not verify at seq {problem.seq}: {problem.reason}. Nothing was "
                            f"imported.", problem.seq)
    labels = mislabelled(lines)
    if labels:
        seq, reason = labels[0]
        raise ImportRefused(f"The export does not verify at seq {seq}: {reason}. Nothing was imported.", seq)
    return track


def _named_station(token: str) -> str | None:
    """The station a token's payload names, read without verifying (for a clearer refusal), or None."""
    try:
        named = unverified_payload(token).get("station")
    except (ValueError, IndexError, AttributeError):
        return None
    return named if isinstance(named, str) else None


def _new_lines(lines: list[tuple[int, str, str]], station: Station, now: datetime) -> list[tuple[int, str, str]]:
    """The lines above what the bank holds, after checking those at or below its ``acked_seq`` are the very tokens
    it holds (a difference is a fork: refused, flagged)."""
    station_id, acked = station.station_id, station.acked_seq
    held_lines = [line for line in lines if line[0] <= acked]
    for start in range(0, len(held_lines), CHUNK):
        part = held_lines[start:start + CHUNK]
        held = dict(Entry.select(Entry.seq, Entry.token).where(
            (Entry.station_id == station_id) & Entry.seq.between(part[0][0], part[-1][0])).tuples())
        for seq, _, token in part:
            if held.get(seq) == token:
                continue
            if seq not in held:
                raise ImportRefused(f"The bank acknowledged seq 1..{acked} of station {station_id} but holds no "
                                    f"entry {seq}: its own records are damaged (run `recon run`, seq_gap). "
                                    f"Nothing was imported.", seq)
            fork = Fork(f"entry {seq} of a journal export differs from the one the bank holds", seq,
                        held_token=held[seq], offered_token=token)
            record_fork(station_id, fork, now)
            raise ImportRefused(f"The export differs from what the bank holds at seq {seq}. Both are signed with "
                                f"the station's key: the device wrote two histories. Station {station_id} is now "
                                f"flagged; see `sync-server station show {station_id}`. Nothing was imported.", seq)
    return [line for line in lines if line[0] > acked]


def _apply(new: Sequence[tuple[int, str, str]], station_id: str, by: str, now: datetime, chunk: int, track: KeyTrack
           ) -> ImportResult:
    """Apply the verified new lines, ``chunk`` entries per transaction; the audit event goes with the last one."""
    first, last = new[0][0], new[-1][0]
    applied_to = first - 1

    def apply_chunk(part: Sequence[tuple[int, str, str]], last_chunk: bool) -> None:
        with db_proxy.atomic():
            station = locked_station(station_id)
            check_importable(station)
            entries = [OpenedEntry(seq, token, unverified_payload(token)) for seq, _, token in part]
            batch = Batch(station_id, entries[0].seq, entries[-1].seq, entries[0].payload["prev"],
                          chain_hash(entries[-1].token), entries)
            apply_entries(station, batch, now, more=not last_chunk, device_contact=False, track=track)
            if last_chunk:
                record_event(station_id, "journal_imported", by, detail=_detail(first, last), now=now)

    try:
        for start in range(0, len(new), chunk):
            part = new[start:start + chunk]
            last_chunk = start + chunk >= len(new)
            try:
                once_more_on_conflict(lambda part=part, last_chunk=last_chunk: apply_chunk(part, last_chunk))
            except Fork as fork:
                record_fork(station_id, fork, now)
                raise ImportRefused(f"Refused and flagged: {fork.reason}. Nothing from seq {part[0][0]} on was "
                                    f"imported{_before(first, applied_to)}.", fork.seq) from None
            except Problem as problem:  # a gap: only if the bank's records moved back meanwhile
                raise ImportRefused(f"Refused: {problem.detail} Nothing from seq {part[0][0]} on was imported"
                                    f"{_before(first, applied_to)}.") from None
            applied_to = part[-1][0]
    finally:
        if first <= applied_to < last:
            # Stopped halfway: whole chunks stay applied and are recorded; the import can be run again.
            with db_proxy.atomic():
                record_event(station_id, "journal_imported", by, detail={**_detail(first, applied_to),
                                                                         "complete": False}, now=now)
    rejected = Entry.select().where((Entry.station_id == station_id) & Entry.seq.between(first, last)
                                    & (Entry.outcome == "rejected")).count()
    return ImportResult(station_id, first, last, rejected, Station.get_by_id(station_id).acked_seq)


def _before(first: int, applied_to: int) -> str:
    return f" (seq {first}..{applied_to} were imported before it)" if applied_to >= first else ""


def _detail(first: int, last: int) -> dict:
    """The ``journal_imported`` event's detail: the seqs applied."""
    return {"first": first, "last": last, "entries": last - first + 1}
