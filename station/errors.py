"""Named refusals of the station's operations.

Each refusal is one class with a stable ``code`` (logs, API, tests) and an English message template
marked with ``N_`` so the UI's catalogue can translate it (``gettext(err.template) % err.params``).
Messages never contain a PIN or a full card number.
"""

from __future__ import annotations

# One marker for translatable strings, declared with the entry types' labels; the UI modules import it from here.
from station.protocol.entry_types import N_


class StationError(Exception):
    code = "station_error"
    template = N_("The station could not do that.")

    def __init__(self, template: str | None = None, **params):
        if template is not None:
            self.template = template
        self.params = params
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return self.template % self.params if self.params else self.template


class StationBusy(StationError):
    code = "station_busy"
    template = N_("The station is busy for a moment. Nothing was recorded; please try again.")


class StorageFull(StationError):
    """No room left on the device (``station.storage``): what was being written was rolled back whole."""

    code = "storage_full"
    template = N_("Storage is full: nothing was recorded. Call the technician. Receipts already recorded can "
                  "still be reprinted.")


# -- agent session ----------------------------------------------------------------------------------------
class AgentSessionInvalid(StationError):
    code = "agent_session_invalid"
    template = N_("Please log in again: the agent session has ended.")


class AgentUnknown(StationError):
    code = "agent_unknown"
    template = N_("Unknown agent ID or wrong PIN.")


class WrongAgentPin(StationError):
    code = "agent_wrong_pin"
    template = N_("Wrong PIN. Tries left before this agent is locked: %(remaining)d.")


class WrongSupervisorPin(WrongAgentPin):
    """The last supervisor who can log in is not locked by wrong PINs, only made to wait (``AgentWaiting``)."""

    template = N_("Wrong PIN. Tries left before a wait: %(remaining)d.")


class AgentLocked(StationError):
    code = "agent_locked"
    template = N_("This agent is locked after too many wrong PINs. A supervisor must unlock it.")


class AgentWaiting(StationError):
    """The last supervisor who can log in is never locked: after too many wrong PINs they wait, longer each time."""

    code = "agent_waiting"
    template = N_("Too many wrong PINs. Try again in %(minutes)d min, at %(time)s.")


class AgentNotLocked(StationError):
    code = "agent_not_locked"
    template = N_("This person is not locked: nothing to unlock.")


class UnlockCodeWrong(StationError):
    code = "unlock_code_wrong"
    template = N_("This unlock code is wrong, used already, or for another person. Check it with the bank.")


class UnlockCodesWaiting(StationError):
    code = "unlock_codes_waiting"
    template = N_("Too many wrong unlock codes. Try again in %(minutes)d min, at %(time)s.")


class UnlockCodesUnavailable(StationError):
    code = "unlock_codes_unavailable"
    template = N_("This station is not enrolled with the bank, so it cannot check unlock codes. Call the "
                  "technician.")


class SupervisorRequired(StationError):
    code = "supervisor_required"
    template = N_("Only a supervisor can do this.")


# -- adding an agent (station.agents.add_agent) ------------------------------------------------------------
class InvalidAgentId(StationError):
    code = "agent_id_invalid"
    template = N_("An ID is 1 to %(limit)d letters A-Z, digits or dashes, starting with a letter or digit, "
                  "e.g. A01.")


class AgentIdTaken(StationError):
    code = "agent_id_taken"
    template = N_("The ID %(agent)s is taken already: choose another.")


class InvalidAgentName(StationError):
    code = "agent_name_invalid"
    template = N_("Type the person's name: 1 to %(limit)d characters, no control characters.")


class InvalidAgentRole(StationError):
    code = "agent_role_invalid"
    template = N_("A role is agent or supervisor.")


class AgentPinRule(StationError):
    code = "agent_pin_rule"
    template = N_("A PIN is 4 to 6 digits.")


class WeakAgentPin(StationError):
    code = "agent_pin_weak"
    template = N_("This PIN is too easy to guess (one digit repeated, or digits in a row such as 1234): "
                  "choose another.")


class PinsDiffer(StationError):
    code = "agent_pins_differ"
    template = N_("The two PINs are not the same: type the PIN twice again.")


class PeopleAlreadySetUp(StationError):
    code = "people_already_set_up"
    template = N_("The shop's people are set up already: a supervisor adds anyone else.")


# -- day and drawer ---------------------------------------------------------------------------------------
class DayNotOpen(StationError):
    code = "day_not_open"
    template = N_("Open the day (count the cash float) before serving customers.")


