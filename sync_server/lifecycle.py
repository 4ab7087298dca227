"""A station's life at the bank after enrollment: its keys, its audit trail, its fork flag, key rotation requests.

- ``station_keyset``: the one place the bank's trust anchor for a station's signatures is read: every key the bank
  holds for it (``StationKey``), never keys that came with what is being verified (an export's ``jwks.json``).
- ``record_event``: every operator action on a station leaves a ``StationEvent`` (append-only in the database:
  triggers refuse UPDATE and DELETE), written in the same transaction as the change it records.
- ``station_report`` (``sync-server station show``): everything the bank knows about a station, its last clock
  correction (``last_clock_correction``), and for a flagged one the fork it refused, both contents side by side
  (``explain_fork``).
- ``clear_flag``: the only way out of a fork flag, with a reason and a name (``flag_cleared`` event).
- Key age: the server policy's ``max_key_age_days`` (0: no maximum) and ``Station.rotate_requested`` decide
  ``rotation_due``, which the downlink reports to the station as ``"rotate_key": true``.

Text an operator types (a reason, a name) must be printable and not empty (``operator_text``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from joserfc.jwk import KeySet

from station.protocol.times import parse_utc, utc_text
from station.protocol.tokens import unverified_payload, verification_jwk
from sync_server.db import (
    Entry,
    ServerSetting,
    Station,
    StationEvent,
    StationFork,
    StationKey,
    StationTail,
    arg,
    cached_execute,
    cached_row,
    cached_rows,
    db_proxy,
)
from sync_server.policy import clock_offset_flagged, server_policy

#: How many of a station's latest events ``station show`` lists.
RECENT_EVENTS = 20
#: The longest reason and name an operator may type.
MAX_REASON_CHARS = 500
MAX_NAME_CHARS = 100


class LifecycleError(RuntimeError):
    """An operator request about a station that cannot be done (the message says why and what to do)."""


def operator_text(value: str | None, what: str, limit: int) -> str:
    """``value`` stripped, refused when empty, longer than ``limit`` or holding characters that are not printable."""
    text = (value or "").strip()
    if not text:
        raise LifecycleError(f"Give {what}: it is kept in the station's audit trail.")
    if len(text) > limit:
        raise LifecycleError(f"{what.capitalize()} is at most {limit} characters.")
    if not text.isprintable():
        raise LifecycleError(f"{what.capitalize()} may hold printable characters only (no control characters).")
    return text


def record_event(station_id: str, action: str, by: str, reason: str = "", detail: dict | None = None,
                 now: datetime | None = None) -> None:
    """Append one entry to the station's audit trail (call it inside the transaction of the change)."""
    StationEvent.create(station_id=station_id, at=utc_text(now or datetime.now(UTC)), by=by, action=action,
                        reason=reason, detail=detail)


def existing_station(station_id: str) -> Station:
    """The station, or :class:`LifecycleError` naming the id the bank does not know."""
    station = Station.get_or_none(Station.station_id == station_id)
    if station is None:
        raise LifecycleError(f"The bank knows no station {station_id}.")
    return station


# -- keys ---------------------------------------------------------------------------------------------------
def station_keys(station_id: str) -> list[StationKey]:
    """Every signing key the bank holds for the station, oldest first (by the seq it signs from)."""
    return list(cached_rows("station keys", lambda: StationKey.select().where(StationKey.station_id == arg())
                            .order_by(StationKey.from_seq, StationKey.created_at), station_id))


def station_keyset(station_id: str) -> KeySet:
    """The station's public signing keys as the bank knows them: the trust anchor for its tokens.

    Every key it ever had verifies (a receipt signed before a rotation keeps verifying); which key may sign which
    seqs is the chain's to check (``key_rotation`` entries), not the key set's.
    """
    return KeySet.import_key_set({"keys": [verification_jwk(key.jwk) for key in station_keys(station_id)]})


def current_key(station_id: str) -> StationKey | None:
    """The key the station signs with now: the one with the highest ``from_seq``."""
    return cached_row("current station key", lambda: StationKey.select().where(StationKey.station_id == arg())
                      .order_by(StationKey.from_seq.desc(), StationKey.created_at.desc()).limit(1), station_id)


# -- key age and rotation requests -----------------------------------------------------------------------
def max_key_age_days(policy: dict) -> int:
    """The policy's maximum key age in days (0: keys never age out)."""
    return int(policy.get("max_key_age_days") or 0)


