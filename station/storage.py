"""Storage full: the station's disk (or its database's page limit) has no room left for a write.

SQLite answers such a write with SQLITE_FULL and rolls the transaction back; a file write (a receipt spool, a key,
``config.json``, a backup) fails with ENOSPC (or EDQUOT). Either way nothing half-written is kept: an operation's
rows and its journal entry are one transaction, files are written to a temporary name and renamed.

What the station does about it:

- the failed write becomes a refusal (``errors.StorageFull``, "Storage is full: call the technician"), never a
  500, and the log says "storage full" once, when the station becomes full (a log line per refused tap would only
  fill the disk further);
- from then on no new operation starts (``station.device_state``: state ``storage_full``): the home screen says so,
  while logging in, today's receipts, reprints and sync go on (they write little or nothing: an ack rewrites a few
  settings in place);
- before it fails at all, the station refuses new operations while the data folder's file system has less than
  ``RESERVE_BYTES`` free, so what keeps running (acks, reprints, the log) still has room;
- it recovers by itself: while full, each check (the home screen polls) looks at the free space and tries a write
  of ``PROBE_BYTES`` in the database that is rolled back; when both pass, the log says "storage space is back" and
  operations start again, without a restart.

The state lives in memory (``Station.storage_full_since``): a full database cannot record that it is full.
"""

from __future__ import annotations

import errno
import logging
import shutil
import sqlite3
import threading

from peewee import OperationalError

log = logging.getLogger(__name__)

#: SQLite's primary result code for "database or disk is full" (extended codes keep it in the low byte).
SQLITE_FULL = 13
#: File errors that mean no room: no space left on the device, or over the user's quota.
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: Below this many free bytes in the data folder's file system no new operation starts: room kept for the acks,
#: reprints and log lines that go on, and for SQLite's write-ahead log (up to about 4 MiB between checkpoints).
RESERVE_BYTES = 16 * 1024 * 1024
#: The trial write that shows the database has room again (rolled back): more than one operation writes.
PROBE_BYTES = 64 * 1024
PROBE_KEY = "storage_probe"

_lock = threading.Lock()


class _ProbeDone(Exception):
    """Raised inside the probe's transaction to roll it back."""


def is_storage_full(exc: BaseException | None) -> bool:
    """True when ``exc``, or an error that caused it (peewee's ``orig``, ``__cause__``, ``__context__``), is SQLite's
    SQLITE_FULL or a file write's ENOSPC / EDQUOT."""
    pending, seen = [exc], set()
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, sqlite3.Error) and (getattr(error, "sqlite_errorcode", 0) & 0xFF == SQLITE_FULL
                                                 or "database or disk is full" in str(error)):
            return True
        if isinstance(error, OSError) and error.errno in FULL_ERRNOS:
            return True
        pending.extend((getattr(error, "orig", None), error.__cause__, error.__context__))
    return False


def note_storage_full(st, what: str, exc: BaseException | None = None) -> None:
    """``what`` failed for want of room: the station is full from now (logged once, until space is back)."""
    with _lock:
        first = st.storage_full_since is None
        if first:
            st.storage_full_since = st.now()
    if first:
        log.error("storage full: %s failed (%s); no new operations until space is freed in %s", what,
                  exc if exc is not None else "no room", st.data_dir)


def free_bytes(st) -> int:
    """Free bytes in the file system of the station's data folder."""
    return shutil.disk_usage(st.data_dir).free


def _database_has_room(st) -> bool:
    """A write of ``PROBE_BYTES`` into the database succeeds (it is rolled back: nothing is kept)."""
    try:
        with st.db.atomic():
            st.db.execute_sql("INSERT INTO setting (key, value) VALUES (?, ?)", (PROBE_KEY, "0" * PROBE_BYTES))
            raise _ProbeDone()
    except _ProbeDone:
        return True
    except OperationalError as exc:
        if is_storage_full(exc) or "locked" in str(exc) or "busy" in str(exc):
            return False  # still full, or another writer holds the database: ask again at the next check
        raise


def storage_full(st) -> bool:
    """Whether new operations must wait for room (module docstring); notes the change either way."""
    free = free_bytes(st)
    if free < RESERVE_BYTES:
        note_storage_full(st, "the free space check", f"{free} bytes free, {RESERVE_BYTES} kept in reserve")
        return True
    if st.storage_full_since is None:
        return False
    if not _database_has_room(st):
        return True
    with _lock:
        since, st.storage_full_since = st.storage_full_since, None
    if since is not None:
        log.warning("storage space is back (%d bytes free): new operations allowed again", free)
    return False