class DayAlreadyOpen(StationError):
    code = "day_already_open"
    template = N_("The day is already open.")


class InvalidCashCount(StationError):
    code = "invalid_cash_count"
    template = N_("The cash count is not valid: each denomination needs a whole number of notes or coins.")


class CashCountTooLarge(StationError):
    code = "cash_count_too_large"
    template = N_("The cash count adds up to more than %(limit)s yuan: count the drawer again.")


class VarianceReasonRequired(StationError):
    code = "variance_reason_required"
    template = N_("The drawer is %(variance)s yuan out, more than %(tolerance)s yuan: choose or type the reason.")


class InvalidVarianceReason(StationError):
    code = "invalid_variance_reason"
    template = N_("Give the reason for the variance in plain text (at most 200 characters).")


class VarianceApprovalRequired(StationError):
    code = "variance_approval_required"
    template = N_("The drawer is %(variance)s yuan out, more than %(tolerance)s yuan: a supervisor must approve "
                  "the close with their PIN.")


# -- customer ---------------------------------------------------------------------------------------------
class InvalidCardNumber(StationError):
    code = "invalid_card_number"
    template = N_("That card number is not valid. Check the digits on the card.")


class InvalidPassbookNumber(StationError):
    code = "invalid_passbook_number"
    template = N_("That passbook number is not valid. It has 8 to 15 digits.")


class CustomerNotFound(StationError):
    code = "customer_not_found"
    template = N_("No customer with that number is known at this station. The customer can visit the branch.")


class CustomerLocked(StationError):
    code = "customer_locked"
    template = N_("This customer is locked after too many wrong PINs. Please visit the bank branch to unlock.")


class CustomerNotActive(StationError):
    code = "customer_not_active"
    template = N_("This account is closed and cannot be used. Please visit the bank branch.")


class WrongCustomerPin(StationError):
    code = "customer_wrong_pin"
    template = N_("Wrong PIN. Tries left: %(remaining)d.")


class CustomerPinRequired(StationError):
    code = "customer_pin_required"
    template = N_("The customer must enter the PIN again.")


# -- amounts and limits -----------------------------------------------------------------------------------
class InvalidAmount(StationError):
    """``reason`` is the money parser's code; the template is the matching entry of AMOUNT_MESSAGES."""

    code = "invalid_amount"
    template = N_("Enter the amount in digits, for example 100 or 12.50.")

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(AMOUNT_MESSAGES.get(reason, self.template))


#: One message per ``AmountError.code`` of ``station.protocol.money.parse_amount``.
AMOUNT_MESSAGES = {
    "amount_empty": N_("Enter an amount."),
    "amount_negative": N_("An amount cannot be negative."),
    "amount_zero": N_("The amount must be more than zero."),
    "amount_precision": N_("An amount can have at most two decimals (fen)."),
    "amount_format": N_("Enter the amount in digits, for example 100 or 12.50."),
    "amount_too_large": N_("That amount is far too large."),
    "amount_type": N_("Enter the amount in digits, for example 100 or 12.50."),
}


class WithdrawalAmountRule(StationError):
    code = "withdrawal_amount_rule"
    template = N_("Withdrawals are at least %(minimum)s yuan, in multiples of %(multiple)s yuan.")


class IdentityRequired(StationError):
    code = "identity_required"
    template = N_("Above %(limit)s yuan, or for a proxy, record the ID card of the person present first.")


#: Why a typed ID card number is refused (``station.protocol.id_card.IdNumberError.code``), in words.
ID_NUMBER_MESSAGES = {
    "format": N_("An ID card number is 18 characters: 17 digits, then a digit or X."),
    "birth_date": N_("The birth date in this ID card number (characters 7 to 14) is not a real date."),
    "check_digit": N_("This ID card number does not add up: check each digit against the card."),
}


class InvalidIdNumber(StationError):
    """``reason`` is the ID card parser's code; the template is the matching entry of ID_NUMBER_MESSAGES."""

    code = "invalid_id_number"
    template = ID_NUMBER_MESSAGES["format"]

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(ID_NUMBER_MESSAGES.get(reason, self.template))


class DepositAmountRule(StationError):
    code = "deposit_amount_rule"
    template = N_("Deposits are at least %(minimum)s yuan.")


class StationDepositLimit(StationError):
    code = "station_deposit_limit"
    template = N_("This station has taken in its most deposits for today (%(limit)s yuan); %(left)s yuan left.")


