"""The link to the bank, measured: every request the station makes to the sync server notes its outcome here.

``call_bank(st, what, send)`` runs one request and notes it; ``note_success`` / ``note_failure`` note an outcome
the caller judged itself (an answer that does not verify is a failure, ``bad_answer``). ``link_status(st)`` turns
what was noted into the state the screens and ``station status --json`` show:

- ``offline``: nothing ever answered; or the last attempt failed with a hard reason (``dns``, ``refused``,
  ``tls``, ``revoked``) or after another failure or long after the last answer; or the last success is older than
  ``stale_seconds`` (nothing has tried for a while, so the station does not know);
- ``degraded``: the last attempt failed once after a success (``timeout``, ``reset``, ``http_5xx``,
  ``bad_answer``), or the last attempt succeeded but the recent ones failed in two separate runs or more (the link
  drops in and out: ``intermittent``), or it was slow (over ``slow_ms``);
- ``online``: the last attempt succeeded, fast, and the recent ones failed in one run at most (a link that was down
  and is back is online at its first answer).

"Online" is never shown while the last attempt failed. The state is kept in this process (``Station._link``) and
in the ``link`` setting, written when the state or the reason changes and otherwise at most every
``PERSIST_SECONDS``, so another process (``station status``) reads it without a write per request. A clock
correction in another process (``station clock accept``) rewrites the setting's times that were ahead of the clock
(``bring_times_back``) and counts it in ``rewound``: a process whose copy counts fewer drops it for the setting, so
that it never writes the times ahead back (a copy written in the instant between the two would put the clock
floor ahead again, and ``station clock show`` would say so).

Settings (config.json ``"link"``; docs/operations.md): ``probe_seconds`` (how often ``station serve`` probes the
bank when nothing else went out), ``slow_ms``, ``stale_seconds``, ``auth_timeout_seconds`` (how long an
operation waits for the bank's authorization before the offline rules apply).
"""

from __future__ import annotations

import errno
import ssl
import threading
import time
from collections.abc import Callable
from datetime import datetime

import requests
from peewee import OperationalError

from station.protocol.times import parse_utc, utc_text
from station.storage import is_storage_full, note_storage_full

LINK_SETTING = "link"
#: name -> (default, one-line help); read from config.json "link".
LINK_SETTINGS: dict[str, tuple[object, str]] = {
    "probe_seconds": (30, "How often `station serve` probes the bank when no other request went out."),
    "slow_ms": (2000, "An answer slower than this makes the link 'degraded'."),
    "stale_seconds": (120, "With no answer for this long the link is 'offline' (nothing has tried lately)."),
    "auth_timeout_seconds": (3.0, "How long an operation waits for the bank's authorization before the offline "
                                  "rules apply."),
}
#: Outcomes remembered to judge "failing intermittently".
RECENT = 5
#: The in-memory state is written to the setting at least this often while nothing changes.
PERSIST_SECONDS = 15
#: Reasons that mean the bank cannot be reached at all: offline at the first one.
HARD_REASONS = frozenset({"dns", "refused", "tls", "revoked", "not_enrolled"})
#: Every reason a failure can have (the screens word each one).
REASONS = ("dns", "refused", "tls", "timeout", "reset", "http_5xx", "http_4xx", "busy", "revoked", "bad_answer",
           "not_enrolled", "unreachable")

_lock = threading.Lock()


def link_setting(st, name: str):
    default, _ = LINK_SETTINGS[name]
    return st.config.get("link", {}).get(name, default)


def classify(exc: BaseException) -> tuple[str, str]:
    """(reason, detail) of a request that raised ``exc``."""
    detail = exc.__class__.__name__
    if isinstance(exc, requests.exceptions.SSLError | ssl.SSLError):
        return "tls", detail
    if isinstance(exc, requests.exceptions.Timeout):
        return "timeout", detail
    text = str(exc)
    if isinstance(exc, requests.exceptions.ConnectionError):
        if "NameResolution" in text or "Name or service not known" in text or "getaddrinfo" in text:
            return "dns", detail
        if "Connection refused" in text or f"Errno {errno.ECONNREFUSED}" in text:
            return "refused", detail
        if ("reset" in text.lower() or "RemoteDisconnected" in text or "aborted" in text.lower()
                or isinstance(exc, requests.exceptions.ChunkedEncodingError)):
            return "reset", detail
        return "unreachable", detail
    if isinstance(exc, requests.exceptions.ChunkedEncodingError | ConnectionResetError):
        return "reset", detail
    return "unreachable", detail


