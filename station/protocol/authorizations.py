"""Real-time authorization: a station asks the bank, while the link is up, before an operation that needs it.

Sign, then encrypt, both ways (as batches and acks are; docs/protocol.md "Real-time authorization"):

- the request is a JWS signed with the key the bank knows as the station's newest (the one after the entries it
  acknowledged), payload
  ``{"v": 1, "typ": "authorization-request", "station", "nonce", "ts", "kind", "txn", "agent", "account",
  "amount", "fee"}`` plus, per kind, ``payee_account`` (transfer), ``biller`` (bill paid from the account),
  ``ref_txn`` (transfer cancellation) or ``product`` (wealth-product order); sealed with HPKE to the server's
  X25519 key, ``info`` = ``station-kit/authorization-request/v1|<station>|<nonce>`` (so the station id and nonce
  also travel in the plain headers ``X-Station-Id`` and ``X-Authorization-Nonce``);
- the answer is a JWS signed with the server's key, payload ``{"v": 1, "typ": "authorization", "station",
  "nonce", "kind", "txn", "account", "amount", "fee", "decision", "reason", "auth_id", "expires_at",
  "server_time", "balance", "acked_seq", "execute_after"}``, sealed with HPKE to the station's X25519 key,
  ``info`` = ``station-kit/authorization/v1|<station>|<nonce>``. Both bodies travel as they are, of the media type
  :data:`CONTENT_TYPE` (refusals of the request itself are problem+json).

``decision`` is ``granted`` or ``refused`` (with ``reason``, one of :data:`REFUSALS`). A granted debit places a hold
of ``amount + fee`` on the customer's account until ``expires_at`` (the bank's time); the entry that records the
operation names ``auth_id`` in its ``auth`` field and consumes the hold. ``balance`` is the customer's ledger
balance at ``server_time``, covering this station's entries through ``acked_seq`` (a granted balance enquiry's
answer; also given with the other kinds). ``execute_after`` (transfers) is the bank's time before which the
transfer can still be cancelled.

Replay-proof: the answer names the request's nonce (and is sealed under it), the bank refuses a nonce it has seen
and a request whose ``ts`` is far from its own time. Idempotent by txn: the same txn asked again with the same
fields gets the same ``auth_id`` and expiry (never a second hold); with other fields it is refused.

Guarantees of :func:`open_answer`: an :class:`Authorization` is returned only when the answer decrypts with the
station's key, verifies with the pinned server key, and names this station, this nonce and exactly the request's
kind, txn, account, amount and fee. Every refusal is a :class:`BadAuthorization`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from station.protocol.envelope_errors import EnvelopeError
from station.protocol.sealing import seal, unseal
from station.protocol.tokens import (
    Signer,
    TokenError,
    b64url_decode,
    canonical_json,
    is_integer,
    parse_canonical,
    verification_key,
    verify_token,
)

VERSION = 1
REQUEST_TYP = "authorization-request"
ANSWER_TYP = "authorization"
#: The media type of a sealed request body.
CONTENT_TYPE = "application/vnd.station-kit.authorization"
HEADER_STATION = "X-Station-Id"
HEADER_NONCE = "X-Authorization-Nonce"
#: What a nonce may be: base64url text of 16 to 128 characters (``heads.new_nonce`` makes 32).
NONCE_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")
#: Largest sealed request or answer, in bytes: both are a few hundred.
MAX_SEALED_BYTES = 16 * 1024
#: Largest signed request or answer once decompressed: what is beyond is never inflated, nor hashed to verify.
MAX_PLAIN_BYTES = 16 * 1024

#: What may be authorized, and the fields each kind carries besides the common ones.
KINDS: Mapping[str, tuple[str, ...]] = {
    "withdrawal": (),
    "transfer": ("payee_account",),
    "bill_payment": ("biller",),
    "balance_enquiry": (),
    "transfer_cancel": ("ref_txn",),
    "wmp_order": ("product",),
}
COMMON_FIELDS = ("v", "typ", "station", "nonce", "ts", "kind", "txn", "agent", "account", "amount", "fee")
DECISIONS = ("granted", "refused")
#: Why the bank refuses (the station words each one for the agent, in the person's language).
REFUSALS = (
    "insufficient_funds",      # balance minus every hold is less than amount + fee
    "account_locked",          # wrong PINs, or locked by the branch
    "account_closed",
    "unknown_account",
    "payee_blocked",           # the payee account is on the bank's blocked list
    "over_transaction_limit",  # the bank's per-transaction limit of the kind
    "over_daily_limit",        # the bank's per-customer daily limit of the kind
    "unknown_biller",
    "not_cancellable",         # transfer_cancel: already executed, cancelled, or unknown to the bank
    # wmp_order (``station.protocol.wmp``): the product's own rules, checked before the debit's
    "unknown_product",         # not in the bank's catalogue
    "window_closed",           # outside its subscription window by the bank's local date, or closed by the bank
    "risk_level_too_low",      # the customer's risk assessment is below the product's level (or missing)
    "amount_rule",             # not the product's minimum plus a whole number of steps
    "sold_out",                # the quota left (less every live grant of the product) is below the amount
)


class BadAuthorization(EnvelopeError):
    """A request or an answer that is not what it must be (the message says why)."""


@dataclass(frozen=True)
class Authorization:
    """A verified answer of the bank. ``granted`` False: ``reason`` says why (one of :data:`REFUSALS`)."""

    kind: str
    txn: str
    account: str
    amount: int
    fee: int
    granted: bool
    reason: str | None
    auth_id: str | None
    expires_at: str | None
    server_time: str
    balance: int | None
    acked_seq: int | None
    execute_after: str | None
    #: The answer's JWS (kept by the station as the bank's signed word).
    token: str


def request_info(station_id: str, nonce: str) -> bytes:
    return f"station-kit/authorization-request/v{VERSION}|{station_id}|{nonce}".encode()


def answer_info(station_id: str, nonce: str) -> bytes:
    return f"station-kit/authorization/v{VERSION}|{station_id}|{nonce}".encode()


def request_payload(*, station_id: str, nonce: str, ts: str, kind: str, txn: str, agent: str, account: str,
                    amount: int, fee: int, **extra) -> dict:
    """The request's payload; ``extra`` holds exactly the fields of ``kind`` (:data:`KINDS`)."""
    if kind not in KINDS or set(extra) != set(KINDS[kind]):
        raise ValueError(f"a {kind} request carries {KINDS.get(kind)}, not {sorted(extra)}")
    if not NONCE_RE.fullmatch(nonce):
        raise ValueError("the nonce is not 16 to 128 characters of base64url")
    return {"v": VERSION, "typ": REQUEST_TYP, "station": station_id, "nonce": nonce, "ts": ts, "kind": kind,
            "txn": txn, "agent": agent, "account": account, "amount": amount, "fee": fee, **extra}