class BillAmountRule(StationError):
    code = "bill_amount_rule"
    template = N_("For this biller the amount must be between %(minimum)s and %(maximum)s yuan.")


class TopUpDenominationRule(StationError):
    code = "topup_denomination_rule"
    template = N_("Mobile top-up comes only in these amounts: %(choices)s yuan.")


class UnknownWmpProduct(StationError):
    code = "unknown_wmp_product"
    template = N_("This product is not in the bank's catalogue at this station.")


class WmpWindowClosed(StationError):
    code = "wmp_window_closed"
    template = N_("This product takes orders from %(opens)s to %(closes)s only.")


class WmpRiskLevelTooLow(StationError):
    code = "wmp_risk_level_too_low"
    template = N_("This product is risk level R%(product)s; the customer's risk assessment is R%(customer)s. The order "
                  "cannot be taken.")


class WmpNotAssessed(StationError):
    code = "wmp_not_assessed"
    template = N_("The bank has no risk assessment for this customer: no wealth product can be ordered. The customer "
                  "can be assessed at a branch.")


class WmpAmountRule(StationError):
    code = "wmp_amount_rule"
    template = N_("For this product the amount is at least %(minimum)s yuan, then in steps of %(step)s yuan.")


class WmpRiskStatementRequired(StationError):
    code = "wmp_risk_statement_required"
    template = N_("Read the risk statement with the customer first.")


class OverTransactionLimit(StationError):
    code = "over_transaction_limit"
    template = N_("The most for one %(operation)s is %(limit)s yuan.")


class OverDailyLimit(StationError):
    code = "over_daily_limit"
    template = N_("Daily limit reached: at most %(limit)s yuan a day; %(left)s yuan left today.")


class OverOfflineAllowance(StationError):
    code = "over_offline_allowance"
    template = N_("More than this customer can use at this station until it syncs: %(left)s yuan left.")


class StationExposureLimit(StationError):
    code = "station_exposure_limit"
    template = N_("The station has too much waiting for the bank. Sync before more debits.")


class OfflineTooLong(StationError):
    code = "offline_too_long"
    template = N_(
        "No sync for over %(hours)d hours: withdrawals, transfers and account payments are paused until the "
        "station syncs. Deposits and cash bill payments still work."
    )


class OfflineAgeUnknown(StationError):
    """The clock was corrected after it ran ahead, and the last sync was stamped by the clock ahead: how long the
    station has been offline is unknown until it syncs (``station.limits.offline_age_unknown``)."""

    code = "offline_age_unknown"
    template = N_(
        "The clock was corrected: connect to the bank once before offline operations. Withdrawals, transfers and "
        "account payments wait for that sync unless the bank authorizes them online; deposits and cash bill "
        "payments still work."
    )


class InsufficientCash(StationError):
    code = "insufficient_cash"
    template = N_("Not enough cash in the drawer: %(cash)s yuan left.")


# -- transfers and bills ----------------------------------------------------------------------------------
class InvalidPayeeAccount(StationError):
    code = "invalid_payee_account"
    template = N_("The payee account number is not valid: it has 10 to 19 digits.")


class InvalidReversalReason(StationError):
    code = "invalid_reversal_reason"
    template = N_("Give the reason for the reversal in plain text (at most 200 characters).")


class InvalidPayeeName(StationError):
    code = "invalid_payee_name"
    template = N_("Enter the payee's name as on the account (at most 30 characters).")


class OwnAccountTransfer(StationError):
    code = "own_account_transfer"
    template = N_("A transfer cannot go to the customer's own account.")


class PayeeBlocked(StationError):
    code = "payee_blocked"
    template = N_("The bank has blocked transfers to this account. Do not send money to it.")


class FraudWarningRequired(StationError):
    code = "fraud_warning_required"
    template = N_("Read the fraud warning with the customer and confirm it before sending.")


class FraudSupervisorRequired(StationError):
    code = "fraud_supervisor_required"
    template = N_("From ¥%(amount)s a supervisor must type their PIN to continue past the fraud warning.")


class UnknownBiller(StationError):
    code = "unknown_biller"
    template = N_("Unknown biller.")


