"""客户之声 customer voice: a customer's praise, complaint or suggestion, journaled and forwarded with the sync; and
the bank's answer, brought back by the downlink ("客户有呼声，银行有回声").

Like every state change, a feedback is one signed journal entry written in its own transaction; it has no
business row of its own (the journal entry is the record). The bank's answer to it is a ``VoiceAnswer`` row keyed by
the entry's seq (``apply_answers``): not journaled, since it is the bank's word, not the station's act; the home
screen says an answer came until the agent marks it read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from station import agents, receipts
from station.context import Station, bound_station
from station.db import JournalEntry, VoiceAnswer
from station.device_state import refuse_new_operations
from station.errors import N_, StationError
from station.journal import append_entry, form_txn, recorded_by_form
from station.protocol.entry_types import SPECS, EntryType, OperationState, one_line, printable
from station.protocol.times import parse_utc
from station.protocol.tokens import unverified_payload

CATEGORIES = SPECS[EntryType.FEEDBACK].fields["category"].choices
MAX_TEXT = 200
#: The longest answer the station shows (the bank writes at most 200 characters: ``sync_server.voice``).
MAX_ANSWER = 200


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
    txn = form_txn(txn)
    with st.write():
        agents.check_session(st, session)
        earlier = recorded_by_form(txn, EntryType.FEEDBACK, {"category": category, "text": text})
        if earlier is not None:
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


# -- the bank's answers -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answered:
    """A customer's voice recorded here and the bank's answer to it, as the agent sees them."""

    seq: int
    recorded_at: datetime
    category: str
    text: str
    note: str
    answered_at: datetime
    read: bool


def apply_answers(items) -> None:
    """Keep the downlink's ``voice_answers`` (call it in the ack's transaction): a ``resolved`` item's note becomes
    the answer to the feedback at its seq (unread again when the note is new), an ``open`` one (the bank reopened
    it) withdraws the answer. Answers the list does not name stay: it carries only the latest the bank changed.

    The downlink is signed by the bank, yet an item that is not an answer the screen can show (a seq that is not a
    feedback of this journal, a note that is not one printable line of at most ``MAX_ANSWER`` characters, a time
    that is not UTC) is skipped rather than shown."""
    if not isinstance(items, list):
        return
    feedback = {seq for (seq,) in JournalEntry.select(JournalEntry.seq).where(
        (JournalEntry.type == EntryType.FEEDBACK)
        & JournalEntry.seq.in_([item.get("seq") for item in items if isinstance(item, dict)
                                and type(item.get("seq")) is int])).tuples()}
    for item in items:
        if not isinstance(item, dict) or item.get("seq") not in feedback:
            continue
        if item.get("status") == "open":
            VoiceAnswer.delete().where(VoiceAnswer.seq == item["seq"]).execute()
            continue
        note = one_line(item.get("note"), MAX_ANSWER)
        try:
            answered_at = parse_utc(item.get("at"))
        except (TypeError, ValueError):
            continue
        if item.get("status") != "resolved" or note is None:
            continue
        held = VoiceAnswer.get_or_none(VoiceAnswer.seq == item["seq"])
        if held is None:
            VoiceAnswer.create(seq=item["seq"], note=note, answered_at=answered_at)
        elif held.note != note:
            VoiceAnswer.update(note=note, answered_at=answered_at, read_at=None).where(
                VoiceAnswer.seq == item["seq"]).execute()


@bound_station
def unread_answers(st: Station) -> int:
    """How many of the bank's answers the agent has not marked read."""
    return VoiceAnswer.select().where(VoiceAnswer.read_at.is_null()).count()


@bound_station
def answers(st: Station) -> list[Answered]:
    """The bank's answers with the customer's words, unread first, then the newest answer first."""
    rows = list(VoiceAnswer.select())
    entries = {entry.seq: entry for entry in JournalEntry.select().where(
        JournalEntry.seq.in_([row.seq for row in rows]))}
    shown = []
    for row in rows:
        said = unverified_payload(entries[row.seq].token)
        shown.append(Answered(seq=row.seq, recorded_at=entries[row.seq].recorded_at, category=said["category"],
                              text=said["text"], note=row.note, answered_at=row.answered_at,
                              read=row.read_at is not None))
    return sorted(shown, key=lambda a: (a.read, -a.answered_at.timestamp(), -a.seq))


@bound_station
def mark_answers_read(st: Station, session: agents.AgentSession) -> int:
    """The agent has read every answer shown: the home screen's notice goes. Returns how many were unread."""
    with st.write():
        agents.check_session(st, session)
        return VoiceAnswer.update(read_at=st.now()).where(VoiceAnswer.read_at.is_null()).execute()