def seal_request(payload: Mapping, signer: Signer, server_encryption_key: X25519PublicKey) -> bytes:
    """The request body: the payload signed with the station's current key, sealed to the server."""
    return seal(signer.sign(dict(payload)).encode("ascii"), server_encryption_key,
                info=request_info(payload["station"], payload["nonce"]), level=1)


def open_request(body: bytes, *, station_id: str, nonce: str, server_encryption_key: X25519PrivateKey
                 ) -> tuple[str, dict]:
    """(JWS, unverified payload) of a sealed request, for the server to verify with the station's key.

    Checks the shape only: the caller verifies the signature (:func:`verify_request`) with the key it holds for
    the station. Raises :class:`BadAuthorization`."""
    if len(body) > MAX_SEALED_BYTES:
        raise BadAuthorization("the request is larger than any authorization request")
    try:
        token = unseal(body, server_encryption_key, info=request_info(station_id, nonce),
                       refusal="the request does not decrypt with the bank's key", max_plain=MAX_PLAIN_BYTES
                       ).decode("ascii")
    except UnicodeDecodeError as exc:
        raise BadAuthorization("the request is not a JWS") from exc
    except EnvelopeError as exc:
        raise BadAuthorization(str(exc)) from exc
    parts = token.split(".")
    if len(parts) != 3:
        raise BadAuthorization("the request is not a JWS")
    try:
        payload = parse_canonical(b64url_decode(parts[1]), "the request")
    except (TokenError, ValueError) as exc:
        raise BadAuthorization(f"the request's payload is not canonical JSON ({exc})") from exc
    _check_request(payload, station_id, nonce)
    return token, payload


def verify_request(token: str, station_jwk: Mapping) -> dict:
    """The payload of a request JWS that verifies with the station's key; raises :class:`BadAuthorization`."""
    try:
        return verify_token(token, verification_key(station_jwk))
    except (TokenError, ValueError, KeyError, TypeError) as exc:
        raise BadAuthorization(f"the request is not signed with the station's current key ({exc})") from exc


