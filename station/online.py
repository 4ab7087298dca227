"""Online operations: ask the bank in real time, keep its signed answer, push what was recorded at once.

``authorize(st, kind, ...)`` sends one authorization request (``station.protocol.authorizations``: signed with the
key that signs the next entry, sealed to the pinned server key) through ``station.link.call_bank`` and waits at
most ``link`` setting ``auth_timeout_seconds``. It returns:

- the bank's verified grant (an ``Authorization``): the operation may be recorded under it (``auth`` in its entry);
- raises the refusal's ``station.errors.BankRefused`` subclass for a signed refusal: nothing is recorded;
- ``None`` when the station should not ask (not enrolled, the link known down: ``should_ask_bank``), when the bank
  did not answer in time or could not be reached, refused the request itself (problem+json), or answered
  something that does not verify (noted as the link failure ``bad_answer``): the offline rules apply.

Every verified answer, grant or refusal, is kept (``bank_authorization``: the bank's signed word), and its
``balance`` (the bank's ledger balance at ``server_time``, counting this station's entries through
``acked_seq``) becomes the customer's snapshot when it is newer than the one held.

A grant is *usable* (``usable_grant``) for exactly the operation it names: kind, txn, account, amount and fee
equal to a stored grant's, and not expired by the bank's clock (the station's clock plus the
``server_time_offset_ms`` the last ack measured). An operation recorded under a usable grant skips the offline
allowance, the unsynced exposure and the offline age (the bank holds its money), never the per-transaction and
daily limits or the drawer; anything else falls back to the offline rules and is never recorded as authorized.

``push_now(st)`` sends the outbox at once after an operation (one batch, one attempt, short timeouts), holding
``st.sync_lock`` only if it comes free quickly: a long background sync is never waited for, and a failed push
loses nothing (the entry stays in the outbox for the scheduler).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import requests

from station import errors
from station.context import Station
from station.db import BankAuthorization, Customer, Operation
from station.keys import KeyMissing
from station.link import call_bank, link_setting, note_failure, should_ask_bank
from station.protocol import heads, key_codecs
from station.protocol.authorizations import (
    CONTENT_TYPE,
    HEADER_NONCE,
    HEADER_STATION,
    Authorization,
    BadAuthorization,
    open_answer,
    request_payload,
    seal_request,
)
from station.protocol.entry_types import LIVE_STATES, EntryType, OperationState
from station.protocol.times import parse_utc, utc_text
from station.sync import USER_AGENT, SyncError, _encryption_key, pending_entries, sync_once, sync_setting

log = logging.getLogger(__name__)

#: What ``call_bank`` notes a real-time request as (``station.link``).
WHAT = "authorization"
#: How long the push after an operation waits for a sync already running in this process, in seconds.
PUSH_LOCK_SECONDS = 0.5
#: ``LIVE_STATES`` as an SQL list.
_LIVE_SQL = "(" + ", ".join(f"'{state}'" for state in LIVE_STATES) + ")"


def bank_now(st: Station) -> datetime:
    """The bank's time as this station reckons it: its clock plus the offset the last ack measured."""
    return st.now() + timedelta(milliseconds=int(st.setting("server_time_offset_ms") or 0))