class InvalidBillReference(StationError):
    """A bill reference the biller's rules refuse; the message says what is expected when the rules say it.

    ``station.operations.bill_reference_refusal`` picks the template from the biller's pattern: the number of
    digits (``%(digits)s``: "10" or "10-12") and a phone number's first digits (``%(prefix)s``).
    """

    code = "invalid_bill_reference"
    template = N_("That is not a valid account number for this company: check the number on the bill.")
    ACCOUNT_DIGITS = N_("The account number is %(digits)s digits.")
    PHONE_DIGITS = N_("A phone number is %(digits)s digits.")
    PHONE_DIGITS_PREFIX = N_("A phone number is %(digits)s digits, starting with %(prefix)s.")
    PHONE = N_("That is not a valid phone number: check it with the customer.")


class BillerRulesBroken(StationError):
    code = "biller_rules_broken"
    template = N_("The bank's account number rules for this company are broken: it cannot be paid here until "
                  "the bank fixes them. Nothing was recorded.")


class WrongCarrier(StationError):
    code = "wrong_carrier"
    template = N_("That phone number does not belong to %(biller)s.")


# -- idempotency, reversal, cancellation ------------------------------------------------------------------
class TxnConflict(StationError):
    code = "txn_conflict"
    template = N_("This transaction number was already used for a different operation.")


class InvalidTxnId(StationError):
    code = "invalid_txn_id"
    template = N_("The transaction number is not valid.")


class NotReversible(StationError):
    code = "not_reversible"
    template = N_("This receipt cannot be reversed.")


class AlreadyReversed(StationError):
    code = "already_reversed"
    template = N_("This receipt was already reversed.")


class ReversalTooLate(StationError):
    code = "reversal_too_late"
    template = N_("Only today's receipts can be reversed, while the day is open.")


class NotCancellable(StationError):
    code = "not_cancellable"
    template = N_("This transfer cannot be cancelled any more: the bank has already dealt with it.")


class NoSuchReceipt(StationError):
    code = "no_such_receipt"
    template = N_("No such receipt at this station.")


# -- the device's state (station.device_state) ------------------------------------------------------------
class StationRevoked(StationError):
    code = "station_revoked"
    template = N_("The bank has revoked this station: no new operations. Call the bank.")


class ClockNotSet(StationError):
    code = "clock_not_set"
    template = N_("The clock is not set: waiting for network time. No new operations until it is.")


class ClockWrong(StationError):
    code = "clock_wrong"
    template = N_("The clock is wrong: it is earlier than what this station already recorded. No new operations. "
                  "Call the technician.")


class ClockNotBehind(StationError):
    """``station clock accept`` on a clock that is not behind the floor: there is nothing to correct."""

    code = "clock_not_behind"
    template = N_("The clock is not behind what this station already recorded: nothing to correct.")


class InvalidClockReason(StationError):
    code = "invalid_clock_reason"
    template = N_("The reason must be one line of at most %(limit)d printable characters.")


# -- the bank's real-time refusals (station.online; reasons of station.protocol.authorizations.REFUSALS) -----
class BankRefused(StationError):
    """The bank refused the operation in real time, with its signed answer: nothing is recorded. ``reason`` is
    the bank's (one of ``REFUSALS``); each has its own class, worded for the agent and the customer."""

    code = "bank_refused"
    reason = ""
    template = N_("The bank refused this operation. Nothing was recorded.")


class BankInsufficientFunds(BankRefused):
    code, reason = "bank_insufficient_funds", "insufficient_funds"
    template = N_("The bank refused: not enough money in the account for this amount and its fee. "
                  "Nothing was recorded.")


class BankAccountLocked(BankRefused):
    code, reason = "bank_account_locked", "account_locked"
    template = N_("The bank refused: this account is locked. Please visit the bank branch to unlock it.")


class BankAccountClosed(BankRefused):
    code, reason = "bank_account_closed", "account_closed"
    template = N_("The bank refused: this account is closed.")


class BankUnknownAccount(BankRefused):
    code, reason = "bank_unknown_account", "unknown_account"
    template = N_("The bank refused: it does not know this account. Please visit the bank branch.")


class BankPayeeBlocked(BankRefused):
    code, reason = "bank_payee_blocked", "payee_blocked"
    template = N_("The bank refused: it has blocked the payee's account. Do not send money to it.")


class BankOverTransactionLimit(BankRefused):
    code, reason = "bank_over_transaction_limit", "over_transaction_limit"
    template = N_("The bank refused: more than the bank allows in one transaction.")


class BankOverDailyLimit(BankRefused):
    code, reason = "bank_over_daily_limit", "over_daily_limit"
    template = N_("The bank refused: more than the bank allows this customer in one day.")