def key_too_old(key: StationKey | None, policy: dict, now: datetime) -> bool:
    """Whether ``key`` was recorded longer ago than the policy's maximum key age."""
    days = max_key_age_days(policy)
    return bool(days and key is not None and parse_utc(key.created_at) < now - timedelta(days=days))


def rotation_due(station_id: str, policy: dict, now: datetime) -> bool:
    """Whether the station's downlink tells it to rotate its key: the bank asked, or its key is past the maximum age.

    Read from the database as it is now: called after a batch's entries are applied, so a key rotation among them
    (which fulfils the request and brings a new current key) is seen, and the ack does not ask again.
    """
    asked = cached_execute("station rotate requested", lambda: Station.select(Station.rotate_requested).where(
        Station.station_id == arg()).limit(1), station_id).fetchall()
    return bool(asked and asked[0][0]) or key_too_old(current_key(station_id), policy, now)


def request_rotation(station_ids: list[str], by: str, now: datetime | None = None) -> list[str]:
    """Ask active stations to rotate their keys (with their next sync); all or none. Returns the ids asked."""
    by = operator_text(by, "your name (--by)", MAX_NAME_CHARS)
    now = now or datetime.now(UTC)
    with db_proxy.atomic():
        for station_id in station_ids:
            station = existing_station(station_id)
            if station.status != "active":
                raise LifecycleError(f"Station {station_id} is {station.status}: only an enrolled, active station "
                                     f"syncs and can rotate its key. Nothing was changed.")
        for station_id in dict.fromkeys(station_ids):
            Station.update(rotate_requested=True).where(Station.station_id == station_id).execute()
            record_event(station_id, "rotation_requested", by, now=now)
    return list(dict.fromkeys(station_ids))


def set_max_key_age(days: int) -> None:
    """Store the server policy's maximum key age (days; 0: none), keeping every other setting."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise LifecycleError("The maximum key age is a whole number of days, 0 for none.")
    with db_proxy.atomic():
        row = ServerSetting.get_or_none(ServerSetting.key == "policy")
        value = {**(row.value if row else {}), "max_key_age_days": days}
        ServerSetting.insert(key="policy", value=value).on_conflict(
            conflict_target=[ServerSetting.key], update={ServerSetting.value: value}).execute()


def rotations_due(now: datetime | None = None) -> list[dict]:
    """Active stations the downlink tells to rotate: asked by an operator, or their current key past the maximum
    age. Each with its current key, that key's age in days, and why."""
    now = now or datetime.now(UTC)
    policy = server_policy()
    current: dict[str, StationKey] = {}
    active = Station.select(Station.station_id).where(Station.status == "active")
    for key in StationKey.select().where(StationKey.station_id.in_(active)).order_by(StationKey.from_seq):
        current[key.station_id] = key
    due = []
    for station in Station.select().where(Station.status == "active").order_by(Station.station_id):
        key = current.get(station.station_id)
        too_old = key_too_old(key, policy, now)
        if not (too_old or station.rotate_requested):
            continue
        why = [w for w, yes in (("asked", station.rotate_requested), ("too old", too_old)) if yes]
        due.append({"station_id": station.station_id, "kid": key.kid if key else None,
                    "key_created_at": key.created_at if key else None,
                    "key_age_days": (now - parse_utc(key.created_at)).days if key else None,
                    "max_key_age_days": max_key_age_days(policy), "why": why})
    return due


# -- the fork flag -------------------------------------------------------------------------------------------
def clear_flag(station_id: str, reason: str, by: str, now: datetime | None = None) -> str:
    """Clear the station's fork flag after an operator has looked; returns the flag's reason as it was.

    The station's next honest sync is accepted again; what it sends is checked against what the bank holds, as
    always, so a device that still holds the other history is refused and flagged again.
    """
    reason = operator_text(reason, "the reason (--reason)", MAX_REASON_CHARS)
    by = operator_text(by, "your name (--by)", MAX_NAME_CHARS)
    with db_proxy.atomic():
        station = existing_station(station_id)
        if not station.flagged:
            raise LifecycleError(f"Station {station_id} is not flagged: there is nothing to clear.")
        cleared = Station.update(flagged=False, flag_reason=None).where(
            (Station.station_id == station_id) & (Station.flagged == True)).execute()  # noqa: E712
        if cleared != 1:
            raise LifecycleError(f"Station {station_id} is not flagged: there is nothing to clear.")
        record_event(station_id, "flag_cleared", by, reason, {"flag_reason": station.flag_reason}, now=now)
    return station.flag_reason or ""


