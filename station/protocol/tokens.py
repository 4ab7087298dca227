"""Receipt tokens and the hash chain.

Every journal entry is a JWS compact serialization (RFC 7515) signed with the station's Ed25519 key:
header ``{"alg": "Ed25519", "kid": <RFC 7638 thumbprint>}``, payload canonical JSON (RFC 8785: sorted keys, no
spaces, UTF-8). The payload's ``prev`` is base64url(SHA-256(previous entry's JWS, ASCII)); the first entry's is
base64url(SHA-256("genesis|" + station id)). ``verify_chain`` is the one checker used by the station's
``verify-journal``, the sync server and the tests. docs/protocol.md is the human-readable spec.

One entry has exactly one byte string: ``verify_token`` refuses a header with members other than ``alg`` and
``kid``, a header or payload whose bytes are not the canonical JSON encoding of what they hold, a number that is
not an integer, and base64url that is not the unpadded encoding of its bytes. Two encodings of one entry would
give two chain hashes, and the sync protocol rebuilds each token from its fields, so it must come out the same.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from json.encoder import c_make_encoder, encode_basestring
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwa import EdDSAAlgorithm
from joserfc.jwk import KeySet, OKPKey
from joserfc.jws import JWSRegistry

ALG = "Ed25519"
#: RFC 9864 names the algorithm Ed25519; older producers wrote EdDSA for the same signature.
ACCEPTED_ALGS = ("Ed25519", "EdDSA")
PROTOCOL_VERSION = 1
#: Entries are small; a signed sync batch is capped by the batch builder well below this.
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024

#: The only members of an entry's protected header. ``crit`` (RFC 7515 4.1.11) and ``b64`` (RFC 7797) would change
#: how the token must be verified; ``typ`` or any other member would give one entry a second encoding.
HEADER_MEMBERS = ("alg", "kid")


class _LegacyEdDSA(EdDSAAlgorithm):
    """``EdDSA`` as older producers name Ed25519: accepted on purpose, so without joserfc's deprecation warning."""

    security_warning = None


def jws_registry(max_payload_length: int) -> JWSRegistry:
    """A joserfc registry that verifies ``Ed25519`` and ``EdDSA`` (signs with whatever the header names) and
    allows payloads up to ``max_payload_length`` bytes (joserfc's default is 128 kB)."""
    registry = JWSRegistry(algorithms=list(ACCEPTED_ALGS))
    registry.algorithms = {**JWSRegistry.algorithms, "EdDSA": _LegacyEdDSA()}
    registry.max_payload_length = max_payload_length
    return registry


_registry = jws_registry(MAX_PAYLOAD_BYTES)


class TokenError(ValueError):
    """A token that does not verify, or is not a well-formed entry."""


#: Standard base64's two last digits as base64url writes them.
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url_bytes(data: bytes) -> bytes:
    """Unpadded base64url (RFC 4648 section 5), as JOSE writes binary values, as ASCII bytes (for a JWS put together
    as bytes: its signing input, its chain hash)."""
    # binascii at once: base64.urlsafe_b64encode's Python layers cost as much again (three calls per synced entry).
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=")


def b64url(data: bytes) -> str:
    """:func:`b64url_bytes` as text."""
    return b64url_bytes(data).decode("ascii")