class BankUnknownBiller(BankRefused):
    code, reason = "bank_unknown_biller", "unknown_biller"
    template = N_("The bank refused: it does not know this biller.")


class BankNotCancellable(BankRefused):
    code, reason = "bank_not_cancellable", "not_cancellable"
    template = N_("The bank refused: this transfer was already sent (or cancelled) and cannot be cancelled now.")


class BankUnknownWmpProduct(BankRefused):
    code, reason = "bank_unknown_product", "unknown_product"
    template = N_("The bank refused: it does not sell this product. Nothing was recorded.")


class BankWmpWindowClosed(BankRefused):
    code, reason = "bank_window_closed", "window_closed"
    template = N_("The bank refused: this product is not taking orders today. Nothing was recorded.")


class BankWmpRiskLevelTooLow(BankRefused):
    code, reason = "bank_risk_level_too_low", "risk_level_too_low"
    template = N_("The bank refused: the customer's risk assessment at the bank is below this product's risk "
                  "level. Nothing was recorded.")


class BankWmpAmountRule(BankRefused):
    code, reason = "bank_amount_rule", "amount_rule"
    template = N_("The bank refused: the amount does not follow this product's minimum and steps. "
                  "Nothing was recorded.")


class BankWmpSoldOut(BankRefused):
    code, reason = "bank_sold_out", "sold_out"
    template = N_("The bank refused: this product is sold out. Nothing was recorded.")


#: The class of each refusal reason the bank may give.
BANK_REFUSALS = {cls.reason: cls for cls in BankRefused.__subclasses__()}

#: Why the bank rejected an entry in its ack (``operation.outcome_reason``; docs/protocol.md), in words for the
#: receipt. A reason not listed here is shown as the bank's code.
REJECTION_REASONS = {
    "not_authorized": N_("beyond what the bank allowed this station for the customer"),
    "insufficient_funds": N_("not enough money in the account"),
    "account_closed": N_("the account is closed"),
    "unknown_account": N_("the bank does not know the account"),
    "payee_blocked": N_("the bank blocked the payee's account"),
    "fraud_warning_skipped": N_("the fraud warning was due and not read with the customer"),
    "supervisor_approval_missing": N_("a supervisor's approval past the fraud warning was missing"),
    "over_transaction_limit": N_("over the bank's limit for one transaction"),
    "over_daily_limit": N_("over the bank's daily limit"),
    "over_exposure_limit": N_("the station had too much waiting for the bank"),
    "amount_rule": N_("the amount breaks the bank's rules"),
    "wrong_fee": N_("the fee differs from the bank's"),
    "id_required": N_("the ID card of the person present was not recorded"),
    "duplicate_txn": N_("the bank already has this transaction"),
    "already_executed": N_("the bank had already sent the transfer"),
    "already_cancelled": N_("it was already cancelled"),
    "unknown_biller": N_("the bank does not know the biller"),
    "authorization_expired": N_("the bank's authorization had expired and the money was no longer there"),
    "over_deposit_limit": N_("over the station's deposits for the day"),
    "already_reversed": N_("it was already reversed"),
    "unlock_not_authorized": N_("the unlock was not by a supervisor of this station or a code the bank issued"),
    "variance_not_approved": N_("a cash variance beyond the tolerance without a reason and a supervisor's approval"),
    "not_reversible": N_("this kind of operation cannot be reversed"),
    "unknown_original": N_("the bank does not know the operation it refers to"),
    "invalid_amount": N_("the amount is not valid"),
    "malformed_entry": N_("the record is not well-formed"),
    "unknown_type": N_("the bank does not know this kind of record"),
    "complaint_no_consent": N_("the complainant's consent to forward it was not recorded"),
    "complaint_bad_phone": N_("the phone number is not a mobile or a landline with its area code"),
    "complaint_bad_category": N_("the complaint's category is not one the bank knows"),
    "complaint_bad_business": N_("the business complained about is missing, too long or not one line"),
    "complaint_bad_details": N_("what happened is too long, not one line, or missing for 'other'"),
    "complaint_bad_number": N_("the complaint number is not this station's for this record"),
    "unknown_product": N_("the bank does not know the product"),
    "window_closed": N_("the product was not open for orders (its window had closed, or the bank closed it)"),
    "sold_out": N_("the product was sold out"),
    "risk_level_too_low": N_("the customer's risk assessment is below the product's risk level"),
    "risk_statement_unread": N_("the risk statement was not read with the customer"),
}
