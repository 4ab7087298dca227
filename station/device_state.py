"""May this device record anything new now? Four states say no: the bank revoked it, its storage is full, its
clock is not set, or its clock is wrong.

- **Revoked**: the bank refused a sync with ``urn:station-kit:problem:station-revoked``; ``station.sync`` then
  keeps the setting ``revoked`` = ``{"at": ..., "detail": ...}`` (cleared only by an ack that verifies with the
  bank's pinned key, since the refusal itself is not signed).
- **Storage full**: a write failed for want of room, or the data folder's file system is below its reserve
  (``station.storage``); it ends by itself when space is back.
- **Clock not set**: a Raspberry Pi has no real-time clock. Until network time arrives its clock reads 1970, or
  a time before ``EARLIEST_PLAUSIBLE_TIME`` (no device of this release runs before the release was built):
  nothing is recorded until network time sets it.
- **Clock wrong**: the clock reads earlier than the latest moment the device already wrote down by its own clock
  (``clock_floor``: the journal's last entry, the last sync, the last attempt to reach the bank), by more than
  ``CLOCK_TOLERANCE``. Someone set it back (or fake-hwclock restored a stale time after network time had moved
  on): entries would be signed with a wrong time, and every rule measured in time (the offline age limit, the
  daily limits, agent sessions) would stretch. Nothing is recorded until a technician sets the clock right.

The floor includes the bank contacts because the journal alone is not enough: a station that recorded nothing for
three days, its clock then set back to just after its last entry, would look freshly synced to the 72-hour
offline age limit. ``station serve`` notes an attempt to reach the bank at least every ``probe_seconds`` and every
failure at once (``station.link``), so the floor follows the running device's clock closely; a device switched
off for days and started with its clock set back cannot be caught by itself, and is caught by the bank, which
measures the clock offset at every sync (``sync-server station list`` flags it; recon ``clock_offset``).

``refuse_new_operations`` is the one check for new operations; the write paths that record something new call it
(customer operations in ``station.writepath``, day open and close in ``station.business_day``, customer voice in
``station.feedback``), and the UI before an operation's first step. ``refuse_wrong_clock`` is the clock half alone,
for the journaled writes a revoked station still makes (adding or unlocking an agent). A replayed operation still
answers with its receipt; reprinting a receipt and the day's receipt list write no entry and stay available.
Two entries are still journaled whatever the clock, because security must not wait for the technician: wrong PINs
(a lockout) and a key rotation (the bank may ask for one because it suspects the key); each carries the clock it
read, and the bank sees the offset.

**A clock that ran ahead, then was set right** (fake-hwclock restoring a time from a later boot, a GPS glitch, a
typo) is the same state seen from the other side: the floor is what the device wrote down while its clock was
ahead, and the clock, now right, would wait until real time catches up with it, possibly days. Only a person can
tell the two apart, so the technician decides: ``station clock show`` shows the clock, the floor and each of its
parts; ``station clock accept`` (``station.clock.accept_clock``) journals a ``clock_corrected`` entry naming the
floor and how far the clock was behind it, and brings every part of the floor ahead of the clock back to it (the
one entry ``keep_clock_floor`` does not keep the floor for). The setting ``clock_corrected`` keeps the last
correction; its ``sync_unknown`` is true when the last sync was stamped by the clock ahead, which says nothing true
about when the station last heard from the bank: offline debits then wait for a sync (``station.limits``), so a
correction never stretches the offline age limit. The bank sees every correction (recon ``clock_corrected``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from station import errors
from station.context import Station
from station.db import JournalEntry
from station.link import LINK_SETTING
from station.protocol.clock_corrections import CLOCK_TOLERANCE
from station.protocol.times import parse_utc, utc_text
from station.storage import storage_full

#: No clock reads earlier than this on a device of this release (its build month). Raise it with each release.
EARLIEST_PLAUSIBLE_TIME = datetime(2026, 10, 1, tzinfo=UTC)
#: The floor kept when an entry is stamped a little behind it (``refuse_wrong_clock``).
KEPT_FLOOR_SETTING = "clock_floor"
#: The last clock correction (``station.clock``): ``{"at", "seq", "floor", "sync_unknown"}``.
CLOCK_CORRECTED_SETTING = "clock_corrected"


class DeviceState(StrEnum):
    READY = "ready"
    REVOKED = "revoked"
    STORAGE_FULL = "storage_full"
    CLOCK_NOT_SET = "clock_not_set"
    CLOCK_WRONG = "clock_wrong"


def clock_not_set(now: datetime) -> bool:
    """True when ``now`` cannot be the real time because it is before this release (network time has not come)."""
    return now < EARLIEST_PLAUSIBLE_TIME


def clock_behind(now: datetime, floor: datetime | None) -> bool:
    """True when ``now`` is earlier than ``floor`` (``clock_floor``) by more than ``CLOCK_TOLERANCE`` (5 s: NTP steps
    a drifting clock back by a fraction of a second; declared in ``station.protocol.clock_corrections``, where the
    bank reads it too)."""
    return floor is not None and now < floor - CLOCK_TOLERANCE


def last_entry_at(st: Station) -> datetime | None:
    """When the journal's last entry was recorded (by the clock of that moment), or None for an empty journal."""
    row = st.db.execute_sql("SELECT recorded_at FROM journal_entry ORDER BY seq DESC LIMIT 1").fetchone()
    return JournalEntry.recorded_at.python_value(row[0]) if row else None