def _check_request(payload, station_id: str, nonce: str) -> None:
    if not isinstance(payload, dict) or payload.get("typ") != REQUEST_TYP or payload.get("v") != VERSION:
        raise BadAuthorization("it is not an authorization request")
    if payload.get("station") != station_id or payload.get("nonce") != nonce:
        raise BadAuthorization("its station or nonce differs from the headers")
    kind = payload.get("kind")
    if kind not in KINDS:
        raise BadAuthorization(f"kind {kind!r} cannot be authorized")
    expected = set(COMMON_FIELDS) | set(KINDS[kind])
    if set(payload) != expected:
        raise BadAuthorization(f"a {kind} request carries exactly {sorted(expected)}")
    for name in ("ts", "txn", "agent", "account", *KINDS[kind]):
        value = payload[name]
        if not isinstance(value, str) or not 0 < len(value) <= 64 or not value.isprintable():
            raise BadAuthorization(f"{name} is not short printable text")
    for name in ("amount", "fee"):
        if not is_integer(payload[name]) or not 0 <= payload[name] <= 10**13:
            raise BadAuthorization(f"{name} is not integer fen")
    if kind != "balance_enquiry" and kind != "transfer_cancel" and payload["amount"] <= 0:
        raise BadAuthorization("a debit's amount is positive")
    if kind == "wmp_order" and payload["fee"] != 0:
        raise BadAuthorization("a wealth-product order carries no fee")


def answer_payload(request: Mapping, *, granted: bool, reason: str | None, auth_id: str | None,
                   expires_at: str | None, server_time: str, balance: int | None, acked_seq: int | None,
                   execute_after: str | None = None) -> dict:
    """The bank's answer to ``request`` (its verified payload)."""
    if granted == (reason is not None) or (reason is not None and reason not in REFUSALS):
        raise ValueError("a grant has no reason; a refusal has one of REFUSALS")
    return {"v": VERSION, "typ": ANSWER_TYP, "station": request["station"], "nonce": request["nonce"],
            "kind": request["kind"], "txn": request["txn"], "account": request["account"],
            "amount": request["amount"], "fee": request["fee"], "decision": "granted" if granted else "refused",
            "reason": reason, "auth_id": auth_id, "expires_at": expires_at, "server_time": server_time,
            "balance": balance, "acked_seq": acked_seq, "execute_after": execute_after}


def seal_answer(payload: Mapping, signer: Signer, station_encryption_key: X25519PublicKey) -> bytes:
    """The answer body: signed with the server's key, sealed to the station."""
    return seal(signer.sign(dict(payload)).encode("ascii"), station_encryption_key,
                info=answer_info(payload["station"], payload["nonce"]), level=1)


def open_answer(body: bytes, *, request: Mapping, server_signing_jwk: Mapping,
                station_encryption_key: X25519PrivateKey) -> Authorization:
    """Decrypt and verify the bank's answer to ``request`` (the payload the station sent)."""
    if len(body) > MAX_SEALED_BYTES:
        raise BadAuthorization("the answer is larger than any authorization")
    try:
        token = unseal(body, station_encryption_key, info=answer_info(request["station"], request["nonce"]),
                       refusal="the answer does not decrypt with this station's key (not for this request?)",
                       max_plain=MAX_PLAIN_BYTES).decode("ascii")
        payload = verify_token(token, verification_key(server_signing_jwk))
    except EnvelopeError as exc:
        raise BadAuthorization(str(exc)) from exc
    except (TokenError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise BadAuthorization(f"the answer does not verify with the bank's pinned key ({exc})") from exc
    if payload.get("typ") != ANSWER_TYP or payload.get("v") != VERSION:
        raise BadAuthorization("it is not an authorization")
    for name in ("station", "nonce", "kind", "txn", "account", "amount", "fee"):
        if payload.get(name) != request[name]:
            raise BadAuthorization(f"it answers another request ({name} differs)")
    decision, reason = payload.get("decision"), payload.get("reason")
    granted = decision == "granted"
    if decision not in DECISIONS or (granted and reason is not None) or (not granted and reason not in REFUSALS):
        raise BadAuthorization("its decision is not a grant or a refusal with a known reason")
    auth_id, expires_at = payload.get("auth_id"), payload.get("expires_at")
    if granted and not (isinstance(auth_id, str) and 0 < len(auth_id) <= 64 and auth_id.isprintable()
                        and isinstance(expires_at, str)):
        raise BadAuthorization("a grant names its auth_id and expiry")
    balance, acked_seq = payload.get("balance"), payload.get("acked_seq")
    if balance is not None and not is_integer(balance) or acked_seq is not None and not is_integer(acked_seq):
        raise BadAuthorization("its balance or acked_seq is not an integer")
    if not isinstance(payload.get("server_time"), str):
        raise BadAuthorization("it has no server time")
    execute_after = payload.get("execute_after")
    return Authorization(kind=payload["kind"], txn=payload["txn"], account=payload["account"],
                         amount=payload["amount"], fee=payload["fee"], granted=granted, reason=reason,
                         auth_id=auth_id if granted else None, expires_at=expires_at if granted else None,
                         server_time=payload["server_time"], balance=balance, acked_seq=acked_seq,
                         execute_after=execute_after if isinstance(execute_after, str) else None, token=token)


def payload_bytes(payload: Mapping) -> bytes:
    """Canonical JSON of a payload (what the server hashes for idempotency by txn)."""
    return canonical_json(dict(payload))