def _payload(token: str | None) -> dict:
    """A token's payload for display (``{}`` when there is none, the raw text when it cannot be decoded)."""
    if token is None:
        return {}
    try:
        payload = unverified_payload(token)
    except (ValueError, IndexError, AttributeError):
        return {"(not a token)": token[:80]}
    return payload if isinstance(payload, dict) else {"(not an object)": payload}


_ABSENT = object()


def explain_fork(fork: StationFork) -> dict:
    """A refused fork: its seq and reason, and the two contents field by field, the differing ones marked.

    ``held``: what the bank holds at that seq (an entry, or the station's earlier signed journal end), ``offered``:
    what the station sent there. A side the bank holds nothing for is empty.
    """
    held, offered = _payload(fork.held_token), _payload(fork.offered_token)
    fields = []
    for name in sorted(set(held) | set(offered)):
        mine, theirs = held.get(name, _ABSENT), offered.get(name, _ABSENT)
        fields.append({"field": name, "held": None if mine is _ABSENT else mine,
                       "offered": None if theirs is _ABSENT else theirs, "differs": mine != theirs})
    return {"seq": fork.seq, "reason": fork.reason, "detected_at": fork.detected_at,
            "held_token": fork.held_token, "offered_token": fork.offered_token, "fields": fields,
            "differing": [field["field"] for field in fields if field["differs"]]}


# -- station show ----------------------------------------------------------------------------------------
def last_clock_correction(station_id: str) -> dict | None:
    """The station's last clock correction the bank acknowledged (a ``clock_corrected`` entry: the technician
    accepted a clock that had run ahead), as its signed token says it: ``seq``, ``ts`` (the clock accepted),
    ``floor``, ``behind_ms``, ``reason`` (or None) and when the bank received it; None when there is none."""
    row = (Entry.select(Entry.seq, Entry.token, Entry.received_at)
           .where((Entry.station_id == station_id) & (Entry.type == "clock_corrected")
                  & (Entry.outcome == "acknowledged"))
           .order_by(Entry.seq.desc()).first())
    if row is None:
        return None
    payload = unverified_payload(row.token)  # acknowledged: the registry's shape, checked when it came
    return {"seq": row.seq, "ts": payload["ts"], "floor": payload["floor"], "behind_ms": payload["behind_ms"],
            "reason": payload.get("reason"), "received_at": row.received_at}


def station_report(station_id: str, now: datetime | None = None) -> dict:
    """Everything the bank knows about a station (``sync-server station show``)."""
    now = now or datetime.now(UTC)
    station = existing_station(station_id)
    tail = StationTail.get_or_none(StationTail.station_id == station_id)
    events = list(StationEvent.select().where(StationEvent.station_id == station_id)
                  .order_by(StationEvent.id.desc()).limit(RECENT_EVENTS))
    fork = None
    if station.flagged:
        row = (StationFork.select().where(StationFork.station_id == station_id)
               .order_by(StationFork.id.desc()).first())
        fork = explain_fork(row) if row is not None else None
    return {
        "station_id": station.station_id, "name": station.name, "status": station.status,
        "village": station.village, "agent": station.agent,
        "flagged": station.flagged, "flag_reason": station.flag_reason,
        "created_at": station.created_at, "enrolled_at": station.enrolled_at, "revoked_at": station.revoked_at,
        "acked_seq": station.acked_seq, "head": station.head, "synced_seq": station.synced_seq,
        "last_sync_at": station.last_sync_at, "clock_offset_ms": station.clock_offset_ms,
        "clock_wrong": clock_offset_flagged(station.clock_offset_ms, server_policy()),
        "clock_corrected": last_clock_correction(station_id),
        "rotate_requested": station.rotate_requested,
        "rotation_due": station.status == "active" and rotation_due(station_id, server_policy(), now),
        "keys": [{"kid": key.kid, "from_seq": key.from_seq, "source": key.source, "created_at": key.created_at}
                 for key in station_keys(station_id)],
        "tail": ({"seq": tail.seq, "head": tail.head, "received_at": tail.received_at} if tail else None),
        "events": [{"at": e.at, "by": e.by, "action": e.action, "reason": e.reason, "detail": e.detail}
                   for e in reversed(events)],
        "fork": fork,
    }
