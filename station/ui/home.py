"""Home tiles, the sync screen and today's customer flow by hour (an SVG bar chart drawn on the server)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_babel import gettext

from station import business_day, printing
from station.db import Operation
from station.device_state import DeviceState, device_state, revocation
from station.errors import StationError
from station.feedback import unread_answers
from station.protocol.entry_types import types_where
from station.protocol.times import parse_utc
from station.ui.common import (
    SyncNotConfigured,
    bar_time,
    clock_stop,
    login_required,
    station,
    sync_failure_message,
    translate_error,
)
from station.ui.operations import half_done_summary

bp = Blueprint("home", __name__)

#: Customer-facing operation types counted as visits on the busy-hours chart: those started from a home tile.
VISIT_TYPES = types_where(home_tile=True)
#: Hours always on the chart (a village shop's day); a visit outside them widens the chart to include it.
OPENING_HOURS = range(7, 20)
#: How long "sync now" waits for the bank before it says the sync is still running (the sync goes on regardless).
SYNC_NOW_WAIT_SECONDS = 20
#: While the clock is not set (or the storage is full), the home screen reloads itself this often to notice network
#: time arriving (or space freed).
CLOCK_POLL_SECONDS = 10


@bp.get("/home")
@login_required
def home():
    """The home tiles; while the storage is full or the clock is not set (or is wrong: call the technician), a notice
    instead of the day's and no operation tile (the screen reloads itself to notice the state end). An operation
    left half done is listed above them with Resume and Cancel."""
    clock = clock_stop(station())
    storage = device_state(station()) is DeviceState.STORAGE_FULL
    return render_template("home.html", day_open=business_day.current_day(station()) is not None, clock=clock,
                           storage_full=storage, poll=CLOCK_POLL_SECONDS if clock or storage else None,
                           pending=half_done_summary(), answered=unread_answers(station()))


@bp.get("/revoked")
def revoked():
    """The whole screen says the bank revoked this station (``common.revoked_gate`` leads every other screen here,
    but for today's receipts)."""
    state = revocation(station())
    if state is None:
        return redirect(url_for("index"))
    try:
        refused_at = parse_utc(state.get("at"))
    except (TypeError, ValueError):
        refused_at = None
    return render_template("revoked.html", refused_at=refused_at)


@bp.get("/sync")
@login_required
def sync():
    """The link state, the last sync's outcome, what waits for the bank and, when the kit has a sync hook, a button
    to sync now."""
    return render_template("sync.html", configured=current_app.extensions.get("sync_now") is not None)


@bp.post("/sync")
@login_required
def sync_now():
    """Run the background sync now (``app.extensions["sync_now"]``, installed by ``station serve``) and say how it
    ended: synced, failed and why (logged for the technician by the sync job), or still running after
    ``SYNC_NOW_WAIT_SECONDS``."""
    hook = current_app.extensions.get("sync_now")
    try:
        if hook is None:
            raise SyncNotConfigured()
        outcome = hook(wait=SYNC_NOW_WAIT_SECONDS)
    except StationError as err:
        return render_template("sync.html", configured=hook is not None, error=translate_error(err)), 503
    if outcome is None:
        flash(gettext("Still syncing: the bank has not answered yet. The status bar shows when it has."))
    elif outcome.ok:
        flash(gettext("Synced with the bank at %(time)s.", time=bar_time(parse_utc(outcome.at))))
    else:
        # The station did what was asked and says how it went: a page, not an HTTP error of its own.
        return render_template("sync.html", configured=True, error=sync_failure_message(outcome.reason))
    return redirect(url_for("home.sync"))


@dataclass(frozen=True)
class Bar:
    hour: int
    count: int
    x: int
    y: int
    height: int


def hourly_flow(st) -> list[int]:
    """Customer visits of today (the station's local date) per local hour, 0 to 23."""
    today = st.local_date().isoformat()
    counts = Counter()
    query = Operation.select(Operation.created_at).where(
        (Operation.business_date == today) & (Operation.type.in_(VISIT_TYPES))
    )
    for op in query:
        counts[op.created_at.astimezone(st.timezone).hour] += 1
    return [counts[hour] for hour in range(24)]


def chart_bars(per_hour: list[int], width: int = 720, height: int = 260) -> list[Bar]:
    """One bar per hour (the opening hours, widened to any hour with visits), scaled to the busiest hour."""
    busy = [hour for hour, count in enumerate(per_hour) if count]
    hours = range(min(busy + [OPENING_HOURS.start]), max(busy + [OPENING_HOURS.stop - 1]) + 1)
    top = max(per_hour + [1])
    step = width // len(hours)
    bars = []
    for index, hour in enumerate(hours):
        bar_height = round(per_hour[hour] * height / top)
        bars.append(Bar(hour, per_hour[hour], index * step, height - bar_height, bar_height))
    return bars


def _chart_page(error: str | None = None, status: int = 200):
    st = station()
    per_hour = hourly_flow(st)
    bars = chart_bars(per_hour)
    peak = max(bars, key=lambda bar: bar.count)
    return render_template("chart.html", bars=bars, peak=peak if peak.count else None, total=sum(per_hour),
                           today=st.local_date(), error=error), status


@bp.get("/chart")
@login_required
def chart():
    """Today's customer flow by hour."""
    return _chart_page()


@bp.post("/chart/print")
@login_required
def print_chart():
    """Print today's chart for the wall (the hours the screen shows)."""
    st = station()
    hours = [(bar.hour, bar.count) for bar in chart_bars(hourly_flow(st))]
    try:
        printing.print_busy_hours(st, st.local_date(), hours)
    except StationError as err:
        return _chart_page(translate_error(err), 503)
    flash(gettext("Printed."))
    return redirect(url_for("home.chart"))