def clock_floor_parts(st: Station) -> dict[str, datetime | None]:
    """Each moment the floor is the latest of, by name (None: not written yet): ``last_entry`` (the journal's last
    entry), ``last_sync`` (setting ``last_sync_at``), ``latest_attempt`` (the link setting's ``latest_attempt_at``)
    and ``kept`` (setting ``clock_floor``, ``keep_clock_floor``)."""
    link = st.setting(LINK_SETTING) or {}
    noted = {"last_sync": st.setting("last_sync_at"), "latest_attempt": link.get("latest_attempt_at"),
             "kept": st.setting(KEPT_FLOOR_SETTING)}
    return {"last_entry": last_entry_at(st),
            **{name: parse_utc(text) if text else None for name, text in noted.items()}}


def clock_floor(st: Station) -> datetime | None:
    """The latest moment this device wrote down by its own clock (module docstring): the journal's last entry, the
    last sync, the last attempt to reach the bank; None for a device that has written none."""
    return max([moment for moment in clock_floor_parts(st).values() if moment is not None], default=None)


def revocation(st: Station) -> dict | None:
    """``{"at": ..., "detail": ...}`` once the bank has refused this station as revoked, else None."""
    return st.setting("revoked") or None


def device_state(st: Station) -> DeviceState:
    """Revoked first (it is final), then storage, then the clock."""
    if revocation(st) is not None:
        return DeviceState.REVOKED
    if storage_full(st):
        return DeviceState.STORAGE_FULL
    return clock_state(st)


def clock_state(st: Station) -> DeviceState:
    """``CLOCK_NOT_SET``, ``CLOCK_WRONG`` or ``READY``, by the clock alone."""
    now = st.now()
    if clock_not_set(now):
        return DeviceState.CLOCK_NOT_SET
    if clock_behind(now, clock_floor(st)):
        return DeviceState.CLOCK_WRONG
    return DeviceState.READY


def refuse_wrong_clock(st: Station) -> None:
    """Raise ``ClockNotSet`` or ``ClockWrong`` unless the clock may stamp a new journal entry.

    A clock behind the floor but within ``CLOCK_TOLERANCE`` may; the entry then keeps the floor
    (``keep_clock_floor``), so that it does not lower it although stamped a little earlier: steps back within the
    tolerance never add up to a clock set back."""
    state = clock_state(st)
    if state is DeviceState.CLOCK_NOT_SET:
        raise errors.ClockNotSet()
    if state is DeviceState.CLOCK_WRONG:
        raise errors.ClockWrong()


def keep_clock_floor(st: Station, moment: datetime) -> None:
    """Keep the floor (setting ``clock_floor``) when an entry is about to be stamped ``moment``, earlier than it;
    inside the caller's write. ``station.journal.append_entry`` calls it for every entry, so that the entries
    journaled whatever the clock (wrong PINs, a key rotation) never lower the floor: the journal's last entry is
    one of the floor's parts, and a wrong PIN typed while the clock is wrong would otherwise make it right."""
    floor = clock_floor(st)
    if floor is not None and moment < floor:
        st.set_setting(KEPT_FLOOR_SETTING, utc_text(floor))


def refuse_new_operations(st: Station) -> None:
    """Raise ``StationRevoked``, ``StorageFull``, ``ClockNotSet`` or ``ClockWrong`` unless this device may record a
    new operation now."""
    if revocation(st) is not None:
        raise errors.StationRevoked()
    if storage_full(st):
        raise errors.StorageFull()
    refuse_wrong_clock(st)