#: The times of the record, each written by the clock of its moment (``bring_times_back``).
TIMES = ("last_attempt_at", "latest_attempt_at", "last_success_at", "last_failure_at")


def _known(st) -> dict:
    """What this process knows of the link: its own record (``Station._link``), unless the setting was rewound by
    a clock correction since the record was read (module docstring); then the setting."""
    stored = st.setting(LINK_SETTING) or {}
    record = getattr(st, "_link", None)
    if record is not None and record.get("rewound", 0) == stored.get("rewound", 0):
        return record
    return stored


def _record(st) -> dict:
    record = _known(st)
    if record is not getattr(st, "_link", None):
        record = dict(record)
        record.setdefault("recent", [])
        st._link = record
    return record


def bring_times_back(st, moment: datetime) -> None:
    """A clock correction (``station.clock``): every time of the link setting later than ``moment`` becomes
    ``moment``, and ``rewound`` counts one more, so that every process drops its copy (module docstring). Inside
    the caller's write."""
    record = dict(st.setting(LINK_SETTING) or {})
    for name in TIMES:
        if record.get(name) and parse_utc(record[name]) > moment:
            record[name] = utc_text(moment)
    record["rewound"] = int(record.get("rewound", 0)) + 1
    st.set_setting(LINK_SETTING, record)


def _note(st, ok: bool, what: str, *, latency_ms: int | None = None, reason: str | None = None,
          detail: str = "") -> None:
    now = utc_text(st.now())
    with _lock:
        record = _record(st)
        before = (record.get("last_ok"), record.get("last_failure_reason"))
        record["recent"] = (record.get("recent", []) + [[bool(ok), latency_ms]])[-RECENT:]
        record["last_ok"] = bool(ok)
        record["last_attempt_at"] = now
        # The latest attempt by a clock that only moves forward here: a clock set back cannot lower it
        # (``station.device_state.clock_floor``).
        seen = record.get("latest_attempt_at")
        record["latest_attempt_at"] = now if seen is None or parse_utc(seen) < parse_utc(now) else seen
        record["last_what"] = what
        if ok:
            record["last_success_at"] = now
            record["latency_ms"] = latency_ms
            record["consecutive_failures"] = 0
        else:
            record["last_failure_at"] = now
            record["last_failure_reason"] = reason
            record["last_failure_detail"] = str(detail)[:200]
            record["consecutive_failures"] = int(record.get("consecutive_failures", 0)) + 1
        changed = before != (record["last_ok"], record.get("last_failure_reason"))
        written = record.get("_written_at")
        due = written is None or time.monotonic() - written >= PERSIST_SECONDS
        if changed or due or not ok:
            record["_written_at"] = time.monotonic()
            try:
                st.set_setting(LINK_SETTING, {k: v for k, v in record.items() if not k.startswith("_")})
            except OperationalError as exc:
                # A full disk: this process keeps the state in memory and writes it once there is room again.
                if not is_storage_full(exc):
                    raise
                note_storage_full(st, "noting the link state", exc)


def note_success(st, what: str, latency_ms: int | None = None) -> None:
    """The bank answered ``what`` (a sync batch, a probe, an authorization) in ``latency_ms``."""
    _note(st, True, what, latency_ms=latency_ms)


def note_failure(st, what: str, reason: str, detail: str = "") -> None:
    """``what`` failed for ``reason`` (one of :data:`REASONS`); ``detail`` is for the technician."""
    _note(st, False, what, reason=reason, detail=detail)