# -- asking the bank ----------------------------------------------------------------------------------------
def authorize(st: Station, kind: str, *, txn: str, agent: str, account: str, amount: int = 0, fee: int = 0,
              http: requests.Session | None = None, **extra) -> Authorization | None:
    """Ask the bank to authorize one operation (module docstring); ``extra`` holds the kind's own fields
    (``payee_account``, ``biller``, ``ref_txn`` or ``product``). The grant, a ``BankRefused`` raised, or None."""
    if not should_ask_bank(st):
        return None
    server = st.config["server"]
    nonce = heads.new_nonce()
    try:
        # The key the bank knows as the station's newest: the one after the entries it acknowledged (a rotation
        # the bank has not received yet signs nothing it could verify).
        signer = st.signer_for(st.setting("acked_seq", 0) + 1)
    except KeyMissing as exc:
        log.warning("no key to sign an authorization request with: %s", exc)
        return None
    request = request_payload(station_id=st.station_id, nonce=nonce, ts=utc_text(st.now()), kind=kind, txn=txn,
                              agent=agent, account=account, amount=amount, fee=fee, **extra)
    body = seal_request(request, signer, key_codecs.encryption_public_from_jwk(server["encryption_jwk"]))
    timeout = float(link_setting(st, "auth_timeout_seconds"))
    headers = {"Content-Type": CONTENT_TYPE, HEADER_STATION: st.station_id, HEADER_NONCE: nonce,
               "User-Agent": USER_AGENT}
    url = f"{server['url']}/api/v1/stations/{st.station_id}/authorizations"
    try:
        response = call_bank(st, WHAT, lambda: (http or requests).post(
            url, data=body, headers=headers, timeout=timeout, verify=sync_setting(st, "ca_bundle") or True))
    except (requests.RequestException, OSError) as exc:
        log.info("no authorization for %s %s: %s", kind, txn, exc.__class__.__name__)
        return None
    if response.status_code != 200:
        # The bank refused the request itself (a problem+json: its clock, a replayed nonce, a revoked station):
        # it said nothing about the operation, so the offline rules apply.
        log.warning("the bank refused the authorization request for %s %s: HTTP %s %s", kind, txn,
                    response.status_code, response.text[:200])
        return None
    try:
        sealed = _sealed_answer(response)
        answer = open_answer(sealed, request=request, server_signing_jwk=server["signing_jwk"],
                             station_encryption_key=_encryption_key(st))
    except (ValueError, KeyError, TypeError, BadAuthorization) as exc:
        note_failure(st, WHAT, "bad_answer", str(exc))
        log.warning("the bank's authorization for %s %s does not verify: %s", kind, txn, exc)
        return None
    keep_answer(st, answer)
    if not answer.granted:
        raise errors.BANK_REFUSALS.get(answer.reason, errors.BankRefused)()
    return answer


def _sealed_answer(response: requests.Response) -> bytes:
    """The sealed answer of a 200: the body itself, of the authorization media type (``CONTENT_TYPE``)."""
    if response.headers.get("Content-Type", "").split(";")[0].strip() != CONTENT_TYPE:
        raise BadAuthorization(f"the answer is not of type {CONTENT_TYPE}")
    return response.content


def keep_answer(st: Station, answer: Authorization) -> None:
    """Store a verified answer (once per grant: the same txn asked again gets the same auth_id) and take its
    balance as the customer's snapshot when newer; a refusal for a locked or closed account marks it so."""
    now = st.now()
    with st.write():
        BankAuthorization.insert(
            auth_id=answer.auth_id, txn=answer.txn, kind=answer.kind, account_id=answer.account,
            amount_fen=answer.amount, fee_fen=answer.fee, reason=answer.reason,
            expires_at=_time_or_none(answer.expires_at), execute_after=_time_or_none(answer.execute_after),
            server_time=parse_utc(answer.server_time), token=answer.token, received_at=now,
        ).on_conflict(conflict_target=[BankAuthorization.auth_id], action="NOTHING").execute()
        customer = Customer.get_or_none(Customer.account_id == answer.account)
        if customer is None:
            return
        server_time = parse_utc(answer.server_time)
        if answer.balance is not None and answer.acked_seq is not None and (
                customer.balance_as_of is None or customer.balance_as_of <= server_time):
            Customer.update(balance_fen=answer.balance, balance_as_of=server_time,
                            balance_seq=answer.acked_seq).where(Customer.id == customer.id).execute()
        status = {"account_locked": "locked", "account_closed": "closed"}.get(answer.reason or "")
        if status:
            Customer.update(status=status).where(Customer.id == customer.id).execute()


def _time_or_none(text: str | None) -> datetime | None:
    try:
        return parse_utc(text) if text else None
    except ValueError:
        return None


# -- using a grant ------------------------------------------------------------------------------------------
def stored_grant(st: Station, authorization) -> BankAuthorization | None:
    """The stored grant behind ``authorization`` (an ``Authorization``, a ``BankAuthorization`` row or an
    auth_id), or None. An ``Authorization`` must say what the stored grant says."""
    if authorization is None:
        return None
    auth_id = authorization if isinstance(authorization, str) else getattr(authorization, "auth_id", None)
    if not auth_id:
        return None
    row = BankAuthorization.get_or_none(BankAuthorization.auth_id == auth_id)
    if row is None or row.reason is not None or row.expires_at is None:
        return None
    if isinstance(authorization, Authorization) and (
            authorization.token != row.token or not authorization.granted):
        return None
    return row


