"""12315 consumer complaints for the market regulator: a screen apart from customer voice, in two steps.

First what the complaint is about (category, business, what happened: the pinyin keyboard beside it), then the
complainant's phone on the number pad and their consent to forward it; Save records it (``station.complaints``)
and shows its receipt with the complaint number. Once the phone was typed and checked, the screen shows it masked
(the form carries it in a hidden field); "Retype" clears it.
"""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from station import receipts
from station.complaints import complaint_subject, record_complaint
from station.errors import N_, StationError
from station.protocol.complaints import CATEGORIES, MAX_BUSINESS, MAX_DETAILS, mask_phone, normalise_phone
from station.ui.common import current_agent, login_required, station, translate_error

bp = Blueprint("complaints", __name__, url_prefix="/complaint")

#: Each category's words on the screen (the entry stores the code).
CATEGORY_LABELS = {"price": N_("Price"), "quality": N_("Quality"), "false_advertising": N_("False advertising"),
                   "service": N_("Service"), "food_safety": N_("Food safety"), "other": N_("Other")}


def _form() -> dict:
    form = request.form
    return {"category": form.get("category", ""), "business": form.get("business", ""),
            "details": form.get("details", ""), "phone": form.get("phone", ""),
            "consent": form.get("consent") == "yes", "txn": form.get("txn") or receipts.new_txn_id()}


def _subject_page(data: dict, error: str | None = None, status: int = 200):
    return render_template("complaint_subject.html", data=data, categories=CATEGORIES, labels=CATEGORY_LABELS,
                           max_business=MAX_BUSINESS, max_details=MAX_DETAILS, error=error), status


def _contact_page(data: dict, error: str | None = None, status: int = 200):
    phone = normalise_phone(data["phone"]) if data["phone"] else None
    return render_template("complaint_contact.html", data=data, labels=CATEGORY_LABELS, phone=phone,
                           phone_masked=mask_phone(phone) if phone else None, error=error), status


@bp.route("/", methods=["GET", "POST"])
@login_required
def complaint():
    """The complaint screen: ``step`` ``subject`` (to the phone and consent), ``edit`` (back to the subject),
    ``retype`` (the phone cleared), ``record`` (Save)."""
    data = _form()
    if request.method == "GET":
        return _subject_page(data)
    step = request.form.get("step", "subject")
    if step == "edit":
        return _subject_page(data)
    if step == "retype":
        data["phone"] = ""
        return _contact_page(data)
    try:
        complaint_subject(data["business"], data["category"], data["details"])
    except StationError as err:
        return _subject_page(data, translate_error(err), 400)
    if step != "record":
        return _contact_page(data)
    try:
        receipt = record_complaint(station(), current_agent(), data["phone"], data["business"], data["category"],
                                   data["details"], data["consent"], data["txn"])
    except StationError as err:
        return _contact_page(data, translate_error(err), 400)
    return redirect(url_for("receipts.show", seq=receipt.seq))
