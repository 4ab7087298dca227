"""The bank's signed head of a station: how far the bank holds the station's journal, fresh for one request.

``station restore`` asks for it before putting a backup back on a device (``GET /api/v1/stations/ID/head?nonce=N``):
a backup whose journal stops before the bank's head, or differs from it, would make the device write a second,
different entry at a seq the bank already holds (a fork). The answer is a JWS signed by the server's Ed25519 key,
payload (canonical JSON, see docs/protocol.md "Head of a station"):

    {"v": 1, "typ": "station-head", "station", "status", "acked_seq", "head", "tail", "kid", "server_time", "nonce"}

``head`` is the chain value after entry ``acked_seq`` (null before the first), ``tail`` the station's newest signed
claim of where its journal reaches (``{"seq", "head"}``, or null), ``kid`` the key that signs its next entry as the
bank knows it (null before enrollment; a replacement device's once the bank has enrolled one), and ``nonce`` the one
the station sent, so an old answer replayed by someone in the path is refused. Guarantee of
:func:`open_signed_head`: a :class:`BankHead` is returned only when the JWS verifies with the pinned server key and
names this station and this nonce; every refusal is a :class:`BadHeadAnswer`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from station.protocol.tokens import Signer, TokenError, b64url_decode, is_integer, verification_key, verify_token

HEAD_TYP = "station-head"
HEAD_VERSION = 1
#: What a nonce may be: base64url text of 16 to 128 characters (the station sends 32, from 24 random bytes).
NONCE_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")
STATUSES = ("pending", "active", "revoked")


class BadHeadAnswer(ValueError):
    """An answer that is not the bank's signed head of this station for this request."""


@dataclass(frozen=True)
class BankHead:
    """A verified answer: ``head`` is the chain value after ``acked_seq`` (None when the bank holds nothing);
    ``tail_seq``/``tail_head`` the station's newest signed claim of its journal's end (None when none arrived)."""

    station_id: str
    status: str
    acked_seq: int
    head: str | None
    tail_seq: int | None
    tail_head: str | None
    server_time: str
    #: The key the bank expects the station's next entry to be signed with (None: not enrolled, or an older bank).
    kid: str | None = None


def new_nonce() -> str:
    """A fresh nonce for one request (24 random bytes, base64url)."""
    return secrets.token_urlsafe(24)


def make_signed_head(
    signer: Signer,
    *,
    station_id: str,
    status: str,
    acked_seq: int,
    head: str | None,
    tail: tuple[int, str] | None,
    server_time: str,
    nonce: str,
    kid: str | None = None,
) -> str:
    """The server's answer: a JWS compact string signed with its key (``nonce`` must match :data:`NONCE_RE`)."""
    if not NONCE_RE.fullmatch(nonce):
        raise ValueError("the nonce is not 16 to 128 characters of base64url")
    return signer.sign({
        "v": HEAD_VERSION,
        "typ": HEAD_TYP,
        "station": station_id,
        "status": status,
        "acked_seq": acked_seq,
        "head": head,
        "tail": None if tail is None else {"seq": tail[0], "head": tail[1]},
        "kid": kid,
        "server_time": server_time,
        "nonce": nonce,
    })


def _chain_value(value) -> bool:
    try:
        return isinstance(value, str) and len(b64url_decode(value)) == 32
    except ValueError:
        return False


def open_nonce_answer(token, *, server_signing_jwk: Mapping, typ: str, version: int, station_id: str, nonce: str,
                      refusal: type[ValueError], what: str) -> dict:
    """The payload of a server answer to one request of this station: a JWS that verifies with the pinned server
    key, of ``typ`` and ``version``, naming ``station_id`` and the request's ``nonce`` (an old answer replayed is
    refused). Every refusal is ``refusal`` (``what`` names the answer in its message)."""
    try:
        payload = verify_token(token, verification_key(server_signing_jwk))
    except (TokenError, ValueError, KeyError, TypeError) as exc:
        raise refusal(f"it does not verify with the bank's key pinned at enrollment ({exc})") from exc
    if payload.get("typ") != typ or payload.get("v") != version:
        raise refusal(f"it is not {what}")
    if payload.get("station") != station_id:
        raise refusal(f"it is about station {payload.get('station')!r}, not {station_id}")
    if payload.get("nonce") != nonce:
        raise refusal("it answers another request (an old answer replayed?)")
    return payload


def open_signed_head(token, *, server_signing_jwk: Mapping, station_id: str, nonce: str) -> BankHead:
    """Verify the answer with the pinned server key, for ``station_id`` and ``nonce``; raises :class:`BadHeadAnswer`."""
    payload = open_nonce_answer(token, server_signing_jwk=server_signing_jwk, typ=HEAD_TYP, version=HEAD_VERSION,
                                station_id=station_id, nonce=nonce, refusal=BadHeadAnswer, what="a head answer")
    acked_seq, head, tail = payload.get("acked_seq"), payload.get("head"), payload.get("tail")
    if (not is_integer(acked_seq) or acked_seq < 0 or payload.get("status") not in STATUSES
            or not (head is None if acked_seq == 0 else _chain_value(head))
            or not isinstance(payload.get("server_time"), str)):
        raise BadHeadAnswer("its fields are not a head answer's")
    if tail is not None and not (isinstance(tail, dict) and set(tail) == {"seq", "head"} and is_integer(tail["seq"])
                                 and tail["seq"] >= 1 and _chain_value(tail["head"])):
        raise BadHeadAnswer("its tail is not a seq and a chain value")
    kid = payload.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise BadHeadAnswer("its kid is not text")
    return BankHead(station_id=station_id, status=payload["status"], acked_seq=acked_seq, head=head,
                    tail_seq=None if tail is None else tail["seq"], tail_head=None if tail is None else tail["head"],
                    server_time=payload["server_time"], kid=kid)
