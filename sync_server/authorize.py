"""Real-time authorization, the bank's side: a station asks while the link is up and the bank answers at once.

The wire format is ``station.protocol.authorizations``; docs/protocol.md, "Real-time authorization", is the spec.
``authorize`` takes a request in this order, the first failing step answering with a problem (RFC 9457, never a
500):

1. cheap checks: ``X-Station-Id`` names the path's station and ``X-Authorization-Nonce`` is a nonce
   (``malformed-request``), the body is no larger than any request (``too-large``);
2. the station: unknown, not enrolled, revoked or flagged, as for batches (``service.known_station``);
3. the body decrypts with the server's key under the headers' station and nonce (``undecryptable``), is an
   authorization request of that station and nonce (``malformed-authorization``), and verifies with the station's
   current signing key, the newest the bank holds (``bad-signature``);
4. its ``ts`` is within ``FRESHNESS`` of the bank's time (``clock-skew``, which names the bank's time);
5. in one transaction holding the station's row lock, then the customer account's (PostgreSQL ``FOR UPDATE``,
   as ``book.Book`` locks; SQLite transactions are IMMEDIATE): the nonce is new for the station (``replayed``);
   the station's expired authorizations are marked ``expired``; a grant already given for the txn is answered
   again (same fields: the same ``auth_id`` and expiry, never a second hold) or refused (other fields:
   ``authorization-conflict``); otherwise the bank decides with its own data (``decide``) and records the grant or
   the refusal.

Every decision is answered, signed with the server's key and sealed to the station (``answer_payload``,
``seal_answer``), with the customer's ledger balance and how far the bank holds the station's journal.

Invariant: a customer's offline holds (every station's ``Hold``) and live authorization holds together never
exceed the balance. A debit is granted only when amount + fee fits the available balance (balance minus every hold)
plus this station's own offline hold for the customer; the grant then takes what it needs beyond the available
balance out of that offline hold (``decide``), so the total held grows by at most the available balance. Every
write to a station's authorizations (a grant, the expiry sweep, the entry that consumes one) holds the station's
row lock, so they never deadlock with each other. A wealth-product order is granted only within its product's quota
less what every live grant of the product holds (``_wmp_problem``, under the product's row lock, as the batches
that settle orders take it): the product's live grants and settled orders together never exceed what it may sell.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from station.protocol import authorizations as protocol
from station.protocol.entry_types import Kind, fits
from station.protocol.envelope_errors import TooLarge, Undecryptable
from station.protocol.key_codecs import encryption_public_from_jwk
from station.protocol.times import parse_utc, utc_text
from station.protocol.wmp import SOLD_OUT, UNKNOWN_PRODUCT, WINDOW_CLOSED, amount_problem, risk_problem, window_problem
from sync_server.book import Book, expire_authorizations, insert_new_rows, live_authorizations, reserved_quota
from sync_server.db import (
    Authorization,
    AuthorizationNonce,
    Biller,
    BlockedPayee,
    DailyTotal,
    Entry,
    Station,
    Transfer,
    WmpProduct,
    db_proxy,
    is_postgres,
)
from sync_server.keys import ServerKeys
from sync_server.lifecycle import station_keys
from sync_server.policy import server_policy, station_policy
from sync_server.problems import Problem
from sync_server.service import known_station, locked_station, once_more_on_conflict

#: How far a request's ``ts`` may be from the bank's time. Nonces are kept twice as long: a request replayed
#: later than that is stale anyway.
FRESHNESS = timedelta(minutes=10)
#: The kinds that debit the customer and hold amount + fee while live.
DEBIT_KINDS = ("withdrawal", "transfer", "bill_payment", "wmp_order")


@dataclass(frozen=True)
class Answer:
    """The sealed answer body, and the payload the bank signed in it."""

    body: bytes
    payload: dict


@dataclass(frozen=True)
class Decision:
    """What the bank decided: a refusal's ``reason``, or a grant holding ``hold_fen`` that took ``from_offline_hold``
    out of the station's offline hold, with a transfer's ``execute_after``."""

    reason: str | None
    hold_fen: int = 0
    from_offline_hold: int = 0
    execute_after: str | None = None


def authorize(keys: ServerKeys, station_id: str, headers, body: bytes, now: datetime | None = None) -> Answer:
    """Answer one sealed authorization request (see the module docstring); raises :class:`Problem`."""
    now = now or datetime.now(UTC)
    nonce = _checked_headers(station_id, headers, body)
    station = known_station(station_id)
    request = open_verified(keys, station_id, nonce, body)
    _check_fresh(request, now)
    payload = once_more_on_conflict(lambda: _answer(station_id, request, now))
    return Answer(protocol.seal_answer(payload, keys.signer, encryption_public_from_jwk(station.encryption_jwk)),
                  payload)


def _checked_headers(station_id: str, headers, body: bytes) -> str:
    if headers.get(protocol.HEADER_STATION) != station_id:
        raise Problem("malformed-request", f"The {protocol.HEADER_STATION} header must name station {station_id}.")
    nonce = headers.get(protocol.HEADER_NONCE) or ""
    if not protocol.NONCE_RE.fullmatch(nonce):
        raise Problem("malformed-request", f"The {protocol.HEADER_NONCE} header must be 16 to 128 characters of "
                                           "base64url (A-Z a-z 0-9 - _).")
    if len(body) > protocol.MAX_SEALED_BYTES:
        raise Problem("too-large", f"An authorization request is at most {protocol.MAX_SEALED_BYTES} bytes.")
    return nonce


def open_verified(keys: ServerKeys, station_id: str, nonce: str, body: bytes) -> dict:
    """The request's payload, decrypted and verified with the station's current key (the newest the bank holds)."""
    try:
        token, _ = protocol.open_request(body, station_id=station_id, nonce=nonce,
                                         server_encryption_key=keys.encryption_key)
    except protocol.BadAuthorization as exc:
        # open_request keeps the sealing layer's refusal as the cause: a body that does not decrypt, or expands
        # beyond any request, keeps its own problem.
        cause = exc.__cause__
        slug = ("undecryptable" if isinstance(cause, Undecryptable) else "too-large" if isinstance(cause, TooLarge)
                else "malformed-authorization")
        raise Problem(slug, f"Authorization request refused: {exc}.") from exc
    keys_held = station_keys(station_id)
    if not keys_held:
        raise Problem("bad-signature", f"The bank holds no signing key of station {station_id}.")
    try:
        return protocol.verify_request(token, keys_held[-1].jwk)
    except protocol.BadAuthorization as exc:
        raise Problem("bad-signature", f"{exc}. A station that rotated its key sends the rotation entry first."
                      ) from exc


def _check_fresh(request: dict, now: datetime) -> None:
    try:
        sent = parse_utc(request["ts"])
    except ValueError as exc:
        raise Problem("malformed-authorization", "The request's ts is not a UTC time.") from exc
    skew = sent - now
    if abs(skew) > FRESHNESS:
        minutes = round(skew.total_seconds() / 60)
        direction = "ahead of" if minutes > 0 else "behind"
        raise Problem("clock-skew", f"The station's clock is {abs(minutes)} minutes {direction} the bank's "
                                    f"({utc_text(now)}): set the clock and ask again.", server_time=utc_text(now))


def request_hash(request: dict) -> str:
    """SHA-256 (hex) of what the request asks, whatever its nonce and time: equal for a retry of the same txn."""
    fields = {name: value for name, value in request.items() if name not in ("nonce", "ts")}
    return hashlib.sha256(protocol.payload_bytes(fields)).hexdigest()


def _answer(station_id: str, request: dict, now: datetime) -> dict:
    """Decide and record (or find the grant already given) in one transaction; the answer's payload."""
    now_text = utc_text(now)
    with db_proxy.atomic():
        station = locked_station(station_id)
        known_station(station_id)  # revoked or flagged while this request was opened
        _take_nonce(station_id, request["nonce"], now)
        expire_authorizations(station_id, now_text)
        if request["kind"] == "transfer_cancel":
            # Locked before the account, in the order ``admin.execute_due_transfers`` takes them.
            _transfer_query(station_id, request["ref_txn"]).execute()
        account = request["account"]
        book = Book(station_id, {account} if fits(Kind.ID, account) else set(), now_text)
        digest = request_hash(request)
        granted = Authorization.get_or_none((Authorization.station_id == station_id)
                                            & (Authorization.txn == request["txn"])
                                            & (Authorization.status != "refused"))
        if granted is not None:
            if granted.request_hash != digest:
                raise Problem("authorization-conflict", f"Txn {request['txn']} was authorized with other fields "
                                                        "(kind, agent, account, amount, fee or payee); a new "
                                                        "operation takes a new txn.")
            return _payload(request, book, station, now_text, reason=None, row=granted)
        policy = server_policy()
        decision = decide(book, request, policy, now)
        row = _record(station_id, request, digest, decision, policy, now)
        if decision.reason is None:
            book.add_authorization(row.auth_id, account, decision.hold_fen)
            if decision.from_offline_hold:
                book.set_hold(account, book.hold(account) - decision.from_offline_hold)
            book.flush()
        return _payload(request, book, station, now_text, reason=decision.reason, row=row)


