"""客户之声 customer voice: a customer's praise, complaint or suggestion, journaled and forwarded with the sync.

Like every state change, a feedback is one signed journal entry written in its own transaction; it has no
business row of its own (the journal entry is the record).
"""

from __future__ import annotations

from station import services
from station.context import Station
from station.errors import N_, StationError
from station.journal import append_entry

CATEGORIES = ("praise", "complaint", "suggestion")
MAX_TEXT = 200


class InvalidFeedbackCategory(StationError):
    code = "invalid_feedback_category"
    template = N_("Choose praise, complaint or suggestion.")


class InvalidFeedbackText(StationError):
    code = "invalid_feedback_text"
    template = N_("Write what the customer said, in 1 to %(max)d characters.")


def record_feedback(st: Station, session: services.AgentSession, category: str, text: str) -> services.Receipt:
    """Journal a customer's feedback (entry type ``feedback``, body {agent, category, text})."""
    st.activate()
    text = str(text or "").strip()
    if category not in CATEGORIES:
        raise InvalidFeedbackCategory()
    if not 1 <= len(text) <= MAX_TEXT:
        raise InvalidFeedbackText(max=MAX_TEXT)
    with st.db.atomic():
        services.check_session(st, session)
        body = {"agent": session.agent_id, "category": category, "text": text}
        entry = append_entry(st.signer, st.station_id, "feedback", st.now(), body)
    return services.Receipt(
        seq=entry.seq,
        txn=None,
        type="feedback",
        token=entry.token,
        amount_fen=0,
        fee_fen=0,
        status="recorded",
        account_masked=None,
        recorded_at=entry.recorded_at,
        details={"category": category, "text": text},
    )
