"""May this device record anything new now? Three states say no: the bank revoked it, its storage is full, or its
clock is not set.

- **Revoked**: the bank refused a sync with ``urn:station-kit:problem:station-revoked``; ``station.sync`` then
  keeps the setting ``revoked`` = ``{"at": ..., "detail": ...}`` (cleared only by an ack that verifies with the
  bank's pinned key, since the refusal itself is not signed).
- **Storage full**: a write failed for want of room, or the data folder's file system is below its reserve
  (``station.storage``); it ends by itself when space is back.
- **Clock not set**: a Raspberry Pi has no real-time clock. Until network time arrives its clock reads 1970, or
  the time fake-hwclock saved before the last shutdown. A clock before ``EARLIEST_PLAUSIBLE_TIME`` (no device
  of this release runs before the release was built) or before the journal's last entry would sign entries
  with a wrong time, so nothing is recorded until the clock is set.

``refuse_new_operations`` is the one check; the write paths that record something new call it (customer
operations in ``station.writepath``, day open and close in ``station.business_day``, customer voice in
``station.feedback``), and the UI before an operation's first step. A replayed operation still answers with its
receipt; reprinting a receipt and the day's receipt list write no entry and stay available. Wrong-PIN entries
are still journaled: a lockout must not wait for the clock. The clock rules here are deliberately simple
(issue #13 refines them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from station import errors
from station.context import Station
from station.db import JournalEntry
from station.storage import storage_full

#: No clock reads earlier than this on a device of this release (its build month). Raise it with each release.
EARLIEST_PLAUSIBLE_TIME = datetime(2026, 10, 1, tzinfo=UTC)


class DeviceState(StrEnum):
    READY = "ready"
    REVOKED = "revoked"
    STORAGE_FULL = "storage_full"
    CLOCK_NOT_SET = "clock_not_set"


def clock_not_set(now: datetime, last_entry_at: datetime | None = None) -> bool:
    """True when ``now`` cannot be the real time: before this release, or before the journal's last entry."""
    return now < EARLIEST_PLAUSIBLE_TIME or (last_entry_at is not None and now < last_entry_at)


def last_entry_at(st: Station) -> datetime | None:
    """When the journal's last entry was recorded (by the clock of that moment), or None for an empty journal."""
    row = st.db.execute_sql("SELECT recorded_at FROM journal_entry ORDER BY seq DESC LIMIT 1").fetchone()
    return JournalEntry.recorded_at.python_value(row[0]) if row else None


def revocation(st: Station) -> dict | None:
    """``{"at": ..., "detail": ...}`` once the bank has refused this station as revoked, else None."""
    return st.setting("revoked") or None


def device_state(st: Station) -> DeviceState:
    """Revoked first (it is final), then storage, then the clock."""
    if revocation(st) is not None:
        return DeviceState.REVOKED
    if storage_full(st):
        return DeviceState.STORAGE_FULL
    if clock_not_set(st.now(), last_entry_at(st)):
        return DeviceState.CLOCK_NOT_SET
    return DeviceState.READY


def refuse_new_operations(st: Station) -> None:
    """Raise ``StationRevoked``, ``StorageFull`` or ``ClockNotSet`` unless this device may record a new operation
    now."""
    state = device_state(st)
    if state is DeviceState.REVOKED:
        raise errors.StationRevoked()
    if state is DeviceState.STORAGE_FULL:
        raise errors.StorageFull()
    if state is DeviceState.CLOCK_NOT_SET:
        raise errors.ClockNotSet()
