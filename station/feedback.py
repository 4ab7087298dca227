"""客户之声 customer voice: a customer's praise, complaint or suggestion, journaled and forwarded with the sync.

Like every state change, a feedback is one signed journal entry written in its own transaction; it has no
business row of its own (the journal entry is the record).
"""

from __future__ import annotations

import uuid

from station import agents, errors, receipts
from station.context import Station, bound_station
from station.db import JournalEntry
from station.device_state import refuse_new_operations
from station.errors import N_, StationError
from station.journal import append_entry
from station.protocol.entry_types import SPECS, EntryType, OperationState, printable
from station.protocol.tokens import unverified_payload

CATEGORIES = SPECS[EntryType.FEEDBACK].fields["category"].choices
MAX_TEXT = 200


class InvalidFeedbackCategory(StationError):
    code = "invalid_feedback_category"
    template = N_("Choose praise, complaint or suggestion.")


class InvalidFeedbackText(StationError):
    code = "invalid_feedback_text"
    template = N_("Write what the customer said, in 1 to %(max)d characters.")


@bound_station
def record_feedback(
    st: Station, session: agents.AgentSession, category: str, text: str, txn: str | None = None
) -> receipts.Receipt:
    """Journal a customer's feedback (entry type ``feedback``, body {agent, category, text}).

    ``txn`` is the UUID the form was issued with: a second submission of the same form (a double tap) returns
    the first receipt instead of recording twice.
    """
    # Line breaks from the text box become spaces: the entry's text is one printable line, as the bank requires.
    text = " ".join(str(text or "").split())
    if category not in CATEGORIES:
        raise InvalidFeedbackCategory()
    if not 1 <= len(text) <= MAX_TEXT or not printable(text):
        raise InvalidFeedbackText(max=MAX_TEXT)
    if txn is not None:
        try:
            txn = str(uuid.UUID(str(txn)))
        except ValueError as exc:
            raise errors.InvalidTxnId() from exc
    with st.write():
        agents.check_session(st, session)
        earlier = JournalEntry.get_or_none(JournalEntry.txn == txn) if txn is not None else None
        if earlier is not None:
            said = unverified_payload(earlier.token)
            if (earlier.type, said.get("category"), said.get("text")) != (EntryType.FEEDBACK, category, text):
                raise errors.TxnConflict()
            return _receipt(earlier, category, text)
        refuse_new_operations(st)
        body = {"agent": session.agent_id, "category": category, "text": text}
        entry = append_entry(st, EntryType.FEEDBACK, st.now(), body, txn=txn)
    return _receipt(entry, category, text)


def _receipt(entry: JournalEntry, category: str, text: str) -> receipts.Receipt:
    return receipts.Receipt(
        seq=entry.seq,
        txn=entry.txn,
        type=EntryType.FEEDBACK,
        token=entry.token,
        amount_fen=0,
        fee_fen=0,
        status=OperationState.RECORDED,
        account_masked=None,
        recorded_at=entry.recorded_at,
        details={"category": category, "text": text},
    )
