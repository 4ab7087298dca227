"""Day open and day close: the cash count by denomination, expected against counted, the variance recorded."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, url_for

from station import business_day
from station.errors import StationError
from station.protocol.money import format_yuan
from station.ui.common import OperationInProgress, current_agent, login_required, station, translate_error
from station.ui.operations import half_done

bp = Blueprint("day", __name__, url_prefix="/day")


def counts_from_form() -> dict:
    """The typed pieces per denomination, as typed (the core validates them)."""
    return {str(d): request.form.get(f"n{d}", "").strip() for d in business_day.DENOMINATIONS_FEN}


def denomination_label(fen: int) -> str:
    """A denomination as a note or coin shows it: 100, 0.50."""
    return format_yuan(fen).removesuffix(".00")


def render_count(mode: str, counts: dict, error: str | None = None, preview: business_day.CloseCount | None = None):
    """The count screen for opening ("open") or closing ("close") the day."""
    return render_template("day_count.html", mode=mode, counts=counts, denominations=business_day.DENOMINATIONS_FEN,
                           label=denomination_label, error=error, preview=preview)


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


@bp.route("/close", methods=["GET", "POST"])
@login_required
def close_day():
    """Count the drawer; first show expected, counted and variance, then record the close."""
    counts = counts_from_form()
    if business_day.current_day(station()) is None:
        return redirect(url_for("day.open_day"))
    if request.method == "GET":
        return render_count("close", counts)
    try:
        if half_done():
            raise OperationInProgress()
        if request.form.get("confirm") != "1":
            preview = business_day.close_preview(station(), counts)
            return render_count("close", counts, preview=preview)
        result = business_day.close_day(station(), current_agent(), counts)
    except StationError as err:
        return render_count("close", counts, translate_error(err))
    # The day's close goes to the bank at once, not at the next scheduled sync.
    hook = current_app.extensions.get("sync_now")
    if hook is not None:
        hook()
    return redirect(url_for("receipts.show", seq=result.receipt.seq))
