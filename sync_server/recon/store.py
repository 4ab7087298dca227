"""Exceptions: the discrepancies recon found, kept with stable ids and an append-only audit trail.

``record_run`` keeps a run's findings: a discrepancy found for the first time gets a new id (``opened``); one
found again keeps its row (its ``fingerprint``: kind and location, never the amounts), with its latest amounts
and values; an exception that was closed automatically and is found again is ``reopened``; one a clerk resolved
stays resolved (the clerk's decision holds); an open one no longer found in the run's scope is ``closed``
automatically with the reason. ``resolve`` records a clerk's decision. Every change of status is a
``ReconEvent`` (who, when, what, why), which the database keeps append-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from station.protocol.times import utc_text
from sync_server.db import ReconEvent, ReconException
from sync_server.recon.context import Scope
from sync_server.recon.kinds import KINDS, N_, Discrepancy

#: Who acts when recon itself opens, closes or reopens an exception.
RECON = "recon"
NO_LONGER_FOUND = N_("no longer found by recon run")


class UnknownException(LookupError):
    """No exception has this id."""


@dataclass(frozen=True)
class Stored:
    """A discrepancy as kept: its id and status with it."""

    id: int
    status: str
    discrepancy: Discrepancy


def _short(value):
    """Text as its column holds it (255 characters): longer text, which a signed payload may carry, is cut with
    an ellipsis. The identity (``fingerprint``) is computed from the whole value."""
    return value[:254] + "…" if isinstance(value, str) and len(value) > 255 else value


def _fields(d: Discrepancy) -> dict:
    return dict(kind=d.kind, station_id=_short(d.station), seq=d.seq, txn=_short(d.txn), account_id=_short(d.account),
                biller=_short(d.biller), reference=_short(d.reference), amount_fen=d.amount_fen,
                expected_fen=d.expected_fen, day=_short(d.day), detail=d.detail or {})


def as_discrepancy(row: ReconException) -> Discrepancy:
    return Discrepancy(row.kind, row.station_id, row.seq, row.txn, row.account_id, row.biller, row.reference,
                       row.amount_fen, row.expected_fen, row.day, row.detail or {})


def _event(exception_id: int, at: str, by: str, action: str, note: str = "") -> None:
    ReconEvent.create(exception_id=exception_id, at=at, by=by, action=action, note=note)


def record_run(database, discrepancies: list[Discrepancy], scope: Scope, now: datetime) -> list[Stored]:
    """Keep a run's findings (one transaction); returns them with their ids and statuses, in the run's order."""
    at = utc_text(now)
    stored = []
    with database.atomic():
        found = {d.fingerprint: d for d in discrepancies}
        fingerprints = list(found)
        existing = {row.fingerprint: row for start in range(0, len(fingerprints), 500)
                    for row in ReconException.select().where(
                        ReconException.fingerprint.in_(fingerprints[start:start + 500]))}
        for fingerprint, d in found.items():
            row = existing.get(fingerprint)
            if row is None:
                row = ReconException.create(fingerprint=fingerprint, status="open", first_found_at=at,
                                            last_found_at=at, **_fields(d))
                _event(row.id, at, RECON, "opened")
            else:
                update = {**_fields(d), "last_found_at": at}
                if row.status == "resolved" and _closed_by_recon(row.id):
                    update["status"] = "open"
                    _event(row.id, at, RECON, "reopened")
                ReconException.update(update).where(ReconException.id == row.id).execute()
                row = ReconException.get_by_id(row.id)
            stored.append(Stored(row.id, row.status, d))
        # What was open in this run's scope and is no longer found: closed, with the reason.
        for row in ReconException.select().where(ReconException.status == "open"):
            if row.fingerprint in found:
                continue
            if scope.covers_day(row.day) and scope.covers_station(row.station_id) and _in_checked_stations(
                    row, scope):
                ReconException.update(status="resolved").where(ReconException.id == row.id).execute()
                _event(row.id, at, RECON, "closed", NO_LONGER_FOUND)
    return stored


def _in_checked_stations(row: ReconException, scope: Scope) -> bool:
    """A station-less exception (a customer's balance, a biller's line) is checked only by a run of all stations."""
    return row.station_id is not None or scope.stations is None


def _closed_by_recon(exception_id: int) -> bool:
    last = (ReconEvent.select().where(ReconEvent.exception_id == exception_id)
            .order_by(ReconEvent.id.desc()).first())
    return last is not None and last.action == "closed"


def list_exceptions(status: str | None = None, kind: str | None = None) -> list[ReconException]:
    query = ReconException.select().order_by(ReconException.id)
    if status:
        query = query.where(ReconException.status == status)
    if kind:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
        query = query.where(ReconException.kind == kind)
    return list(query)


def get_exception(exception_id: int) -> tuple[ReconException, list[ReconEvent]]:
    row = ReconException.get_or_none(ReconException.id == exception_id)
    if row is None:
        raise UnknownException(f"no exception {exception_id}")
    events = list(ReconEvent.select().where(ReconEvent.exception_id == exception_id).order_by(ReconEvent.id))
    return row, events


def resolve(database, exception_id: int, note: str, by: str, now: datetime) -> ReconException:
    """A clerk resolves an open exception, with a note; resolving twice is refused (ValueError)."""
    with database.atomic():
        row, _ = get_exception(exception_id)
        if row.status == "resolved":
            raise ValueError(f"exception {exception_id} is already resolved")
        ReconException.update(status="resolved").where(ReconException.id == exception_id).execute()
        _event(exception_id, utc_text(now), by, "resolved", note)
    return ReconException.get_by_id(exception_id)
