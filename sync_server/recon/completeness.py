"""Completeness: every entry a station recorded has arrived.

- ``seq_gap``: a station's entries, by seq, skip numbers (``LAG(seq)`` over each station's entries), or the bank
  acknowledged entries it does not hold (``station.acked_seq`` above the highest seq held);
- ``missing_tail``: the station signed that its journal goes further than what the bank holds (``tail``);
- ``station_silent``: an active station has not synced for longer than ``recon.station_silent_hours``;
- ``station_revoked``: a revoked station (stolen, lost, retired): when, how far the bank holds its journal, and how
  many entries its last verified tail claim names beyond that (they never arrived: the device or a backup holds
  them, ``sync-server journal import``). Located at the station alone, so it keeps its id as entries arrive.

``proof`` says per station what the bank holds and whether the chain from genesis to its head was proved
(``integrity`` verifies the head's signature).
"""

from __future__ import annotations

from datetime import timedelta

from station.protocol.times import parse_utc, utc_text
from sync_server.recon import tail
from sync_server.recon.kinds import Discrepancy


def seq_gaps(context) -> list[Discrepancy]:
    """Gaps in each station's seq numbers, and acknowledged entries the bank does not hold."""
    found = []
    rows = context.rows("""
        SELECT station_id, previous, seq, day FROM (
            SELECT station_id, seq, day, LAG(seq, 1, 0) OVER (PARTITION BY station_id ORDER BY seq) AS previous
            FROM recon_fact) ordered
        WHERE seq <> previous + 1""")
    for station_id, previous, seq, day in rows:
        found.append(_gap(station_id, previous + 1, seq - 1, day))
    where, params = context.station_filter("s.station_id")
    rows = context.rows(f"""
        SELECT s.station_id, s.acked_seq, COALESCE(MAX(f.seq), 0) FROM station s
        LEFT JOIN recon_fact f ON f.station_id = s.station_id
        WHERE 1 = 1{where} GROUP BY s.station_id, s.acked_seq HAVING s.acked_seq > COALESCE(MAX(f.seq), 0)""",
                        params)
    for station_id, acked, held in rows:
        found.append(_gap(station_id, held + 1, acked, None))
    return found


def _gap(station_id: str, first: int, last: int, day: str | None) -> Discrepancy:
    return Discrepancy("seq_gap", station=station_id, seq=first, day=day,
                       detail={"first": first, "last": last, "missing": last - first + 1})


def silent_stations(context) -> list[Discrepancy]:
    """Active stations whose last sync (or enrollment) is older than the policy allows."""
    hours = int(context.recon_policy["station_silent_hours"])
    where, params = context.station_filter()
    rows = context.rows(f"""
        SELECT station_id, COALESCE(last_sync_at, enrolled_at) FROM station
        WHERE status = 'active'{where} AND COALESCE(last_sync_at, enrolled_at) IS NOT NULL""", params)
    found = []
    cutoff = context.now - timedelta(hours=hours)
    for station_id, since in rows:
        # Compared as times, not as text: older releases stored another form.
        moment = parse_utc(since)
        if moment < cutoff:
            found.append(Discrepancy("station_silent", station=station_id, detail={
                "since": utc_text(moment), "hours": int((context.now - moment).total_seconds() // 3600),
                "limit": hours}))
    return found


def revoked_stations(context) -> list[Discrepancy]:
    """Revoked stations, with what of their journal never arrived (``context.tail_claims``: run ``tail.checks``
    first)."""
    where, params = context.station_filter("s.station_id")
    rows = context.rows(f"""
        SELECT s.station_id, s.revoked_at, COALESCE(MAX(f.seq), 0) FROM station s
        LEFT JOIN recon_fact f ON f.station_id = s.station_id
        WHERE s.status = 'revoked'{where} GROUP BY s.station_id, s.revoked_at ORDER BY s.station_id""", params)
    found = []
    for station_id, revoked_at, held in rows:
        claimed = max(held, context.tail_claims.get(station_id, 0))
        found.append(Discrepancy("station_revoked", station=station_id, detail={
            "revoked_at": utc_text(parse_utc(revoked_at)) if revoked_at else None, "held": held,
            "claimed": claimed, "missing": claimed - held}))
    return found


def checks(context) -> list[Discrepancy]:
    """Every completeness discrepancy of the run's scope."""
    return seq_gaps(context) + tail.checks(context) + silent_stations(context) + revoked_stations(context)


def proof(context) -> list[dict]:
    """Per station in scope: entries held, the highest seq, what the bank acknowledged, and whether the head's
    signature verified and its chain from genesis held (``context.heads_verified``, set by the integrity checks;
    None when the bank holds no entry of the station)."""
    where, params = context.station_filter("s.station_id")
    rows = context.rows(f"""
        SELECT s.station_id, s.status, s.acked_seq, COUNT(f.seq), COALESCE(MAX(f.seq), 0) FROM station s
        LEFT JOIN recon_fact f ON f.station_id = s.station_id
        WHERE 1 = 1{where} GROUP BY s.station_id, s.status, s.acked_seq ORDER BY s.station_id""", params)
    verified = context.heads_verified
    return [{"station": station_id, "status": status, "entries": count, "held_to": held, "acked_seq": acked,
             # Proved: the chain from seq 1 to the head, without a gap, held and the head's signature verified.
             "head_verified": bool(verified.get(station_id)) and count == held if count else None}
            for station_id, status, acked, count, held in rows]
