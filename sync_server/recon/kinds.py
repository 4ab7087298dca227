"""What reconciliation can find: the kinds of discrepancy, their groups, and one discrepancy as data.

``KINDS`` is the contract of ``recon run --format json`` (docs/recon.md): exactly these kinds, each in one group,
each with a sentence that explains it and one that says what the clerk should do. The sentences are English
message ids with ``{name}`` placeholders filled from the discrepancy; ``sync_server.recon.i18n`` translates them
(Chinese by default) from the project's Babel catalogue.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field


def N_(message: str) -> str:
    """Mark a message for extraction (pybabel ``-k N_``); it is translated when shown."""
    return message


@dataclass(frozen=True)
class KindSpec:
    kind: str
    group: str
    explanation: str
    action: str


_SPECS = [
    # -- completeness -------------------------------------------------------------------------------------
    KindSpec("seq_gap", "completeness",
             N_("Station {station} has no entries {first} to {last} ({missing} missing): the bank cannot prove "
                "they were recorded and arrived."),
             N_("Ask the station to sync again; if it cannot, fetch its journal export and import it.")),
    KindSpec("missing_tail", "completeness",
             N_("Station {station} signed that its journal reaches seq {claimed}, but the bank holds only up to "
                "{held}: {missing} entries have not arrived."),
             N_("Check the station's link and make it sync; if the device is lost, recover its journal.")),
    KindSpec("station_silent", "completeness",
             N_("Station {station} has not synced since {since} ({hours} hours, policy {limit} hours)."),
             N_("Call the agent: check the device, its power and its link; operations may be waiting on it.")),
    KindSpec("station_revoked", "completeness",
             N_("Station {station} was revoked at {revoked_at}: the bank holds its journal up to seq {held}, and "
                "{missing} more entries the station signed for (up to seq {claimed}) never arrived."),
             N_("Recover the device or its backup, export its journal and import it (sync-server journal import); "
                "settle the agent's cash for the station.")),
    # -- integrity ----------------------------------------------------------------------------------------
    KindSpec("fork", "integrity",
             N_("Station {station} holds two different histories at seq {seq}: {reason}."),
             N_("Stop the station, keep both copies, and have the technician and security compare them.")),
    KindSpec("bad_signature", "integrity",
             N_("Entry {seq} of station {station} does not carry the station's valid signature: it was altered "
                "after it was signed."),
             N_("Treat it as tampering: compare with the station's own journal export and report to security.")),
    KindSpec("broken_chain", "integrity",
             N_("Entry {seq} of station {station} does not link to the entry before it ({reason})."),
             N_("Compare the bank's copy with the station's journal export; report to security if they differ.")),
    KindSpec("unknown_key", "integrity",
             N_("Entry {seq} of station {station} is signed with a key the bank never enrolled for it ({kid})."),
             N_("Treat it as a foreign device or a stolen identity: revoke the station and report to security.")),
    # -- ledger -------------------------------------------------------------------------------------------
    KindSpec("entry_without_postings", "ledger",
             N_("Settled {type} {seq} of station {station} ({amount}) has no postings in the ledger."),
             N_("Have the ledger team post it from the signed entry, or reject it with the station's agreement.")),
    KindSpec("postings_without_entry", "ledger",
             N_("The ledger has postings for seq {seq} of station {station} ({amount} moved) {reason}."),
             N_("Find who posted them; reverse them with a correcting entry if nothing signed supports them.")),
    KindSpec("unbalanced_postings", "ledger",
             N_("The postings of seq {seq} of station {station} sum to {amount}, not zero."),
             N_("Have the ledger team find the missing or wrong leg and correct it with a new entry.")),
    KindSpec("amount_mismatch", "ledger",
             N_("The ledger moved {amount} on {account} for {type} {seq} of station {station}; the signed entry "
                "says {expected}."),
             N_("Correct the ledger to the signed entry with an adjusting entry, and find out who changed it.")),
    KindSpec("balance_mismatch", "ledger",
             N_("Account {account} shows a balance of {amount}; its postings add up to {expected}."),
             N_("Recompute the balance from the postings and find out who changed it.")),
    # -- billers ------------------------------------------------------------------------------------------
    KindSpec("biller_missing_in_file", "billers",
             N_("Bill payment {txn} ({amount}, reference {reference}, {day}) is missing in {biller}'s "
                "settlement file."),
             N_("Send the payment to {biller} again or ask them why they left it out.")),
    KindSpec("biller_unexpected_in_file", "billers",
             N_("{biller}'s settlement file lists {amount} for reference {reference} on {day} that the bank "
                "never took."),
             N_("Ask {biller} to remove it from their file, or find the station that took the payment.")),
    KindSpec("biller_amount_mismatch", "billers",
             N_("{biller}'s file says {amount} for payment {txn} (reference {reference}); the bank took "
                "{expected}."),
             N_("Agree the amount with {biller} and settle the difference.")),
    KindSpec("biller_duplicate", "billers",
             N_("{biller}'s settlement files list one payment (reference {reference}, {amount}, {day}) {count} "
                "times."),
             N_("Ask {biller} to withdraw the duplicate line; pay it only once.")),
    # -- cash ---------------------------------------------------------------------------------------------
    KindSpec("cash_variance", "cash",
             N_("Day close {seq} of station {station} on {day} was {amount} off the expected drawer of "
                "{expected} (tolerance {tolerance})."),
             N_("Ask the agent to explain the difference; recover a shortage under the agent agreement.")),
    KindSpec("float_mismatch", "cash",
             N_("Station {station}'s cash account holds {amount}, but its signed journal says the drawer should "
                "be {expected}."),
             N_("Find the postings on the station's cash account that no signed entry explains.")),
    # -- risk ---------------------------------------------------------------------------------------------
    KindSpec("rejected_offline_debit", "risk",
             N_("Station {station} paid out {amount} to account {account} offline (seq {seq}), and the bank "
                "rejected it ({reason}): the cash must be recovered."),
             N_("Contact the customer and the agent to recover the cash, then resolve this with a note.")),
    KindSpec("allowance_exceeded", "risk",
             N_("Station {station} debited account {account} {amount} offline (seq {seq}) beyond what the bank "
                "allowed ({reason}); the bank rejected it."),
             N_("Tell the customer the operation did not go through; check the station's offline limits.")),
    KindSpec("clock_offset", "risk",
             N_("Station {station}'s clock is {minutes} minutes off the bank's (allowed {limit} minutes)."),
             N_("Have the agent or technician set the device's clock; check its daily totals for the days "
                "affected.")),
    KindSpec("clock_corrected", "risk",
             N_("The technician of station {station} accepted its clock as right at seq {seq} ({day}): it had run "
                "{minutes} minutes ahead of what it reads now. Reason given: {note}."),
             N_("Check with the technician that the clock really had run ahead (a clock set back would hide when "
                "operations happened) and that the station's next clock offset is small; then resolve this with a "
                "note.")),
    KindSpec("reversal_mismatch", "risk",
             N_("{type} {seq} of station {station} undoes {ref_txn} but {reason}."),
             N_("Check the reversal with the supervisor who made it and correct the ledger.")),
]

KINDS: dict[str, KindSpec] = {spec.kind: spec for spec in _SPECS}
GROUPS: tuple[str, ...] = ("completeness", "integrity", "ledger", "billers", "cash", "risk")

#: The fields that say where a discrepancy is; with its kind they make its identity (``fingerprint``).
LOCATION_FIELDS = ("station", "seq", "txn", "account", "biller", "reference", "day")


@dataclass(frozen=True)
class Discrepancy:
    """One finding. ``detail`` holds the values its explanation names (amounts in fen, texts, counts);
    ``day`` is the local business date it belongs to (None: it is about the station or account as a whole)."""

    kind: str
    station: str | None = None
    seq: int | None = None
    txn: str | None = None
    account: str | None = None
    biller: str | None = None
    reference: str | None = None
    amount_fen: int | None = None
    expected_fen: int | None = None
    day: str | None = None
    detail: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown discrepancy kind {self.kind!r}")

    @property
    def fingerprint(self) -> str:
        """Its identity, stable across runs: SHA-256 of its kind and location (never of its amounts)."""
        identity = [self.kind, *(getattr(self, name) for name in LOCATION_FIELDS)]
        return hashlib.sha256(json.dumps(identity, ensure_ascii=False).encode()).hexdigest()