_B64URL_TEXT = re.compile(r"[A-Za-z0-9_-]*")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url strictly: only its alphabet, and only the one encoding of the bytes.

    The checks run in C (a regular expression, the codec): recon decodes two of these per entry, a million times."""
    if not isinstance(text, str) or not _B64URL_TEXT.fullmatch(text):
        raise ValueError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise ValueError("not unpadded base64url") from exc
    if base64.urlsafe_b64encode(data).rstrip(b"=") != text.encode("ascii"):
        raise ValueError("not the canonical base64url of its bytes")
    return data


def is_integer(value: Any) -> bool:
    """A JSON integer as Python reads it: an ``int`` that is not a ``bool`` (``21.0`` and ``true`` are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


#: ``json.dumps`` with these arguments makes a new encoder at each call, which costs more than a small payload's
#: encoding: one made once, for every entry signed or checked.
_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


#: What ``_CANONICAL_ENCODER.encode`` makes its one-shot C encoder with, after the ``markers`` of each call.
_C_ENCODER_ARGS = (_CANONICAL_ENCODER.default, encode_basestring, _CANONICAL_ENCODER.indent,
                   _CANONICAL_ENCODER.key_separator, _CANONICAL_ENCODER.item_separator, _CANONICAL_ENCODER.sort_keys,
                   _CANONICAL_ENCODER.skipkeys, _CANONICAL_ENCODER.allow_nan)


def _encode_canonical(obj: Any) -> str:
    """``_CANONICAL_ENCODER.encode(obj)``: the one-shot C encoder that ``encode`` makes at each call (through
    ``iterencode``, which also builds a float formatter only its pure-Python encoder uses), made here directly with
    the same arguments, and a fresh ``markers`` dict each time (its check of cycles) as ``encode`` gives it."""
    if c_make_encoder is None:  # a Python without the _json accelerator
        return _CANONICAL_ENCODER.encode(obj)
    return "".join(c_make_encoder({}, *_C_ENCODER_ARGS)(obj, 0))


def canonical_json(obj: Any) -> bytes:
    """The one JSON encoding used inside signatures: RFC 8785 (JCS) for JSON without floats.

    Keys sorted by UTF-16 code units (as JCS says; Python's code-point order differs only for keys that mix
    characters above U+FFFF with U+E000..U+FFFF, which no payload field has), no whitespace, UTF-8, strings
    escaped as JCS escapes them. Integers are written in full: JCS's number form agrees within +-(2**53 - 1),
    where every amount and count of this kit lies.
    """
    text = _encode_canonical(obj)
    encoded = text.encode("utf-8")
    if text.isascii() or not _MAY_DIFFER_UTF8.search(encoded):
        # No character at or above U+E000 anywhere, so none in a key: Python's own key sort (in C) is JCS's order.
        # What every entry the kit signs or checks takes; the scan runs in C, where walking the object did not, and
        # an ASCII text (most payloads) needs none: Python keeps that flag with each string.
        return encoded
    if _code_point_order_is_jcs(obj):
        return encoded
    return json.dumps(_jcs_key_order(obj), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


#: Code-point and UTF-16 order agree for every pair of keys whose characters all lie below this one.
_ORDERS_MAY_DIFFER_FROM = "\ue000"
#: The UTF-8 lead bytes of the characters at or above U+E000 (0xEE, 0xEF: to U+FFFF; 0xF0 to 0xF4: above).
_MAY_DIFFER_UTF8 = re.compile(rb"[\xee-\xf4]")


def _code_point_order_is_jcs(value: Any) -> bool:
    """Whether sorting each object's keys by code point gives JCS's order: no key holds a character at or above
    U+E000 (only there can a character above U+FFFF sort before one below it in UTF-16)."""
    if isinstance(value, dict):
        return all(isinstance(key, str) and (not key or max(key) < _ORDERS_MAY_DIFFER_FROM)
                   and _code_point_order_is_jcs(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return all(_code_point_order_is_jcs(item) for item in value)
    return True


def _jcs_key_order(value: Any) -> Any:
    if isinstance(value, dict):
        # Big-endian UTF-16 bytes compare as the code units do.
        return {key: _jcs_key_order(value[key]) for key in sorted(value, key=lambda key: key.encode("utf-16-be"))}
    if isinstance(value, list | tuple):
        return [_jcs_key_order(item) for item in value]
    return value


def genesis_prev(station_id: str) -> str:
    return b64url(hashlib.sha256(f"genesis|{station_id}".encode()).digest())


def chain_hash(token: str | bytes) -> str:
    """The ``prev`` value of the entry that follows ``token`` (its JWS string, or that string's ASCII bytes)."""
    return b64url(hashlib.sha256(token if isinstance(token, bytes) else token.encode("ascii")).digest())


def generate_signing_key() -> OKPKey:
    return OKPKey.generate_key("Ed25519", private=True)


def key_id(key: OKPKey) -> str:
    """RFC 7638 thumbprint (SHA-256) of the public key: the ``kid`` in every header."""
    return key.thumbprint()


def public_jwk(key: OKPKey) -> dict:
    """The public half as published (enrollment, start entry, jwks.json): a JWK with ``kid`` and ``use``.

    No ``alg``: a JWK's ``alg`` names one algorithm, and a verifier holding ``"alg": "Ed25519"`` refuses a
    token whose header says ``EdDSA``, the older name of the same signature that verifiers accept.
    """
    jwk = key.as_dict(private=False)
    jwk.update(kid=key_id(key), use="sig")
    return jwk


def verification_jwk(jwk: Mapping[str, Any]) -> dict:
    """A published public JWK without ``alg``: keys published before it was dropped (enrollments and start
    entries of older releases) carry ``"alg": "Ed25519"``, which would refuse an ``EdDSA`` header."""
    return {name: value for name, value in jwk.items() if name != "alg"}


def verification_key(jwk: Mapping[str, Any]) -> OKPKey:
    """The key to verify tokens with, from a published public JWK (with or without ``alg``)."""
    return OKPKey.import_key(verification_jwk(jwk))


class Signer:
    """Signs payloads with one Ed25519 key; ``kid`` is computed once."""

    def __init__(self, key: OKPKey):
        self.key = key
        self.kid = key_id(key)
        self._header = {"alg": ALG, "kid": self.kid}

    def sign(self, payload: Mapping[str, Any]) -> str:
        return jws.serialize_compact(dict(self._header), canonical_json(payload), self.key, registry=_registry)


class _NotInteger(ValueError):
    """A JSON number with a fraction or an exponent (entries hold integers only)."""


def _refuse_number(text: str) -> None:
    raise _NotInteger(text)


class NonCanonicalPayload(TokenError):
    """A payload that parses to a JSON object yet is not its one canonical encoding (or holds a number that is not
    an integer). ``payload`` is that object, read leniently: a receiver that has verified the signature can still
    place the entry in its chain and reject it with a reason, instead of refusing everything after it."""

    def __init__(self, message: str, payload: dict):
        super().__init__(message)
        self.payload = payload


def parse_canonical(data: bytes, what: str) -> dict:
    """The JSON object encoded by ``data``, which must be its canonical encoding; raises :class:`TokenError`
    (:class:`NonCanonicalPayload` when it is a JSON object in another form)."""
    try:
        text = data.decode("utf-8")
        obj = json.loads(text, parse_float=_refuse_number, parse_constant=_refuse_number)
    except _NotInteger as exc:
        lenient = _lenient_object(text)
        message = f"{what} holds a number that is not an integer ({exc})"
        raise NonCanonicalPayload(message, lenient) if lenient is not None else TokenError(message) from exc
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise TokenError(f"{what} is not UTF-8 JSON") from exc
    if not isinstance(obj, dict):
        raise TokenError(f"{what} is not a JSON object")
    try:
        canonical = canonical_json(obj)
    except (UnicodeEncodeError, RecursionError) as exc:
        raise NonCanonicalPayload(f"{what} is not canonical JSON", obj) from exc
    if canonical != data:
        raise NonCanonicalPayload(f"{what} is not canonical JSON (sorted keys, no whitespace, UTF-8)", obj)
    return obj


def _lenient_object(text: str) -> dict | None:
    """``text`` read as JSON with fractions, exponents and NaN allowed, if it is an object."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def check_header(header_b64: str, kid: str | None = None) -> dict:
    """The protected header of an entry: exactly ``alg`` (Ed25519 or EdDSA) and ``kid``, canonically encoded."""
    try:
        header = parse_canonical(b64url_decode(header_b64), "header")
    except ValueError as exc:
        raise TokenError(f"header: {exc}") from exc
    extra = sorted(set(header) - set(HEADER_MEMBERS))
    if extra:
        raise TokenError(f"header has members other than alg and kid: {', '.join(extra)}")
    if header.get("alg") not in ACCEPTED_ALGS:
        raise TokenError("wrong algorithm")
    if not isinstance(header.get("kid"), str) or (kid is not None and header["kid"] != kid):
        raise TokenError("header does not name the station's key")
    return header


def verify_token(token: str, keys: KeySet | OKPKey) -> dict:
    """Verify one token (header, signature, canonical payload) and return its payload; raises :class:`TokenError`."""
    if not isinstance(token, str) or not token.isascii() or token.count(".") != 2:
        raise TokenError("not a JWS compact serialization")
    header_b64, payload_b64, signature_b64 = token.split(".")
    check_header(header_b64)
    try:
        b64url_decode(signature_b64)
        payload_bytes = b64url_decode(payload_b64)
    except ValueError as exc:
        raise TokenError(f"not a JWS compact serialization: {exc}") from exc
    try:
        jws.deserialize_compact(token, keys, registry=_registry)
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise TokenError(f"signature does not verify ({exc.__class__.__name__})") from exc
    return parse_canonical(payload_bytes, "payload")


def unverified_payload(token: str) -> dict:
    """Read a token's payload without checking it (for display of something already verified)."""
    return json.loads(b64url_decode(token.split(".")[1]))


@dataclass(frozen=True)
class ChainProblem:
    """The first place a chain stops verifying."""

    seq: int
    reason: str


class KeyTrack:
    """Which key signs each entry of a station's chain, followed along the chain (docs/protocol.md, "Keys").

    ``anchors`` are the keys a verifier trusts for the station (the bank's published JWKS, or the keys the bank
    enrolled). An entry is signed with the key of the previous entry, except:

    - a ``start`` entry carries its own key (``jwk``) and is signed with it; that key must be an anchor (the bank
      enrolled it: seq 1 for a new station, a later seq for a replacement device that continues the chain);
      ``replacements`` (kid -> seq), when given, also pins a replacement key to the one seq it may start at;
    - a ``key_rotation`` entry is signed with the old key and names the next one (``jwk``), which signs every
      entry after it. Such a key needs not be an anchor: the old key vouches for it.

    ``current`` is the key that signs the next entry (None: not known yet, e.g. a chain read from its middle,
    where the first entry may be signed by any anchor).
    """

    def __init__(self, anchors, *, current: str | None = None, replacements: Mapping[str, int] | None = None):
        self.anchors: dict[str, OKPKey] = {}
        for key in _keys_of(anchors):
            self.anchors[key.thumbprint()] = key
        self.introduced: dict[str, OKPKey] = {}
        #: (seq, key) of each rotation followed: the key signs from seq + 1 on.
        self.rotations: list[tuple[int, OKPKey]] = []
        self.current = current
        self.replacements = replacements
        self._pinned = {seq: kid for kid, seq in (replacements or {}).items()}

    def key(self, kid: str) -> OKPKey:
        """The key named ``kid`` (an anchor or a key introduced by a rotation); raises :class:`TokenError`."""
        key = self.introduced.get(kid) or self.anchors.get(kid)
        if key is None:
            raise TokenError(f"signed with key {kid!r}, which is not one of the station's keys")
        return key

    def follow(self, seq: int, kid: str, payload: Mapping[str, Any]) -> None:
        """Check that entry ``seq`` (verified with ``kid``, payload ``payload``) was signed with the right key, then
        move to the key that signs the next entry; raises :class:`TokenError`."""
        entry_type = payload.get("type")
        pinned = self._pinned.get(seq)
        if pinned is not None and (entry_type != "start" or kid != pinned):
            # The bank gave this seq to a replacement device: the old device's entries cannot take it.
            raise TokenError(f"seq {seq} belongs to the replacement device's start entry (key {pinned})")
        if entry_type == "start":
            carried = _kid_of(payload.get("jwk"))
            # A start entry without a usable key is malformed, which the ledger rejects; one that names another key
            # than its signer's contradicts itself.
            if "jwk" in payload and carried is not None and carried != kid:
                raise TokenError("the start entry is not signed with the key it carries")
            # A start entry signed with the key in force hands over nothing (the ledger judges the entry); one that
            # brings another key must bring one the bank enrolled, for a replacement device at this very seq.
            if kid != self.current:
                if kid not in self.anchors:
                    raise TokenError("the start entry's key is not one the bank enrolled for the station")
                if seq > 1 and self.replacements is not None and self.replacements.get(kid) != seq:
                    raise TokenError(f"key {kid} was not enrolled to continue the chain at seq {seq}")
        elif self.current is not None and kid != self.current:
            raise TokenError(f"signed with key {kid}, but the station's key at seq {seq} is {self.current}")
        self.current = kid
        if entry_type == "key_rotation":
            # A rotation that names no usable Ed25519 public key (or the key it is signed with) hands over nothing:
            # the ledger rejects it as malformed and the old key signs on.
            new_key = rotation_key(payload, kid)
            if new_key is not None:
                self.introduced[new_key.thumbprint()] = new_key
                self.rotations.append((seq, new_key))
                self.current = new_key.thumbprint()


def rotation_key(payload: Mapping[str, Any], kid: str) -> OKPKey | None:
    """The key a ``key_rotation`` entry signed with ``kid`` hands over to, or None when it names no usable one."""
    new_key = _public_ed25519(payload.get("jwk"))
    return new_key if new_key is not None and new_key.thumbprint() != kid else None


def _public_ed25519(jwk) -> OKPKey | None:
    """The Ed25519 public key of a published JWK (without a private part), or None."""
    if not isinstance(jwk, Mapping) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "d" in jwk:
        return None
    try:
        return verification_key(jwk)
    except (JoseError, ValueError, KeyError, TypeError):
        return None


def _kid_of(jwk) -> str | None:
    key = _public_ed25519(jwk)
    return key.thumbprint() if key is not None else None


def _keys_of(anchors) -> list[OKPKey]:
    if isinstance(anchors, OKPKey):
        return [anchors]
    if isinstance(anchors, KeySet):
        return list(anchors.keys)
    return [key if isinstance(key, OKPKey) else verification_key(key) for key in anchors]


def token_kid(token: str) -> str | None:
    """The ``kid`` of a token's protected header, unverified (None when it cannot be read)."""
    try:
        header = json.loads(b64url_decode(token.split(".")[0]))
    except (ValueError, IndexError, AttributeError, RecursionError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


def verify_chain(
    tokens: Iterable[tuple[int, str]],
    keys: KeySet | OKPKey | KeyTrack,
    station_id: str,
    *,
    first_seq: int = 1,
    prev: str | None = None,
) -> ChainProblem | None:
    """Check a run of ``(seq, token)`` pairs; ``None`` when intact, else the first problem.

    Checks each token with :func:`verify_token` under the key :class:`KeyTrack` expects (``keys`` are the anchors,
    or a ready track), that payload ``seq`` is the integer stored seq and follows without gaps from
    ``first_seq``, that ``v`` is the integer 1, that ``station`` is ``station_id``, that ``prev`` chains, and that
    seq 1 is a start entry chained to the genesis value. ``prev`` is the chain head before ``first_seq`` (genesis
    when starting at 1).
    """
    track = keys if isinstance(keys, KeyTrack) else KeyTrack(keys)
    expected_seq = first_seq
    expected_prev = prev if prev is not None else genesis_prev(station_id)
    for stored_seq, token in tokens:
        if not is_integer(stored_seq):
            return ChainProblem(expected_seq, f"stored seq {stored_seq!r} is not an integer")
        if stored_seq != expected_seq:
            return ChainProblem(expected_seq, f"gap: expected seq {expected_seq}, found {stored_seq}")
        try:
            kid = token_kid(token)
            payload = verify_token(token, track.key(kid or ""))
        except TokenError as exc:
            return ChainProblem(stored_seq, str(exc))
        if not is_integer(payload.get("seq")) or payload["seq"] != stored_seq:
            return ChainProblem(stored_seq, f"token carries seq {payload.get('seq')!r}, stored as {stored_seq}")
        if not is_integer(payload.get("v")) or payload["v"] != PROTOCOL_VERSION:
            return ChainProblem(stored_seq, f"token carries protocol version {payload.get('v')!r}, not 1")
        if payload.get("station") != station_id:
            return ChainProblem(stored_seq, f"token is for station {payload.get('station')!r}")
        if payload.get("prev") != expected_prev:
            return ChainProblem(stored_seq, "prev does not match the hash of the previous entry")
        if stored_seq == 1 and payload.get("type") != "start":
            return ChainProblem(1, "the first entry is not a start entry")
        try:
            track.follow(stored_seq, kid, payload)
        except TokenError as exc:
            return ChainProblem(stored_seq, str(exc))
        expected_prev = chain_hash(token)
        expected_seq += 1
    return None
