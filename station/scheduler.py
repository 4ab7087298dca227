"""The background jobs that ``station serve`` starts (and nothing else: never in create_app, tests or CLI).

``start_scheduler(station, app_config)`` returns a started APScheduler 3 ``BackgroundScheduler`` with two jobs,
each one run at a time (``max_instances=1``), missed runs coalesced, a real misfire grace:

- ``sync``: every ``SYNC_INTERVAL_SECONDS`` (default: the station's ``sync.interval_seconds``, 300 s).
  ``sync_now(scheduler, wait=...)`` runs it at once (the UI's "sync now" button and after day close; pressed
  during a run, the run is repeated at once) and, with ``wait``, returns the outcome of a run that started after
  the request (``station.sync.SyncOutcome``), or None while it is still running after ``wait`` seconds. While the
  server is unreachable the job backs off exponentially with jitter, skipping its regular runs until the backoff
  has passed; "sync now" ignores the backoff.
- ``probe``: every ``probe_seconds`` (``config.json`` ``link``), a link probe (``station.sync.probe``) unless some
  request to the bank was noted within that interval (``station.link.probe_due``): the link state stays measured
  on a quiet day, and a link that came back is noticed within one interval.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from station.context import Station
from station.link import link_setting, probe_due
from station.protocol.times import utc_text
from station.sync import SyncError, SyncOutcome, backoff_delay, probe, sync_once, sync_setting

log = logging.getLogger(__name__)
JOB_ID = "sync"
PROBE_JOB_ID = "probe"
MISFIRE_GRACE_SECONDS = 120


class SyncJob:
    """One station's sync, with the backoff state kept between runs and the outcome of each run.

    ``started`` / ``finished`` count the runs; ``last_outcome`` is the newest finished run's. A caller that asked
    for a run (:meth:`request_run`) waits for the run after the one going on (:meth:`wait_for`)."""

    def __init__(self, station: Station, rng: random.Random | None = None):
        self.station = station
        self.rng = rng or random.Random()
        self.failures = 0
        self.not_before = 0.0
        self.forced = threading.Event()
        self.started = 0
        self.finished = 0
        self.last_outcome: SyncOutcome | None = None
        self._done = threading.Condition()

    def __call__(self) -> None:
        if not self.forced.is_set() and time.monotonic() < self.not_before:
            return
        while True:
            self.forced.clear()
            self._run()
            # "Sync now" during a run is skipped by the scheduler (max_instances=1): run again at once, so what
            # was recorded meanwhile (a day close) does not wait for the next interval, and the agent who pressed
            # it gets the outcome of a run that started after the press.
            if not self.forced.is_set():
                return

    def _run(self) -> None:
        with self._done:
            self.started += 1
        try:
            # One attempt per run: the scheduler's next runs are the retries, spaced by the backoff below.
            result = sync_once(self.station, attempts=1)
            outcome = SyncOutcome(ok=True, at=utc_text(self.station.now()), result=result)
            self.failures = 0
            self.not_before = 0.0
        except SyncError as exc:
            outcome = self._failed(exc, exc.reason)
        except Exception as exc:  # the screen waiting for this run must hear of it; logged in full
            log.exception("sync failed unexpectedly")
            outcome = self._failed(exc, "local")
        with self._done:
            self.finished += 1
            self.last_outcome = outcome
            self._done.notify_all()

    def _failed(self, exc: Exception, reason: str) -> SyncOutcome:
        self.failures += 1
        delay = backoff_delay(self.failures, sync_setting(self.station, "backoff_base"),
                              sync_setting(self.station, "backoff_cap"), self.rng)
        self.not_before = time.monotonic() + delay
        # For the technician: the reason the screen words, and the whole message.
        log.warning("sync failed (%s: %s); next try in %.0f s at the earliest", reason, exc, delay)
        return SyncOutcome(ok=False, at=utc_text(self.station.now()), reason=reason, message=str(exc))

    def request_run(self) -> int:
        """Ask for a run now (ignoring any backoff); the number of the run whose outcome answers the request."""
        with self._done:
            target = self.started + 1
        self.forced.set()
        return target

    def wait_for(self, run: int, timeout: float) -> SyncOutcome | None:
        """The outcome once run number ``run`` (or a later one) has finished; None after ``timeout`` seconds."""
        with self._done:
            if self._done.wait_for(lambda: self.finished >= run, timeout):
                return self.last_outcome
        return None


class ProbeJob:
    """Probe the bank when no other request measured the link within ``probe_seconds``."""

    def __init__(self, station: Station):
        self.station = station

    def __call__(self) -> None:
        if not probe_due(self.station):
            return
        try:
            probe(self.station)
        except SyncError as exc:
            # Noted for the link state already (station.link); the log line is for the technician.
            log.info("link probe failed (%s): %s", exc.reason, exc)


def start_scheduler(station: Station, app_config) -> BackgroundScheduler:
    """Start the background sync and probe for ``station``; ``app_config`` may set ``SYNC_INTERVAL_SECONDS``."""
    interval = int(app_config.get("SYNC_INTERVAL_SECONDS") or sync_setting(station, "interval_seconds"))
    probe_seconds = int(link_setting(station, "probe_seconds"))
    scheduler = BackgroundScheduler(timezone=UTC)
    job = SyncJob(station)
    scheduler.add_job(job, "interval", seconds=interval, id=JOB_ID, max_instances=1, coalesce=True,
                      misfire_grace_time=MISFIRE_GRACE_SECONDS, next_run_time=datetime.now(UTC))
    # The first probe one interval after start: the sync that runs at once measures the link before that.
    scheduler.add_job(ProbeJob(station), "interval", seconds=probe_seconds, id=PROBE_JOB_ID, max_instances=1,
                      coalesce=True, misfire_grace_time=probe_seconds)
    scheduler.sync_job = job
    scheduler.start()
    return scheduler


def sync_now(scheduler: BackgroundScheduler, wait: float = 0) -> SyncOutcome | None:
    """Run the sync job as soon as possible (ignoring any backoff); a run already going is not doubled.

    With ``wait`` seconds, the outcome of a run that started after this request, or None if it has not finished by
    then; without, None at once (the run goes on in the background)."""
    job = scheduler.sync_job
    run = job.request_run()
    scheduler.modify_job(JOB_ID, next_run_time=datetime.now(UTC))
    return job.wait_for(run, wait) if wait else None
