"""The sync envelope: a station's gapless run of journal entries (a batch), signed, compressed and sealed for the sync
server.

docs/protocol.md, section "Sync protocol", is the human-readable spec. Each entry travels in compact form
(``station.protocol.compact``) with its raw Ed25519 signature; the batch body (JSON meta, then the signatures
joined) is signed by the station key as a JWS with detached payload, then compressed and sealed with HPKE to the
server's X25519 key (``station.protocol.sealing``; the ``info`` binds station id and range, which also travel in
plain HTTP headers so the server knows whose key to use).

Guarantees of :func:`open_batch`: an opened batch is exactly ``last - first + 1`` entries, each signed by the
station key, chained onto the declared ``prev`` and ending at the declared ``head``; nothing of a batch is
returned unless all of it verifies, and every refusal is an :class:`EnvelopeError`.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from station.protocol.compact import compact_entries, rebuild_token
from station.protocol.envelope_errors import BadBatchSignature, BadEntry, EnvelopeError, TooLarge
from station.protocol.key_codecs import ed25519_public_from_jwk
from station.protocol.sealing import ENVELOPE_VERSION, MAX_PLAIN_BYTES, batch_info, seal, unseal
from station.protocol.tokens import (
    ACCEPTED_ALGS,
    NonCanonicalPayload,
    Signer,
    TokenError,
    b64url,
    b64url_decode,
    canonical_json,
    chain_hash,
    check_header,
    is_integer,
    jws_registry,
    verification_key,
    verify_token,
)

BATCH_MAGIC = b"SKB1"
BATCH_CONTENT_TYPE = "application/vnd.station-kit.batch"
#: Plain HTTP headers of a batch request (the same values are bound into the HPKE info).
HEADER_STATION = "X-Station-Id"
HEADER_FIRST = "X-Batch-First"
HEADER_LAST = "X-Batch-Last"
#: "1" when the station has more batches to send right after this one (the server then defers the downlink).
HEADER_MORE = "X-Sync-More"
#: A sealed batch larger than this is refused before any work is done (2G links never send this much at once).
MAX_SEALED_BYTES = 2 * 1024 * 1024
MAX_BATCH_ENTRIES = 5000
SIGNATURE_BYTES = 64

_registry = jws_registry(MAX_PLAIN_BYTES)


@dataclass(frozen=True)
class OpenedEntry:
    """One verified entry of a batch: the exact token and its payload.

    ``form_problem``: why a payload signed by the station's key is not in the one canonical form (not canonical
    JSON, a number that is not an integer), or None. Such an entry still takes its place in the chain; the ledger
    rejects it in the ack (``malformed_entry``), so one bad entry never holds the station's outbox for ever.
    """

    seq: int
    token: str
    payload: dict
    form_problem: str | None = None


@dataclass(frozen=True)
class Batch:
    """A verified batch: entries ``first..last`` chained from ``prev`` to ``head``."""

    station_id: str
    first: int
    last: int
    prev: str
    head: str
    entries: list[OpenedEntry] = field(default_factory=list)


@dataclass(frozen=True)
class SealedBatch:
    """What the station sends: the sealed bytes and the plain headers."""

    station_id: str
    first: int
    last: int
    body: bytes

    @property
    def headers(self) -> dict:
        """The plain HTTP headers that go with the sealed body."""
        return {
            "Content-Type": BATCH_CONTENT_TYPE,
            HEADER_STATION: self.station_id,
            HEADER_FIRST: str(self.first),
            HEADER_LAST: str(self.last),
        }


def seal_batch(
    entries: Sequence[tuple[int, str]],
    *,
    station_id: str,
    prev: str,
    signer: Signer,
    server_encryption_key: X25519PublicKey,
) -> SealedBatch:
    """Build, sign, compress and seal a batch of ``(seq, token)`` pairs (gapless, ascending).

    ``prev`` is the chain head before the first entry (the ``prev`` of the first entry's payload).
    """
    if not entries:
        raise ValueError("a batch holds at least one entry")
    first, last = entries[0][0], entries[-1][0]
    if last - first + 1 != len(entries) or any(seq != first + i for i, (seq, _) in enumerate(entries)):
        raise ValueError("a batch is a gapless run of entries")
    run = compact_entries(entries, station_id)
    body_json = canonical_json({
        "v": ENVELOPE_VERSION,
        "station": station_id,
        "first": first,
        "last": last,
        "prev": prev,
        "head": chain_hash(entries[-1][1]),
        "headers": run.headers,
        "entries": run.items,
    })
    body = struct.pack(">I", len(body_json)) + body_json + run.signatures
    signed = _sign_detached(signer, body)
    plaintext = BATCH_MAGIC + struct.pack(">I", len(signed)) + signed.encode("ascii") + body
    sealed = seal(plaintext, server_encryption_key, info=batch_info(station_id, first, last), level=9)
    return SealedBatch(station_id, first, last, sealed)


def _sign_detached(signer: Signer, body: bytes) -> str:
    """A JWS over ``body`` with the payload detached (RFC 7515 appendix F): ``header..signature``."""
    header = {"alg": "Ed25519", "kid": signer.kid, "typ": "station-kit-batch+jws"}
    token = jws.serialize_compact(header, body, signer.key, registry=_registry)
    head, _, sig = token.split(".")
    return f"{head}..{sig}"


def _verify_detached(detached: str, body: bytes, key: OKPKey) -> dict:
    parts = detached.split(".")
    if len(parts) != 3 or parts[1] != "":
        raise BadBatchSignature("the batch signature is not a detached JWS")
    token = f"{parts[0]}.{b64url(body)}.{parts[2]}"
    try:
        obj = jws.deserialize_compact(token, key, registry=_registry)
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise BadBatchSignature("the batch signature does not verify with the station's key") from exc
    if obj.protected.get("alg") not in ACCEPTED_ALGS:
        raise BadBatchSignature("wrong algorithm")
    return obj.protected


def open_batch(
    sealed: bytes,
    *,
    station_id: str,
    first: int,
    last: int,
    server_encryption_key: X25519PrivateKey,
    station_signing_jwk: Mapping,
) -> Batch:
    """Decrypt, decompress and verify a sealed batch; raises an :class:`EnvelopeError` subclass."""
    if len(sealed) > MAX_SEALED_BYTES:
        raise TooLarge(f"a sealed batch is at most {MAX_SEALED_BYTES} bytes")
    if last < first or first < 1 or last - first + 1 > MAX_BATCH_ENTRIES:
        raise EnvelopeError(f"a batch range is 1 to {MAX_BATCH_ENTRIES} entries")
    plaintext = unseal(sealed, server_encryption_key, info=batch_info(station_id, first, last),
                       refusal="the batch does not decrypt with the server's key for this station and range")
    try:
        if plaintext[:4] != BATCH_MAGIC:
            raise EnvelopeError("not a station-kit batch")
        (jws_len,) = struct.unpack(">I", plaintext[4:8])
        detached = plaintext[8:8 + jws_len].decode("ascii")
        body = plaintext[8 + jws_len:]
        (json_len,) = struct.unpack(">I", body[:4])
    except (struct.error, UnicodeDecodeError) as exc:
        raise EnvelopeError("the batch is truncated") from exc
    station_key = verification_key(station_signing_jwk)
    _verify_detached(detached, body, station_key)
    try:
        meta = json.loads(body[4:4 + json_len])
    except ValueError as exc:
        raise EnvelopeError("the batch body is not JSON") from exc
    signatures = body[4 + json_len:]
    if not isinstance(meta, dict) or meta.get("v") != ENVELOPE_VERSION:
        raise EnvelopeError("unknown batch version")
    if meta.get("station") != station_id or meta.get("first") != first or meta.get("last") != last:
        raise EnvelopeError("the signed batch does not match its station or range headers")
    items = meta.get("entries")
    headers = meta.get("headers")
    prev = meta.get("prev")
    if not isinstance(items, list) or not isinstance(headers, list) or not isinstance(prev, str):
        raise EnvelopeError("the batch lacks entries, headers or prev")
    if len(items) != last - first + 1 or len(signatures) != SIGNATURE_BYTES * len(items):
        raise EnvelopeError("the batch does not hold exactly its range of entries")
    return Batch(station_id, first, last, prev, meta.get("head"),
                 _verify_entries(items, headers, signatures, station_id, first, prev, meta.get("head"),
                                 station_signing_jwk, station_key))


def _verify_entries(items, headers, signatures, station_id, first, prev, head, jwk, station_key) -> list:
    public = ed25519_public_from_jwk(jwk)
    kid = station_key.thumbprint()
    header_problems: dict[str, str | None] = {}
    for header_b64 in headers:
        if not isinstance(header_b64, str):
            raise EnvelopeError("a batch header is not text")
        try:
            check_header(header_b64, kid)
            header_problems[header_b64] = None
        except TokenError as exc:
            header_problems[header_b64] = str(exc)
    opened = []
    unsigned: list[tuple[int, bytes, bytes]] = []
    expected_prev = prev
    previous_ms = 0
    for index, item in enumerate(items):
        seq = first + index
        signature = signatures[index * SIGNATURE_BYTES:(index + 1) * SIGNATURE_BYTES]
        form_problem = None
        if isinstance(item, str):
            token = item
            try:
                payload = verify_token(token, station_key)
            except NonCanonicalPayload as exc:
                payload, form_problem = exc.payload, str(exc)
            except TokenError as exc:
                raise BadEntry(f"entry {seq}: {exc}", seq=seq) from exc
        else:
            token, millis = rebuild_token(headers, item, station_id, seq, expected_prev, previous_ms, signature)
            header_b64, payload_b64, _ = token.split(".")
            if header_problems[header_b64] is not None:
                raise BadEntry(f"entry {seq}: {header_problems[header_b64]}", seq=seq)
            unsigned.append((seq, signature, f"{header_b64}.{payload_b64}".encode("ascii")))
            # Canonical by construction. A number that is not an integer is the ledger's to reject in the ack
            # (invalid_amount): refusing the batch would wedge the station's outbox on one signed entry.
            payload = json.loads(b64url_decode(payload_b64))
            previous_ms = millis
        # The place in the chain must be right; a seq written 21.0 is right in place but wrong in form (above).
        declared = payload.get("seq")
        if isinstance(declared, bool) or declared != seq or payload.get("station") != station_id:
            raise BadEntry(f"entry {seq} carries the wrong seq or station", seq=seq)
        if not is_integer(declared):
            form_problem = form_problem or f"seq is {declared!r}, not an integer"
        if payload.get("prev") != expected_prev:
            raise BadEntry(f"entry {seq}: prev does not match the hash of the previous entry", seq=seq)
        if seq == 1 and payload.get("type") != "start":
            raise BadEntry("the first entry is not a start entry", seq=1)
        opened.append(OpenedEntry(seq, token, payload, form_problem))
        expected_prev = chain_hash(token)
    bad_seq = _first_bad_signature(public, unsigned)
    if bad_seq is not None:
        # A changed entry also breaks the next one's rebuilt prev: the first failure is the changed entry.
        raise BadEntry(f"entry {bad_seq}: signature does not verify", seq=bad_seq)
    if head != expected_prev:
        raise BadEntry("the batch's declared head does not match its last entry", seq=first + len(items) - 1)
    return opened


_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None
#: Below this many signatures, threads cost more than they save.
_PARALLEL_FROM = 64


def _executor() -> ThreadPoolExecutor:
    """A thread pool for signature checks (Ed25519 verification releases the GIL); one per process."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        _pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="verify")
        _pool_pid = os.getpid()
    return _pool


def _first_bad_in(public: Ed25519PublicKey, chunk: list[tuple[int, bytes, bytes]]) -> int | None:
    for seq, signature, signing_input in chunk:
        try:
            public.verify(signature, signing_input)
        except InvalidSignature:
            return seq
    return None


def _first_bad_signature(public: Ed25519PublicKey, unsigned: list[tuple[int, bytes, bytes]]) -> int | None:
    """The lowest seq whose signature does not verify, or None; large batches are checked on several cores."""
    if len(unsigned) < _PARALLEL_FROM or (os.cpu_count() or 1) == 1:
        return _first_bad_in(public, unsigned)
    size = -(-len(unsigned) // min(4, os.cpu_count() or 1))
    chunks = [unsigned[i:i + size] for i in range(0, len(unsigned), size)]
    failures = [seq for seq in _executor().map(lambda chunk: _first_bad_in(public, chunk), chunks) if seq is not None]
    return min(failures) if failures else None
