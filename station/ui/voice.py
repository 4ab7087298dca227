"""客户之声 customer voice: record a customer's praise, complaint or suggestion, and read the bank's answers."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from station import receipts
from station.errors import N_, StationError
from station.feedback import CATEGORIES, MAX_TEXT, answers, mark_answers_read, record_feedback, unread_answers
from station.ui.common import current_agent, login_required, station, translate_error

bp = Blueprint("voice", __name__, url_prefix="/voice")

CATEGORY_LABELS = {"praise": N_("Praise"), "complaint": N_("Complaint"), "suggestion": N_("Suggestion")}
#: What customers say most, as buttons: the kiosk has no keyboard, and a tap is quicker than typing anyway.
QUICK_PHRASES = (
    N_("Friendly, patient service."),
    N_("The wait was too long."),
    N_("Please keep more small notes."),
    N_("The fee is too high."),
    N_("Please open earlier on pension day."),
)


@bp.route("/", methods=["GET", "POST"])
@login_required
def voice():
    """Record a customer's praise, complaint or suggestion."""
    category = request.form.get("category", "")
    text = request.form.get("text", "")
    # Issued with the form and kept across a refusal: a double tap on Save records once.
    txn = request.form.get("txn") or receipts.new_txn_id()
    error = None
    if request.method == "POST":
        try:
            receipt = record_feedback(station(), current_agent(), category, text, txn)
        except StationError as err:
            error = translate_error(err)
        else:
            return redirect(url_for("receipts.show", seq=receipt.seq))
    return render_template("voice.html", categories=CATEGORIES, labels=CATEGORY_LABELS, category=category, text=text,
                           max_text=MAX_TEXT, phrases=QUICK_PHRASES, txn=txn, error=error,
                           unread=unread_answers(station()))


@bp.get("/answers")
@login_required
def voice_answers():
    """The bank's answers to the customer voice recorded here, each beside what the customer said; unread first."""
    return render_template("voice_answers.html", answers=answers(station()), labels=CATEGORY_LABELS)


@bp.post("/answers/read")
@login_required
def answers_read():
    """The agent has read the answers: the home screen's notice goes."""
    try:
        mark_answers_read(station(), current_agent())
    except StationError as err:
        flash(translate_error(err))
    return redirect(url_for("voice.voice_answers"))
