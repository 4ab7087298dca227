"""Refusals of the sync envelopes (batches and acks), one place for every module that opens them.

Each refusal has a stable ``code``: the server answers a refused batch with the problem type of that code
(``sync_server/problems.py``), so a code never changes once a station in the field may read it. ``seq`` names the
entry at fault when there is one.
"""

from __future__ import annotations


class EnvelopeError(ValueError):
    """A batch or ack that cannot be opened. ``code`` is stable (the server's problem type uses it)."""

    code = "malformed-batch"

    def __init__(self, message: str, *, seq: int | None = None):
        super().__init__(message)
        self.seq = seq


class Undecryptable(EnvelopeError):
    """The sealed bytes do not decrypt with the recipient's key and the info they must have been sealed with."""

    code = "undecryptable"


class BadBatchSignature(EnvelopeError):
    """The batch or ack signature does not verify with the sender's pinned key."""

    code = "bad-signature"


class BadTailClaim(BadBatchSignature):
    """The batch's tail claim (how far the station's journal reaches) is not a well-formed claim signed with the
    station's key: the batch is refused as a bad signature, since the claim is signed data of the batch."""


class BadEntry(EnvelopeError):
    """One entry of a batch is malformed, unsigned, or not chained where it should be."""

    code = "invalid-entry"


class TooLarge(EnvelopeError):
    """The sealed bytes, or what they expand to, exceed the bound."""

    code = "too-large"