def call_bank(st, what: str, send: Callable[[], requests.Response]) -> requests.Response:
    """Run ``send`` (one HTTP request to the bank) and note its outcome; the response, or the exception re-raised.

    An HTTP answer counts as the link working, except a 5xx (``http_5xx``) and the bank's refusal of a revoked
    station (``revoked``)."""
    started = time.monotonic()
    try:
        response = send()
    except (requests.RequestException, OSError) as exc:
        reason, detail = classify(exc)
        note_failure(st, what, reason, detail)
        raise
    latency = int((time.monotonic() - started) * 1000)
    if response.status_code >= 500:
        note_failure(st, what, "http_5xx", f"HTTP {response.status_code}")
    elif response.status_code == 403 and "station-revoked" in response.text[:2000]:
        note_failure(st, what, "revoked", "the bank revoked this station")
    else:
        note_success(st, what, latency)
    return response


def link_status(st, now: datetime | None = None) -> dict:
    """``{"link": "online" | "degraded" | "offline", "reason", "last_success_at", "last_failure_at",
    "last_failure_reason", "last_failure_detail", "latency_ms"}`` from what was noted (module docstring)."""
    record = dict(_known(st))
    now = now or st.now()
    status = {
        "link": "offline",
        "reason": None,
        "last_success_at": record.get("last_success_at"),
        "last_failure_at": record.get("last_failure_at"),
        "last_failure_reason": record.get("last_failure_reason"),
        "last_failure_detail": record.get("last_failure_detail"),
        "latency_ms": record.get("latency_ms"),
    }
    if not st.config.get("server"):
        status["reason"] = "not_enrolled"
        return status
    if "last_ok" not in record:
        status["reason"] = "never"
        return status
    stale = float(link_setting(st, "stale_seconds"))
    success_age = (now - parse_utc(record["last_success_at"])).total_seconds() \
        if record.get("last_success_at") else None
    if not record["last_ok"]:
        reason = record.get("last_failure_reason")
        hard = reason in HARD_REASONS or int(record.get("consecutive_failures", 1)) >= 2
        # One soft failure right after an answer: degraded; after an answer long ago, nothing says it works.
        status["link"] = "offline" if hard or success_age is None or success_age > stale else "degraded"
        status["reason"] = reason
        return status
    if success_age > stale:
        status["reason"] = "no_recent_answer"
        return status
    recent = [bool(ok) for ok, _ in record.get("recent", [])]
    # Runs of failures among the recent outcomes: each failure that starts the window or follows a success.
    failure_runs = sum(1 for i, ok in enumerate(recent) if not ok and (i == 0 or recent[i - 1]))
    slow = (record.get("latency_ms") or 0) > int(link_setting(st, "slow_ms"))
    if slow or failure_runs >= 2:
        status["link"] = "degraded"
        status["reason"] = "slow" if slow else "intermittent"
        return status
    status["link"] = "online"
    return status


def probe_due(st, now: datetime | None = None) -> bool:
    """Whether ``station serve``'s probe job should probe now: the station is enrolled and no request to the bank
    was noted within the last ``probe_seconds`` (a sync or an authorization already measured the link)."""
    if not st.config.get("server"):
        return False
    record = _known(st)
    attempted = record.get("last_attempt_at")
    if not attempted:
        return True
    age = ((now or st.now()) - parse_utc(attempted)).total_seconds()
    # A last attempt "in the future" (the clock was set back) says nothing about the link now.
    return not 0 <= age < float(link_setting(st, "probe_seconds"))


def should_ask_bank(st) -> bool:
    """Whether an operation should ask the bank before the offline rules: the station is enrolled, and the last
    attempt did not fail within the last ``stale_seconds`` (a known-down link does not cost every customer the
    authorization timeout; the probe notices when it is back)."""
    if not st.config.get("server"):
        return False
    record = _known(st)
    if record.get("last_ok") is False and record.get("last_failure_at"):
        age = (st.now() - parse_utc(record["last_failure_at"])).total_seconds()
        return age > float(link_setting(st, "stale_seconds"))
    return True
