"""12315 consumer complaints taken at the station for the market regulator (not customer voice, not money).

A complaint is one signed journal entry (``complaint_12315``) written in its own transaction, like customer
voice; it has no business row of its own. Nothing is recorded without the complainant's consent to forward it to
the regulator. The phone number is kept in full only inside the signed entry, which goes to the bank and from there
to the regulator (who calls back); everything the station shows or prints after it was typed masks it
(``station.protocol.complaints.mask_phone``), and a complaint's receipt carries no QR code, since the QR is the
whole signed entry. The fields' rules and the complaint number are ``station.protocol.complaints``'s, which the
bank applies again.
"""

from __future__ import annotations

from station import agents, receipts
from station.context import Station, bound_station
from station.db import JournalEntry
from station.device_state import refuse_new_operations
from station.errors import N_, StationError
from station.journal import append_entry, chain_base, form_txn, journal_head, recorded_by_form
from station.protocol.complaints import (
    CATEGORIES,
    MAX_BUSINESS,
    MAX_DETAILS,
    complaint_number,
    complaint_problem,
    mask_phone,
    normalise_phone,
    subject_problem,
)
from station.protocol.entry_types import EntryType, OperationState
from station.protocol.tokens import unverified_payload


class ComplaintNoConsent(StationError):
    code = "complaint_no_consent"
    template = N_("Nothing was recorded: the complaint goes to the market regulator (12315) only with the "
                  "complainant's consent. Tick the consent box once they agree.")


class ComplaintBadPhone(StationError):
    code = "complaint_bad_phone"
    template = N_("Type a mobile number (11 digits starting 13 to 19) or a landline with its area code, "
                  "e.g. 0571-88889999.")


class ComplaintBadCategory(StationError):
    code = "complaint_bad_category"
    template = N_("Choose what the complaint is about.")


class ComplaintBadBusiness(StationError):
    code = "complaint_bad_business"
    template = N_("Write the business complained about, in 1 to %(max)d characters on one line.")


class ComplaintBadDetails(StationError):
    code = "complaint_bad_details"
    # Only refused when empty with "other", too long or not printable: "1 to" is true each time.
    template = N_("Write what happened, in 1 to %(max)d characters.")


_REFUSALS = {
    "complaint_no_consent": lambda: ComplaintNoConsent(),
    "complaint_bad_phone": lambda: ComplaintBadPhone(),
    "complaint_bad_category": lambda: ComplaintBadCategory(),
    "complaint_bad_business": lambda: ComplaintBadBusiness(max=MAX_BUSINESS),
    "complaint_bad_details": lambda: ComplaintBadDetails(max=MAX_DETAILS),
}


def _one_line(text) -> str:
    # Line breaks from a text box become spaces: the entry's texts are printable single lines, as the bank requires.
    return " ".join(str(text or "").split())


def complaint_subject(business: str, category: str, details: str) -> dict:
    """What a complaint is about as stored (category, business, details when given), from what was typed; the
    screen's first step checks it alone. Raises ``ComplaintBadCategory``, ``ComplaintBadBusiness`` or
    ``ComplaintBadDetails``."""
    fields = {"category": category if category in CATEGORIES else None, "business": _one_line(business)}
    if details := _one_line(details):
        fields["details"] = details
    problem = subject_problem(fields)
    if problem is not None:
        raise _REFUSALS[problem]()
    return fields


@bound_station
def record_complaint(
    st: Station, session: agents.AgentSession, phone: str, business: str, category: str, details: str,
    consent: bool, txn: str | None = None,
) -> receipts.Receipt:
    """Journal a 12315 complaint (entry type ``complaint_12315``); its receipt shows the complaint number.

    ``consent`` must be True (else ``ComplaintNoConsent`` and nothing is recorded). ``details`` may be empty unless
    the category is ``other``. ``txn`` is the UUID the form was issued with: a second submission of the same form
    returns the first receipt.
    """
    if consent is not True:
        raise ComplaintNoConsent()
    fields = {"consent": True, "phone": normalise_phone(phone), **complaint_subject(business, category, details)}
    problem = complaint_problem(fields)
    if problem is not None:
        raise _REFUSALS[problem]()
    txn = form_txn(txn)
    with st.write():
        agents.check_session(st, session)
        earlier = recorded_by_form(txn, EntryType.COMPLAINT_12315, fields)
        if earlier is not None:
            return complaint_receipt(earlier)
        refuse_new_operations(st)
        moment = st.now()
        head_seq, head_token = journal_head(st)
        seq = (head_seq if head_token is not None else chain_base(st)[0]) + 1
        body = {"agent": session.agent_id, "complaint_no": complaint_number(st.station_id, st.local_date(moment), seq),
                **fields}
        entry = append_entry(st, EntryType.COMPLAINT_12315, moment, body, txn=txn)
    return complaint_receipt(entry)


def complaint_receipt(entry: JournalEntry) -> receipts.Receipt:
    """The receipt of a complaint entry: its number, the phone masked, the business, category and what happened."""
    said = unverified_payload(entry.token)
    details = {"complaint_no": said["complaint_no"], "phone_masked": mask_phone(said["phone"]),
               "business": said["business"], "category": said["category"]}
    if "details" in said:
        details["details"] = said["details"]
    return receipts.Receipt(
        seq=entry.seq, txn=entry.txn, type=EntryType.COMPLAINT_12315, token=entry.token, amount_fen=0, fee_fen=0,
        status=OperationState.RECORDED, account_masked=None, recorded_at=entry.recorded_at, details=details)

