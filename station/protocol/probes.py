"""The link probe: a cheap, authenticated "are you there, and do you still deal with me?" from a station.

``POST /api/v1/stations/ID/probe`` with ``{"probe": JWS}``: a JWS signed with the station's current key (the one
the bank knows as its newest), payload (canonical JSON, docs/protocol.md "Link probe")::

    {"v": 1, "typ": "probe", "station", "nonce", "ts"}

The bank answers ``{"answer": JWS}`` signed with its own key::

    {"v": 1, "typ": "probe-answer", "station", "nonce", "server_time", "status"}

``nonce`` is the station's (16 to 128 characters of base64url), echoed so an old answer replayed on the way
cannot pass for a new one; ``ts`` is the station's clock when it sent the probe (informative: a station's clock is
not trusted); ``status`` is the station's status at the bank, ``active`` (every other state is refused with a
problem). The bank keeps nothing: a probe replayed to it is answered again, for a nonce no station waits for.

Guarantees: :func:`read_probe` returns a payload only when it is exactly a probe of ``station_id`` (the caller
then verifies the signature with the station's key, :func:`verify_probe`); :func:`open_probe_answer` returns a
:class:`ProbeAnswer` only when the answer verifies with the pinned server key and names this station and this
nonce. Every refusal is a :class:`BadProbe` or :class:`BadProbeAnswer`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from station.protocol.heads import open_nonce_answer
from station.protocol.tokens import (
    Signer,
    TokenError,
    b64url_decode,
    parse_canonical,
    token_kid,
    verification_key,
    verify_token,
)

VERSION = 1
PROBE_TYP = "probe"
ANSWER_TYP = "probe-answer"
#: What a nonce may be: base64url text of 16 to 128 characters (``heads.new_nonce`` makes 32).
NONCE_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")
#: The longest probe JWS the bank reads (a real one is about 300 characters).
MAX_PROBE_CHARS = 2048
PROBE_FIELDS = frozenset({"v", "typ", "station", "nonce", "ts"})
#: The one status a probe is answered with (a revoked, pending or flagged station is refused with a problem).
ANSWERED_STATUS = "active"


class BadProbe(ValueError):
    """A probe that is not a probe of this station signed with its current key (the message says why)."""


class BadProbeAnswer(ValueError):
    """An answer that is not the bank's signed answer to this probe."""


@dataclass(frozen=True)
class ProbeAnswer:
    """A verified answer: the bank's time when it answered, and the station's status there."""

    station_id: str
    status: str
    server_time: str


def make_probe(signer: Signer, *, station_id: str, nonce: str, ts: str) -> str:
    """The probe JWS, signed with ``signer`` (the station's current key)."""
    if not NONCE_RE.fullmatch(nonce):
        raise ValueError("the nonce is not 16 to 128 characters of base64url")
    return signer.sign({"v": VERSION, "typ": PROBE_TYP, "station": station_id, "nonce": nonce, "ts": ts})


def read_probe(token, station_id: str) -> tuple[str | None, dict]:
    """(kid of the header, payload) of a probe for ``station_id``, read without checking the signature.

    Cheap checks only, made before any key is looked at: size, JWS shape, canonical payload, exactly the probe's
    fields with the right types. Raises :class:`BadProbe`."""
    if not isinstance(token, str) or len(token) > MAX_PROBE_CHARS or not token.isascii() or token.count(".") != 2:
        raise BadProbe(f"probe is not a JWS compact serialization of at most {MAX_PROBE_CHARS} characters")
    try:
        payload = parse_canonical(b64url_decode(token.split(".")[1]), "the probe")
    except (TokenError, ValueError) as exc:
        raise BadProbe(f"the probe's payload is not canonical JSON ({exc})") from exc
    if set(payload) != PROBE_FIELDS or payload["typ"] != PROBE_TYP or payload["v"] != VERSION:
        raise BadProbe(f"a probe carries exactly {sorted(PROBE_FIELDS)} with typ {PROBE_TYP!r} and v {VERSION}")
    if payload["station"] != station_id:
        raise BadProbe(f"the probe is about station {payload['station']!r}, not {station_id}")
    if not isinstance(payload["nonce"], str) or not NONCE_RE.fullmatch(payload["nonce"]):
        raise BadProbe("the probe's nonce is not 16 to 128 characters of base64url")
    ts = payload["ts"]
    if not isinstance(ts, str) or not 0 < len(ts) <= 40 or not ts.isprintable():
        raise BadProbe("the probe's ts is not a short time text")
    return token_kid(token), payload


def verify_probe(token: str, station_jwk: Mapping) -> dict:
    """The payload of a probe that verifies with the station's current key; raises :class:`BadProbe`."""
    try:
        return verify_token(token, verification_key(station_jwk))
    except (TokenError, ValueError, KeyError, TypeError) as exc:
        raise BadProbe(f"the probe is not signed with the station's current key ({exc})") from exc


def make_probe_answer(signer: Signer, probe: Mapping, *, server_time: str, status: str = ANSWERED_STATUS) -> str:
    """The bank's answer to a verified ``probe`` payload, signed with the server's key."""
    return signer.sign({"v": VERSION, "typ": ANSWER_TYP, "station": probe["station"], "nonce": probe["nonce"],
                        "server_time": server_time, "status": status})


def open_probe_answer(token, *, server_signing_jwk: Mapping, station_id: str, nonce: str) -> ProbeAnswer:
    """Verify the bank's answer with the pinned server key, for ``station_id`` and ``nonce``."""
    payload = open_nonce_answer(token, server_signing_jwk=server_signing_jwk, typ=ANSWER_TYP, version=VERSION,
                                station_id=station_id, nonce=nonce, refusal=BadProbeAnswer, what="a probe answer")
    if payload.get("status") != ANSWERED_STATUS or not isinstance(payload.get("server_time"), str):
        raise BadProbeAnswer("its fields are not a probe answer's")
    return ProbeAnswer(station_id=station_id, status=payload["status"], server_time=payload["server_time"])