def _take_nonce(station_id: str, nonce: str, now: datetime) -> None:
    """Record the nonce, or refuse it as ``replayed``; forget the station's nonces too old to be fresh again."""
    AuthorizationNonce.delete().where((AuthorizationNonce.station_id == station_id)
                                      & (AuthorizationNonce.seen_at < utc_text(now - 2 * FRESHNESS))).execute()
    if not insert_new_rows(AuthorizationNonce, [dict(station_id=station_id, nonce=nonce, seen_at=utc_text(now))]):
        raise Problem("replayed", "The bank has already answered a request with this nonce: each request takes a "
                                  "new one.")


def expire_all(now: datetime | None = None) -> int:
    """``expire_authorizations`` for every station, each in its own transaction under its row lock."""
    now = now or datetime.now(UTC)
    stations = [station_id for (station_id,) in Authorization.select(Authorization.station_id).where(
        (Authorization.status == "active") & (Authorization.expires_at <= utc_text(now))).distinct().tuples()]
    expired = 0
    for station_id in sorted(stations):
        with db_proxy.atomic():
            locked_station(station_id)
            expired += expire_authorizations(station_id, utc_text(now))
    return expired


# -- the decision ---------------------------------------------------------------------------------------------
def decide(book: Book, request: dict, policy: dict, now: datetime) -> Decision:
    """The bank's answer to a verified request, from its own data (``book`` holds the customer's account locked).

    In order: ``unknown_account``; a transfer cancellation (``_cancellation``); ``account_closed``,
    ``account_locked``; a balance enquiry is granted; ``payee_blocked`` (transfer), ``unknown_biller`` (bill), a
    wealth-product order's own rules (``_wmp_problem``);
    ``over_transaction_limit`` and ``over_daily_limit`` (the station policy's, as the bank applies it);
    ``insufficient_funds``: amount + fee beyond the available balance plus this station's offline hold.
    """
    account = request["account"]
    kind = request["kind"]
    customer = book.customers.get(account)
    if customer is None or account not in book.accounts or book.accounts[account].kind != "customer":
        return Decision("unknown_account")
    if kind == "transfer_cancel":
        return _cancellation(book, request)
    if customer.status == "closed":
        return Decision("account_closed")
    if customer.status == "locked":
        return Decision("account_locked")
    if kind == "balance_enquiry":
        return Decision(None)
    if kind == "transfer" and BlockedPayee.get_or_none(BlockedPayee.account == request["payee_account"]):
        return Decision("payee_blocked")
    if kind == "bill_payment" and Biller.get_or_none(Biller.code == request["biller"]) is None:
        return Decision("unknown_biller")
    rules = station_policy(policy)
    if kind == "wmp_order" and (problem := _wmp_problem(customer, request, rules["timezone"], now)):
        return Decision(problem)
    limits = rules["limits"][kind]
    amount, debit = request["amount"], request["amount"] + request["fee"]
    if amount > limits["per_txn"]:
        return Decision("over_transaction_limit")
    if used_today(book.station_id, account, kind, rules["timezone"], now) + amount > limits["daily"]:
        return Decision("over_daily_limit")
    free = max(0, book.available(account))
    from_offline_hold = max(0, debit - free)
    if from_offline_hold > book.hold(account):
        return Decision("insufficient_funds")
    return Decision(None, hold_fen=debit, from_offline_hold=from_offline_hold,
                    execute_after=transfer_execute_after(policy, amount, now) if kind == "transfer" else None)


