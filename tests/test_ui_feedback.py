"""station.feedback.record_feedback: validated, journaled, signed."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from station import errors, receipts
from station.db import JournalEntry
from station.feedback import InvalidFeedbackCategory, InvalidFeedbackText, record_feedback
from station.protocol.tokens import verify_token


def test_feedback_is_a_signed_journal_entry(station, agent):
    receipt = record_feedback(station, agent, "suggestion", "  希望多放些零钱  ")
    entry = JournalEntry.get_by_id(receipt.seq)
    body = verify_token(entry.token, station.keyset())
    assert (entry.type, body["agent"], body["category"], body["text"]) == (
        "feedback", "A01", "suggestion", "希望多放些零钱")
    assert receipt.details == {"category": "suggestion", "text": "希望多放些零钱"}


@pytest.mark.parametrize(
    ("category", "text", "error"),
    [
        ("thanks", "good", InvalidFeedbackCategory),
        ("praise", "", InvalidFeedbackText),
        ("praise", "x" * 201, InvalidFeedbackText),
    ],
)
def test_feedback_refusals_record_nothing(station, agent, category, text, error):
    head = JournalEntry.select().count()
    with pytest.raises(error):
        record_feedback(station, agent, category, text)
    assert JournalEntry.select().count() == head


def test_feedback_needs_a_live_agent_session(station, agent, clock):
    with pytest.raises(errors.AgentSessionInvalid):
        record_feedback(station, replace(agent, expires_at=clock.now - timedelta(seconds=1)), "praise", "ok")


def test_the_same_txn_records_once_and_refuses_other_words(station, agent):
    txn = receipts.new_txn_id()
    first = record_feedback(station, agent, "praise", "很耐心", txn)
    again = record_feedback(station, agent, "praise", "很耐心", txn)
    assert (again.seq, again.token, again.txn) == (first.seq, first.token, txn)
    with pytest.raises(errors.TxnConflict):
        record_feedback(station, agent, "complaint", "太慢", txn)
    assert JournalEntry.select().where(JournalEntry.type == "feedback").count() == 1
