"""Day open and day close: the cash count by denomination, expected against counted, the variance recorded.

Closing: the count, then a preview (expected, counted, and the variance in words: 短款 short or 长款 over). A
variance beyond the policy's tolerance (``station.business_day``) asks for a reason (buttons, plus optional text)
and a supervisor's PIN on the same screen, the counts kept in the form; a refusal (no reason, a wrong PIN) shows
there too. An operation left half done blocks the close until it is resumed or cancelled, and the screen offers
both (``station.ui.operations.half_done_summary``).
"""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, url_for

from station import agents, business_day
from station.db import Agent
from station.errors import N_, StationError
from station.protocol.money import format_yuan
from station.ui.common import OperationInProgress, current_agent, login_required, station, translate_error
from station.ui.operations import half_done, half_done_summary

bp = Blueprint("day", __name__, url_prefix="/day")

VARIANCE_REASONS = business_day.VARIANCE_REASONS


class ExpectedChanged(StationError):
    """The approval screen showed other figures than the drawer's now (an operation recorded since, e.g. in a
    second tab): the supervisor approves only the variance they saw."""

    code = "expected_changed"
    template = N_("The expected cash changed: check the figures and type the PIN again.")


def counts_from_form() -> dict:
    """The typed pieces per denomination, as typed (the core validates them)."""
    return {str(d): request.form.get(f"n{d}", "").strip() for d in business_day.DENOMINATIONS_FEN}


def denomination_label(fen: int) -> str:
    """A denomination as a note or coin shows it: 100, 0.50."""
    return format_yuan(fen).removesuffix(".00")


def variance_reason() -> str:
    """The reason as the form gives it: the chosen button's, then the typed words ("Miscount: 100 yuan note")."""
    choice = request.form.get("reason", "")
    choice = choice if choice in VARIANCE_REASONS else ""
    text = request.form.get("reason_text", "").strip()
    return ": ".join(part for part in (choice, text) if part)


def render_count(mode: str, counts: dict, error: str | None = None, preview: business_day.CloseCount | None = None):
    """The count screen for opening ("open") or closing ("close") the day; a close beyond the tolerance shows the
    approval (reason, supervisor, PIN) instead of the count boxes, which stay in the form."""
    supervisors = list(Agent.select().where(Agent.role == "supervisor").order_by(Agent.agent_id))
    return render_template(
        "day_count.html", mode=mode, counts=counts, denominations=business_day.DENOMINATIONS_FEN,
        label=denomination_label, error=error, preview=preview,
        pending=half_done_summary() if mode == "close" else None,
        approve=bool(preview and preview.needs_approval), reasons=VARIANCE_REASONS,
        reason=request.form.get("reason", ""), reason_text=request.form.get("reason_text", ""),
        supervisors=supervisors,
        supervisor_id=request.form.get("supervisor_id", supervisors[0].agent_id if supervisors else ""),
        tolerance=business_day.variance_tolerance(station()))


@bp.get("/")
@login_required
def index():
    """The day tile: open the day if none is open, else close it."""
    return redirect(url_for("day.close_day" if business_day.current_day(station()) else "day.open_day"))


@bp.route("/open", methods=["GET", "POST"])
@login_required
def open_day():
    """Count the cash float into the drawer and open the day."""
    counts = counts_from_form()
    if business_day.current_day(station()) is not None:
        return redirect(url_for("day.close_day"))
    if request.method == "POST":
        try:
            receipt = business_day.open_day(station(), current_agent(), counts)
        except StationError as err:
            return render_count("open", counts, translate_error(err))
        return redirect(url_for("receipts.show", seq=receipt.seq))
    return render_count("open", counts)


def _approving_supervisor(preview: business_day.CloseCount, reason: str) -> agents.AgentSession | None:
    """The supervisor's session for a close beyond the tolerance (their PIN checked: a wrong one is journaled and
    counts towards their lock, as at login); None within it. The reason is asked for first, so a missing one costs
    no PIN try."""
    if not preview.needs_approval:
        return None
    reason = business_day.clean_variance_reason(reason)
    supervisor_id = request.form.get("supervisor_id", "")
    pin = request.form.get("pin", "")
    if not (reason and supervisor_id and pin):
        # Raises: no reason (asked first), else no supervisor's PIN.
        business_day.check_variance_approval(station(), preview, reason, None)
    if request.form.get("expected") != str(preview.expected_fen):
        raise ExpectedChanged()  # before the PIN is checked: no try spent
    return agents.login_agent(station(), supervisor_id, pin)


@bp.route("/close", methods=["GET", "POST"])
@login_required
def close_day():
    """Count the drawer; first show expected, counted and variance, then record the close."""
    counts = counts_from_form()
    if business_day.current_day(station()) is None:
        return redirect(url_for("day.open_day"))
    if request.method == "GET" or request.form.get("edit") == "1":
        return render_count("close", counts)
    preview = None
    try:
        if half_done():
            raise OperationInProgress()
        preview = business_day.close_preview(station(), counts)
        if request.form.get("confirm") != "1":
            return render_count("close", counts, preview=preview)
        reason = variance_reason()
        supervisor = _approving_supervisor(preview, reason)
        result = business_day.close_day(station(), current_agent(), counts, reason=reason, supervisor=supervisor)
    except StationError as err:
        return render_count("close", counts, translate_error(err), preview=preview)
    # The day's close goes to the bank at once, not at the next scheduled sync.
    hook = current_app.extensions.get("sync_now")
    if hook is not None:
        hook()
    return redirect(url_for("receipts.show", seq=result.receipt.seq))