def usable_grant(st: Station, authorization, *, kind: str, txn: str, account: str, amount: int, fee: int
                 ) -> str | None:
    """The auth_id of ``authorization`` when it is the bank's stored grant of exactly this operation and has not
    expired by the bank's clock; None otherwise (the offline rules apply). Call it with the station bound."""
    row = stored_grant(st, authorization)
    if row is None:
        return None
    if (row.kind, row.txn, row.account_id, row.amount_fen, row.fee_fen) != (kind, txn, account, amount, fee):
        log.warning("authorization %s does not match the %s being recorded (%s): offline rules", row.auth_id,
                    kind, txn)
        return None
    if row.expires_at <= bank_now(st):
        log.info("authorization %s expired at %s: offline rules", row.auth_id, utc_text(row.expires_at))
        return None
    return row.auth_id


def grant_of(st: Station, op: Operation) -> BankAuthorization | None:
    """The grant an operation was recorded under, if any (its receipt shows the bank's times)."""
    if not op.auth_id:
        return None
    with st.bound():
        return BankAuthorization.get_or_none(BankAuthorization.auth_id == op.auth_id)


def transfer_cancel_until(st: Station, op: Operation) -> datetime | None:
    """Until when the bank said a transfer can be cancelled (its grant's ``execute_after``), or None."""
    grant = grant_of(st, op) if op.type == EntryType.TRANSFER else None
    return grant.execute_after if grant is not None else None


def transfer_cancellable(st: Station, op: Operation) -> bool:
    """Whether a cancellation of ``op`` may be tried: a transfer the bank has not received (recorded); or, with
    the bank to ask, one it settled whose execution time (when the bank named one) has not come."""
    if op.type != EntryType.TRANSFER:
        return False
    if op.status == OperationState.RECORDED:
        return True
    until = transfer_cancel_until(st, op)
    return op.status == OperationState.SETTLED and should_ask_bank(st) and (until is None or until > bank_now(st))


# -- balances -----------------------------------------------------------------------------------------------
def debits_since_snapshot(st: Station, customer: Customer) -> int:
    """This station's live debits of the customer recorded after the bank's balance snapshot counts."""
    return st.db.execute_sql(
        "SELECT COALESCE(SUM(debit_fen), 0) FROM operation"
        f" WHERE customer_id = ? AND seq > ? AND status IN {_LIVE_SQL}",
        (customer.id, customer.balance_seq or 0),
    ).fetchone()[0]


def live_balance(st: Station, customer: Customer) -> int | None:
    """The bank's last balance of the customer minus this station's live debits since it (None: no snapshot)."""
    if customer.balance_fen is None:
        return None
    return customer.balance_fen - debits_since_snapshot(st, customer)


# -- pushing at once ----------------------------------------------------------------------------------------
class _ShortTimeouts(requests.Session):
    """A session whose every request waits at most ``timeout`` (the push must not hold the counter)."""

    def __init__(self, timeout: float):
        super().__init__()
        self._timeout = timeout

    def request(self, *args, **kwargs):
        kwargs["timeout"] = self._timeout
        return super().request(*args, **kwargs)


def push_now(st: Station) -> bool:
    """Send the outbox now: one batch, one attempt, ``auth_timeout_seconds`` per request. True when the bank
    acknowledged it; False when another sync holds the lock, nothing waits, or it failed (the scheduler sends
    it later: nothing leaves the outbox before its ack)."""
    if not st.config.get("server") or not st.sync_lock.acquire(timeout=PUSH_LOCK_SECONDS):
        return False
    try:
        if pending_entries(st) == 0:
            return False
        with _ShortTimeouts(float(link_setting(st, "auth_timeout_seconds"))) as http:
            sync_once(st, http=http, attempts=1, max_batches=1, push=True)
        return True
    except SyncError as exc:
        log.info("push after the operation failed (the scheduler will send it): %s", exc)
        return False
    finally:
        st.sync_lock.release()

