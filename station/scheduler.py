"""The background sync job that ``station serve`` starts (and nothing else: never in create_app, tests or CLI).

``start_scheduler(station, app_config)`` returns a started APScheduler 3 ``BackgroundScheduler`` with one job,
``sync``: every ``SYNC_INTERVAL_SECONDS`` (default: the station's ``sync.interval_seconds``, 300 s), one run at a
time (``max_instances=1``), missed runs coalesced, a real misfire grace. ``sync_now(scheduler)`` runs it at once
(the UI's "sync now" button and after day close; pressed during a run, the run is repeated at once). While the
server is unreachable the job backs off exponentially with jitter, skipping its regular runs until the backoff has
passed; "sync now" ignores the backoff.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from station.context import Station
from station.sync import SyncError, backoff_delay, sync_once, sync_setting

log = logging.getLogger(__name__)
JOB_ID = "sync"
MISFIRE_GRACE_SECONDS = 120


class SyncJob:
    """One station's sync, with the backoff state kept between runs."""

    def __init__(self, station: Station, rng: random.Random | None = None):
        self.station = station
        self.rng = rng or random.Random()
        self.failures = 0
        self.not_before = 0.0
        self.forced = threading.Event()

    def __call__(self) -> None:
        if not self.forced.is_set() and time.monotonic() < self.not_before:
            return
        while True:
            self.forced.clear()
            # "Sync now" during a run is skipped by the scheduler (max_instances=1): run again at once, so what
            # was recorded meanwhile (a day close) does not wait for the next interval.
            if not self._run() or not self.forced.is_set():
                return

    def _run(self) -> bool:
        try:
            # One attempt per run: the scheduler's next runs are the retries, spaced by the backoff below.
            sync_once(self.station, attempts=1)
        except SyncError as exc:
            self.failures += 1
            delay = backoff_delay(self.failures, sync_setting(self.station, "backoff_base"),
                                  sync_setting(self.station, "backoff_cap"), self.rng)
            self.not_before = time.monotonic() + delay
            log.warning("sync failed (%s); next try in %.0f s at the earliest", exc, delay)
            return False
        self.failures = 0
        self.not_before = 0.0
        return True


def start_scheduler(station: Station, app_config) -> BackgroundScheduler:
    """Start the background sync for ``station``; ``app_config`` may set ``SYNC_INTERVAL_SECONDS``."""
    interval = int(app_config.get("SYNC_INTERVAL_SECONDS") or sync_setting(station, "interval_seconds"))
    scheduler = BackgroundScheduler(timezone=UTC)
    job = SyncJob(station)
    scheduler.add_job(job, "interval", seconds=interval, id=JOB_ID, max_instances=1, coalesce=True,
                      misfire_grace_time=MISFIRE_GRACE_SECONDS, next_run_time=datetime.now(UTC))
    scheduler.sync_job = job
    scheduler.start()
    return scheduler


def sync_now(scheduler: BackgroundScheduler) -> None:
    """Run the sync job as soon as possible (ignoring any backoff); a run already going is not doubled."""
    scheduler.sync_job.forced.set()
    scheduler.modify_job(JOB_ID, next_run_time=datetime.now(UTC))
