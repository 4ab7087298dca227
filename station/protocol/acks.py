"""The ack: the sync server's signed answer to a batch, with the downlink sealed to the station.

The ack is a JWS signed by the server's Ed25519 key: acknowledged-through seq, chain head, rejected entries with
their reasons (every other entry of the range is settled), server time, and the SHA-256 of the **downlink**
(what the station needs from the bank next), which is compressed and sealed with HPKE to the
station's X25519 key (``station.protocol.sealing``; the ``info`` binds station id and acked-through seq).

An ack is bound to the request it answers (docs/protocol.md, "Ack and downlink"): ``request`` is the SHA-256 of the
sealed batch the bank received (:func:`request_digest`; every sealing is unique, HPKE's ephemeral key sees to it),
and ``downlink_version`` numbers the station's downlinks, only ever increasing. A station refuses an ack whose
``request`` is not its own request's (an old answer replayed) and applies a downlink only when its version is newer
than the last one it applied. Both members are present in every answer of a bank of this release, and absent (None)
in an older bank's.

Guarantees of :func:`open_ack`: an :class:`Ack` is returned only when the JWS verifies with the pinned server key,
names this station, and the downlink is exactly the one the ack hashes and decrypts with the station's key; every
refusal is an :class:`EnvelopeError`. Whether it answers the request sent is the caller's to check (``request``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from station.protocol.envelope import MAX_DOWNLINK_VERSION
from station.protocol.envelope_errors import BadBatchSignature, EnvelopeError
from station.protocol.sealing import ENVELOPE_VERSION, downlink_info, seal, unseal
from station.protocol.tokens import (
    Signer,
    TokenError,
    b64url,
    b64url_decode,
    canonical_json,
    is_integer,
    verification_key,
    verify_token,
)


@dataclass(frozen=True)
class Ack:
    """A verified ack: ``rejected`` maps seq -> reason; every other seq of ``first..last`` is settled."""

    station_id: str
    first: int
    last: int
    acked_through: int
    head: str
    rejected: dict[int, str]
    server_time: str
    downlink: dict
    #: :func:`request_digest` of the sealed batch this ack answers (None: an older bank's ack, bound to nothing).
    request: str | None = None
    #: The downlink's version, increasing per station (None: an older bank's ack).
    downlink_version: int | None = None


def request_digest(sealed_body: bytes) -> str:
    """What binds an ack to its request: base64url SHA-256 of the sealed batch exactly as sent."""
    return b64url(hashlib.sha256(sealed_body).digest())


def make_ack(
    *,
    signer: Signer,
    station_id: str,
    first: int,
    last: int,
    acked_through: int,
    head: str,
    rejected: Mapping[int, str],
    server_time: str,
    downlink: Mapping,
    station_encryption_key: X25519PublicKey,
    request: str | None = None,
    downlink_version: int | None = None,
) -> dict:
    """The response body of an accepted batch: ``{"ack": JWS, "downlink": base64url(HPKE sealed)}``.

    ``request`` (:func:`request_digest` of the batch answered) and ``downlink_version`` go in the signed payload when
    given; without them the payload is exactly what banks signed before acks were bound to their request."""
    sealed = seal(canonical_json(dict(downlink)), station_encryption_key,
                  info=downlink_info(station_id, acked_through), level=6)
    payload = {
        "v": ENVELOPE_VERSION,
        "typ": "ack",
        "station": station_id,
        "first": first,
        "last": last,
        "acked_through": acked_through,
        "head": head,
        "rejected": {str(seq): reason for seq, reason in sorted(rejected.items())},
        "server_time": server_time,
        "downlink_sha256": b64url(hashlib.sha256(sealed).digest()),
    }
    if request is not None:
        payload["request"] = request
    if downlink_version is not None:
        payload["downlink_version"] = downlink_version
    return {"ack": signer.sign(payload), "downlink": b64url(sealed)}


def open_ack(
    response: Mapping,
    *,
    server_signing_jwk: Mapping,
    station_id: str,
    station_encryption_key: X25519PrivateKey,
) -> Ack:
    """Verify an ack with the pinned server key and decrypt its downlink; raises :class:`EnvelopeError`."""
    try:
        payload = verify_token(response["ack"], verification_key(server_signing_jwk))
        sealed = b64url_decode(response["downlink"])
    except (TokenError, KeyError, TypeError, ValueError) as exc:
        raise BadBatchSignature(f"the ack does not verify with the server's pinned key ({exc})") from exc
    if payload.get("typ") != "ack" or payload.get("station") != station_id:
        raise EnvelopeError("the ack is not for this station")
    if b64url(hashlib.sha256(sealed).digest()) != payload.get("downlink_sha256"):
        raise EnvelopeError("the downlink does not match the ack")
    plain = unseal(sealed, station_encryption_key, info=downlink_info(station_id, payload["acked_through"]),
                   refusal="the downlink does not decrypt with the station's key")
    downlink = json.loads(plain)
    request, version = payload.get("request"), payload.get("downlink_version")
    if request is not None and not isinstance(request, str):
        raise EnvelopeError("the ack's request is not text")
    # Bounded as the batch's downlink_applied is: a version the station could not name in its next batch would stop
    # every sync after it.
    if version is not None and not (is_integer(version) and 1 <= version <= MAX_DOWNLINK_VERSION):
        raise EnvelopeError(f"the ack's downlink version is not an integer of 1 to {MAX_DOWNLINK_VERSION}")
    return Ack(
        station_id=station_id,
        first=payload["first"],
        last=payload["last"],
        acked_through=payload["acked_through"],
        head=payload["head"],
        rejected={int(seq): reason for seq, reason in payload.get("rejected", {}).items()},
        server_time=payload["server_time"],
        downlink=downlink,
        request=request,
        downlink_version=version,
    )
