"""One-time unlock codes the bank's staff read out over the phone (``sync-server agents unlock-code``).

A code unlocks one agent at one station that has no network: the station derives the same 8 digits from its own
key (``station.protocol.unlock_codes``, ``station.bank_unlock``). Each code the bank issues takes the station's
next counter and leaves an ``unlock_code`` event in the station's audit trail (who asked, why, for which agent,
at which counter), in the same transaction. When the station syncs, its ``agent_unlocked`` entry names the
counter, and the posting rules accept it only if this audit trail holds that code (``code_issued``).
"""

from __future__ import annotations

import unicodedata
from datetime import datetime

from station.protocol.entry_types import EntryType
from station.protocol.key_codecs import encryption_public_from_jwk
from station.protocol.tokens import unverified_payload
from station.protocol.unlock_codes import unlock_code, unlock_key
from sync_server.db import Entry, Station, StationEvent, db_proxy, is_postgres
from sync_server.keys import ServerKeys
from sync_server.lifecycle import (
    MAX_NAME_CHARS,
    MAX_REASON_CHARS,
    LifecycleError,
    existing_station,
    operator_text,
    record_event,
)

ACTION = "unlock_code"


def issue_unlock_code(station_id: str, agent_id: str, *, by: str, reason: str, keys: ServerKeys,
                      now: datetime | None = None) -> tuple[int, str]:
    """(counter, code) of the next unlock code for ``agent_id`` at ``station_id``, recorded in its audit trail.

    ``LifecycleError`` for a station the bank does not know, has revoked or has no encryption key for (never
    enrolled), an agent the station has not reported adding (``agent_known``), or a missing name or reason."""
    agent_id = unicodedata.normalize("NFKC", agent_id or "").strip().upper()
    by = operator_text(by, "your name (--by)", MAX_NAME_CHARS)
    reason = operator_text(reason, "the reason (--reason)", MAX_REASON_CHARS)
    with db_proxy.atomic():
        existing_station(station_id)
        if not agent_known(station_id, agent_id):
            raise LifecycleError(f"The bank has no record of an agent {agent_id} at station {station_id} (its "
                                 "agent_added entry has not reached the bank): check the ID the screen shows.")
        query = Station.select().where(Station.station_id == station_id)
        # Two codes issued at once for one station take two counters (PostgreSQL: the row lock orders them).
        station = (query.for_update() if is_postgres() else query).get()
        if station.status == "revoked":
            raise LifecycleError(f"Station {station_id} is revoked: it cannot be unlocked.")
        try:
            station_key = encryption_public_from_jwk(station.encryption_jwk or {})
            key = unlock_key(keys.encryption_key, station_key, station_id, agent_id)
        except ValueError as exc:
            raise LifecycleError(f"Station {station_id} has not enrolled: it holds no key to check a code.") from exc
        counter = StationEvent.select().where(
            (StationEvent.station_id == station_id) & (StationEvent.action == ACTION)).count() + 1
        record_event(station_id, ACTION, by, reason, {"agent": agent_id, "counter": counter}, now=now)
    return counter, unlock_code(key, counter)


def agent_known(station_id: str, agent_id: str) -> bool:
    """Whether an ``agent_added`` entry of ``station_id`` that the bank acknowledged names ``agent_id``."""
    tokens = Entry.select(Entry.token).where((Entry.station_id == station_id) & (Entry.type == EntryType.AGENT_ADDED)
                                             & (Entry.outcome == "acknowledged")).tuples()
    return any(unverified_payload(token).get("agent") == agent_id for (token,) in tokens)


def code_issued(station_id: str, agent_id, counter) -> bool:
    """Whether the bank issued the unlock code of ``counter`` for ``agent_id`` at ``station_id``."""
    events = StationEvent.select(StationEvent.detail).where(
        (StationEvent.station_id == station_id) & (StationEvent.action == ACTION))
    return {"agent": agent_id, "counter": counter} in [event.detail for event in events]