def _wmp_problem(customer, request: dict, timezone: str, now: datetime) -> str | None:
    """A wealth-product order's own refusal (``station.protocol.wmp``, as ``Applier._wmp_order`` applies them to
    entries), or None: ``unknown_product``; ``window_closed`` (closed by the bank, or the bank's local date outside
    the window); ``risk_level_too_low``; ``amount_rule``; ``sold_out``: the amount beyond the quota left (what the
    confirmed orders have not taken) less what every live grant of the product holds, at any station. The product's
    row is locked first (PostgreSQL ``FOR UPDATE``; SQLite transactions are IMMEDIATE), after the customer's
    account as a batch takes them, so two stations never both take the last of a quota."""
    query = WmpProduct.select().where(WmpProduct.code == request["product"])
    product = (query.for_update() if is_postgres() else query).first()
    if product is None:
        return UNKNOWN_PRODUCT
    if product.status != "open":
        return WINDOW_CLOSED
    local_date = now.astimezone(ZoneInfo(timezone)).date().isoformat()
    held = sum(reserved_quota(product.code, utc_text(now)).values())
    return (window_problem(product.opens_on, product.closes_on, local_date)
            or risk_problem(customer.risk_level, product.risk_level)
            or amount_problem(product.min_fen, product.step_fen, request["amount"])
            or (SOLD_OUT if request["amount"] > product.quota_fen - held else None))


