"""The technician's override for a clock that ran ahead and was then set right: ``station clock show`` and
``station clock accept``.

A clock that ran ahead (fake-hwclock restoring a later boot's time, a GPS glitch, a typo) and was then set right
reads earlier than what the station wrote down meanwhile, its clock floor, and the station records nothing
(``station.device_state``, state ``clock_wrong``) until real time catches up, possibly days. The station cannot
tell that clock from one set back; the technician can, against a phone. ``read_clock`` is what they look at;
``accept_clock`` is their word that the clock is right now, in one write transaction:

- a ``clock_corrected`` entry, stamped with the clock as it reads now, names the floor and how far the clock was
  behind it (``station.protocol.clock_corrections``, the rule the bank checks too); it is the one entry that does
  not keep the floor (``append_entry(keep_floor=False)``): it is the journal's last entry, at the clock;
- every other part of the floor ahead of the clock comes back to it: the kept floor (``clock_floor``), the last
  sync (``last_sync_at``), the link's times (``station.link.bring_times_back``), and the last failed sync's time
  with them (the screens show it); the bank's time offset measured by the clock ahead is dropped;
- every agent's session ends (each was started by the clock ahead, and is measured by it);
- the setting ``clock_corrected`` = ``{"at", "seq", "floor", "sync_unknown"}`` keeps it. ``sync_unknown``: the
  moment the offline age counts from (the last sync, or the start entry of a station that never synced) was
  stamped by the clock ahead, so when the station last heard from the bank is unknown; offline debits then wait
  for the next sync (``station.limits.offline_age_unknown``), and a second correction before that sync keeps it.

It refuses (nothing written) unless the clock is wrong: ``ClockNotSet`` (network time first), ``ClockNotBehind``
(nothing to correct). A revoked station may still correct its clock, as it may still unlock an agent: the
correction records no operation. The bank sees every correction: the entry syncs like any other, recon lists it
(``clock_corrected``), and the clock offset the bank measures at each sync shows whether the clock really was right.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from station import errors
from station.agents import end_all_agent_sessions
from station.context import Station, bound_station
from station.device_state import (
    CLOCK_CORRECTED_SETTING,
    KEPT_FLOOR_SETTING,
    DeviceState,
    clock_floor_parts,
    clock_state,
)
from station.journal import append_entry
from station.limits import offline_since
from station.link import bring_times_back
from station.protocol.clock_corrections import behind_ms, correction_problem
from station.protocol.entry_types import EntryType, one_line
from station.protocol.times import parse_utc, utc_text

#: The longest reason the technician may type (one line; the entry's ``reason``).
MAX_REASON = 200


@dataclass(frozen=True)
class ClockReading:
    """What ``station clock show`` shows: the clock, the floor and its parts, the state, the last correction."""

    now: datetime
    state: DeviceState
    floor: datetime | None
    #: Each part of the floor by name (``station.device_state.clock_floor_parts``), None where not written yet.
    parts: dict[str, datetime | None]
    #: The setting ``clock_corrected``, or None.
    last_correction: dict | None

    @property
    def behind(self) -> timedelta | None:
        """How far the clock reads behind the floor (negative: ahead of it), or None without a floor."""
        return None if self.floor is None else self.floor - self.now


@dataclass(frozen=True)
class Correction:
    """A recorded clock correction."""

    seq: int
    at: datetime
    floor: datetime
    behind_ms: int
    sync_unknown: bool
    #: The parts of the floor that were ahead of the clock (``clock_floor_parts``' names).
    brought_back: tuple[str, ...]


@bound_station
def read_clock(st: Station) -> ClockReading:
    """The clock now, the floor and its parts, the state by the clock alone (``clock_state``)."""
    parts = clock_floor_parts(st)
    floor = max([moment for moment in parts.values() if moment is not None], default=None)
    return ClockReading(st.now(), clock_state(st), floor, parts, st.setting(CLOCK_CORRECTED_SETTING))


def clean_reason(reason: str | None) -> str | None:
    """The technician's reason as the entry carries it (one line, spaces trimmed), None for none; refuses one that
    is longer than ``MAX_REASON`` or holds a character that cannot be printed (``InvalidClockReason``)."""
    if reason is None or not str(reason).strip():
        return None
    text = one_line(reason, MAX_REASON)
    if text is None:
        raise errors.InvalidClockReason(limit=MAX_REASON)
    return text


def _to_the_millisecond(moment: datetime) -> datetime:
    """``moment`` as the journal writes it (``utc_text`` keeps milliseconds), so the entry's ``ts`` is its time."""
    return parse_utc(utc_text(moment))


@bound_station
def accept_clock(st: Station, reason: str | None = None) -> Correction:
    """The technician's word that the clock is right now (module docstring); ``ClockNotSet``, ``ClockNotBehind``,
    ``InvalidClockReason``, ``StorageFull``, ``StationBusy`` (nothing written)."""
    reason = clean_reason(reason)
    with st.write():
        state = clock_state(st)
        if state is DeviceState.CLOCK_NOT_SET:
            raise errors.ClockNotSet()
        if state is not DeviceState.CLOCK_WRONG:
            raise errors.ClockNotBehind()
        now = _to_the_millisecond(st.now())
        parts = clock_floor_parts(st)
        floor = _to_the_millisecond(max(moment for moment in parts.values() if moment is not None))
        body = {"floor": utc_text(floor), "behind_ms": behind_ms(floor, now), "by": "technician"}
        if reason:
            body["reason"] = reason
        if correction_problem({**body, "ts": utc_text(now)}) is not None:
            # Behind by the tolerance and less than a millisecond more: right by the journal's milliseconds.
            raise errors.ClockNotBehind()
        previous = st.setting(CLOCK_CORRECTED_SETTING) or {}
        sync_unknown = offline_since(st) > now or bool(previous.get("sync_unknown"))
        entry = append_entry(st, EntryType.CLOCK_CORRECTED, now, body, keep_floor=False)
        ahead = tuple(name for name, moment in parts.items() if moment is not None and moment > now)
        if "kept" in ahead:
            st.set_setting(KEPT_FLOOR_SETTING, utc_text(now))
        if "last_sync" in ahead:
            st.set_setting("last_sync_at", utc_text(now))
            # Measured against the clock ahead: it would put the bank's time days back (``station.online``).
            st.delete_setting("server_time_offset_ms")
        bring_times_back(st, now)
        failure = st.setting("last_sync_failure") or {}
        if failure.get("at") and parse_utc(failure["at"]) > now:
            st.set_setting("last_sync_failure", {**failure, "at": utc_text(now)})
        end_all_agent_sessions(st)
        st.set_setting(CLOCK_CORRECTED_SETTING, {"at": utc_text(now), "seq": entry.seq, "floor": utc_text(floor),
                                                 "sync_unknown": sync_unknown})
    return Correction(entry.seq, now, floor, body["behind_ms"], sync_unknown, ahead)