def used_today(station_id: str, account: str, kind: str, timezone: str, now: datetime) -> int:
    """What the daily limit of ``kind`` counts for the customer at this station today (the policy's local date):
    the settled amounts (``DailyTotal``) and the live authorizations given since the local day began."""
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    day_began = utc_text(datetime.combine(today, time(0), zone))
    settled = DailyTotal.select(DailyTotal.amount_fen).where(
        (DailyTotal.station_id == station_id) & (DailyTotal.local_date == today.isoformat())
        & (DailyTotal.kind == kind) & (DailyTotal.subject == account)).scalar() or 0
    live = [amount for (amount,) in live_authorizations(utc_text(now)).select(Authorization.amount_fen).where(
        (Authorization.station_id == station_id) & (Authorization.account_id == account)
        & (Authorization.kind == kind) & (Authorization.created_at >= day_began)).tuples()]
    return int(settled) + sum(live)


def transfer_execute_after(policy: dict, amount: int, now: datetime) -> str:
    """When the bank executes a transfer of ``amount`` recorded at ``now``: after the policy's delay, the risky
    transfers' when it is at least ``risky_transfer_fen`` (as ``posting_rules`` sets it)."""
    risky = amount >= int(policy["risky_transfer_fen"])
    delay = int(policy["risky_transfer_delay_seconds" if risky else "transfer_delay_seconds"])
    return utc_text(now + timedelta(seconds=delay))


def _cancellation(book: Book, request: dict) -> Decision:
    """A transfer of this station and customer that the bank has not executed or cancelled may be cancelled; one
    the bank has not received yet too (the cancellation entry follows it in the chain). While the grant is live,
    the bank does not execute the transfer (``cancellation_pending``)."""
    station_id, ref_txn = book.station_id, request["ref_txn"]
    transfer = _transfer_query(station_id, ref_txn).first()
    if transfer is not None:
        if transfer.account_id != request["account"] or transfer.status != "pending":
            return Decision("not_cancellable")
        return Decision(None)
    original = Entry.select(Entry.type).where((Entry.station_id == station_id) & (Entry.txn == ref_txn)).scalar()
    if original is not None and original != "transfer":
        return Decision("not_cancellable")
    return Decision(None)


def _transfer_query(station_id: str, txn: str):
    """The station's transfer ``txn``, row-locked on PostgreSQL: ``admin.execute_due_transfers`` locks the row
    before it looks for a live cancellation grant, so a grant and the execution never both happen."""
    query = Transfer.select().where((Transfer.station_id == station_id) & (Transfer.txn == txn))
    return query.for_update() if is_postgres() else query


def cancellation_pending(station_id: str, txn: str, now_text: str) -> bool:
    """Whether a live grant to cancel the station's transfer ``txn`` holds its execution back."""
    return Authorization.select().where(
        (Authorization.station_id == station_id) & (Authorization.kind == "transfer_cancel")
        & (Authorization.ref_txn == txn) & (Authorization.status == "active")
        & (Authorization.expires_at > now_text)).exists()


# -- recording and answering -----------------------------------------------------------------------------------
def _record(station_id: str, request: dict, digest: str, decision: Decision, policy: dict,
            now: datetime) -> Authorization:
    granted = decision.reason is None
    ttl = timedelta(seconds=int(policy["authorization_ttl_seconds"]))
    return Authorization.create(
        auth_id=secrets.token_urlsafe(24), station_id=station_id, txn=request["txn"], kind=request["kind"],
        account_id=request["account"], amount_fen=request["amount"], fee_fen=request["fee"],
        hold_fen=decision.hold_fen, payee_account=request.get("payee_account"), biller=request.get("biller"),
        ref_txn=request.get("ref_txn"), product=request.get("product"), request_hash=digest,
        status="active" if granted else "refused",
        reason=decision.reason, created_at=utc_text(now), expires_at=utc_text(now + ttl if granted else now),
        execute_after=decision.execute_after)


def _payload(request: dict, book: Book, station: Station, now_text: str, *, reason: str | None,
             row: Authorization) -> dict:
    account = request["account"]
    known = account in book.accounts and book.accounts[account].kind == "customer"
    granted = reason is None
    return protocol.answer_payload(
        request, granted=granted, reason=reason, auth_id=row.auth_id if granted else None,
        expires_at=row.expires_at if granted else None, server_time=now_text,
        balance=book.balance(account) if known else None, acked_seq=station.acked_seq,
        execute_after=row.execute_after if granted else None)
