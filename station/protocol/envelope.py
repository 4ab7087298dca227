"""The sync envelope: a station's gapless run of journal entries (a batch), signed, compressed and sealed for the sync
server.

docs/protocol.md, section "Sync protocol", is the human-readable spec. Each entry travels in compact form
(``station.protocol.compact``) with its raw Ed25519 signature; the batch body (JSON meta, then the signatures
joined) is signed by the station key as a JWS with detached payload, then compressed and sealed with HPKE to the
server's X25519 key (``station.protocol.sealing``; the ``info`` binds station id and range, which also travel in
plain HTTP headers so the server knows whose key to use).

A batch (a heartbeat too) may carry a **tail claim** (``tail`` in the signed body): a compact JWS of its own, signed
by the station key, saying how far the station's journal reached when it sealed the batch (seq and chain value).
The bank keeps the newest one (``station_tail``), so reconciliation can prove that entries are missing even when
they never arrived (``missing_tail``); it is a JWS of its own, not just a field of the batch, because the batch
signature covers bytes the bank does not keep, while the claim is small enough to store and verify again at any time.

A batch (a heartbeat too) of a station of this release also says which downlink it applied last
(``downlink_applied`` in the signed meta: the ``downlink_version`` of that ack, 0 for none, asking for everything):
the bank then sends only what changed since (``sync_server.downlink_versions``), and a lost answer is sent again.

Guarantees of :func:`open_batch`: an opened batch is exactly ``last - first + 1`` entries, each signed by the
station key, chained onto the declared ``prev`` and ending at the declared ``head``, and its tail claim, when it
has one, verifies with the station key (:func:`verify_tail_claim`); nothing of a batch is returned unless all of
it verifies, and every refusal is an :class:`EnvelopeError`. Whether a claim agrees with what the bank holds is not
the envelope's to say: the server compares it with its chain (a contradiction is a fork).
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

from station.protocol.compact import compact_entries, rebuild_payload
from station.protocol.envelope_errors import BadBatchSignature, BadEntry, BadTailClaim, EnvelopeError, TooLarge
from station.protocol.key_codecs import ed25519_public_from_jwk
from station.protocol.sealing import ENVELOPE_VERSION, MAX_PLAIN_BYTES, batch_info, seal, unseal
from station.protocol.times import parse_utc
from station.protocol.tokens import (
    ACCEPTED_ALGS,
    PROTOCOL_VERSION,
    KeyTrack,
    NonCanonicalPayload,
    Signer,
    TokenError,
    b64url,
    b64url_bytes,
    b64url_decode,
    canonical_json,
    chain_hash,
    check_header,
    is_integer,
    jws_registry,
    parse_canonical,
    token_kid,
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
#: "1" when the batch is the push right after an online operation: the server then refreshes and sends down only
#: the customers the batch names (a partial downlink), not every customer of the station.
HEADER_PUSH = "X-Sync-Push"
#: A sealed batch larger than this is refused before any work is done (2G links never send this much at once).
MAX_SEALED_BYTES = 2 * 1024 * 1024
MAX_BATCH_ENTRIES = 5000
#: The largest downlink version a batch may name (JSON's safe integers; the bank keeps it in a BIGINT).
MAX_DOWNLINK_VERSION = 2 ** 53 - 1
SIGNATURE_BYTES = 64
#: What a sealed batch may expand to, bounded before anything is inflated or verified (a few kB of zlib can
#: inflate to megabytes that a signature check would then hash): at most this much per entry of the declared range
#: plus :data:`PLAIN_OVERHEAD_BYTES`, and at most :data:`MAX_EXPANSION` times the sealed size. An honest batch is
#: far below both: a compact entry is a few hundred bytes, and its 64-byte signature does not compress, so a sealed
#: batch also holds at least 64 bytes per entry of its range. The per-entry room is wide on purpose: a tampered
#: station's oversized text (100,000 characters) is still opened and settled as rejected, not refused for ever.
MAX_PLAIN_PER_ENTRY = 256 * 1024
PLAIN_OVERHEAD_BYTES = 64 * 1024
MAX_EXPANSION = 256

#: The ``typ`` of a tail claim's protected header (the header is exactly ``alg``, ``kid`` and ``typ``).
TAIL_TYP = "station-kit-tail+jws"
#: The members of a tail claim's payload, no more and no fewer.
TAIL_MEMBERS = frozenset({"v", "station", "seq", "head", "ts"})
#: A claim is about 300 characters; anything much longer is refused before it is decoded.
MAX_TAIL_CHARS = 2048
_CHAIN_VALUE_BYTES = 32

_registry = jws_registry(MAX_PLAIN_BYTES)


@dataclass(frozen=True)
class TailClaim:
    """A verified tail claim: the station's journal reached ``seq``, whose chain value is ``head``, at its clock's
    ``ts``; ``token`` is the claim itself (a compact JWS), which the bank stores and recon verifies again."""

    token: str
    station_id: str
    seq: int
    head: str
    ts: str


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
    #: The station's signed claim of its journal's end when it sealed the batch; None from a station that sends none.
    tail: TailClaim | None = None
    #: The version of the last downlink the station applied (0: none, send everything); None from an older station.
    downlink_applied: int | None = None


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
    tail: str | None = None,
    downlink_applied: int | None = None,
) -> SealedBatch:
    """Build, sign, compress and seal a batch of ``(seq, token)`` pairs (gapless, ascending).

    ``prev`` is the chain head before the first entry (the ``prev`` of the first entry's payload). ``tail``: the
    station's tail claim (:func:`make_tail_claim`), carried in the signed body; without it the body is exactly what
    stations sent before tail claims existed. ``downlink_applied``: the version of the last downlink the station
    applied (0: none); without it the bank sends every customer, as to stations before downlink versions.
    """
    if not entries:
        raise ValueError("a batch holds at least one entry")
    first, last = entries[0][0], entries[-1][0]
    if last - first + 1 != len(entries) or any(seq != first + i for i, (seq, _) in enumerate(entries)):
        raise ValueError("a batch is a gapless run of entries")
    if tail is not None and not isinstance(tail, str):
        raise ValueError("a tail claim is a compact JWS string")
    if downlink_applied is not None and not _downlink_version(downlink_applied):
        raise ValueError(f"downlink_applied is an integer of 0 to {MAX_DOWNLINK_VERSION}")
    run = compact_entries(entries, station_id)
    meta = {
        "v": ENVELOPE_VERSION,
        "station": station_id,
        "first": first,
        "last": last,
        "prev": prev,
        "head": chain_hash(entries[-1][1]),
        "headers": run.headers,
        "entries": run.items,
    }
    if tail is not None:
        meta["tail"] = tail
    if downlink_applied is not None:
        meta["downlink_applied"] = downlink_applied
    body_json = canonical_json(meta)
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


def make_tail_claim(signer: Signer, *, station_id: str, seq: int, head: str, ts: str) -> str:
    """The station's signed claim that its journal reaches ``seq`` with chain value ``head`` (SHA-256 of entry
    ``seq``'s JWS, base64url), at its own clock's ``ts`` (``utc_text``); see :func:`verify_tail_claim`."""
    header = {"alg": "Ed25519", "kid": signer.kid, "typ": TAIL_TYP}  # in canonical (sorted) order: joserfc keeps it
    payload = {"v": PROTOCOL_VERSION, "station": station_id, "seq": seq, "head": head, "ts": ts}
    return jws.serialize_compact(header, canonical_json(payload), signer.key, registry=_registry)


def verify_tail_claim(token: str, station_signing_jwk: Mapping, station_id: str) -> dict:
    """The payload of a tail claim that verifies with the station's key; raises :class:`BadTailClaim`.

    As strict as an entry (``station.protocol.tokens``), so that one claim has one encoding: a compact JWS of
    unpadded base64url; the protected header is the canonical JSON of exactly ``alg`` (``Ed25519``, or ``EdDSA``),
    ``kid`` (the thumbprint of ``station_signing_jwk``) and ``typ`` ``station-kit-tail+jws``; the signature verifies;
    the payload is the canonical JSON of exactly ``v`` (the integer 1), ``station`` (``station_id``), ``seq`` (an
    integer >= 1), ``head`` (base64url of 32 bytes) and ``ts`` (a time with an offset).
    """
    if not isinstance(token, str) or len(token) > MAX_TAIL_CHARS or not token.isascii() or token.count(".") != 2:
        raise BadTailClaim("the tail claim is not a compact JWS")
    try:
        key = verification_key(station_signing_jwk)
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise BadTailClaim("the station has no usable signing key to verify its tail claim") from exc
    header_b64, payload_b64, signature_b64 = token.split(".")
    try:
        header = parse_canonical(b64url_decode(header_b64), "the tail claim's header")
        payload_bytes = b64url_decode(payload_b64)
        b64url_decode(signature_b64)
    except (TokenError, ValueError) as exc:
        raise BadTailClaim(f"the tail claim is not well-formed ({exc})") from exc
    if set(header) != {"alg", "kid", "typ"} or header["typ"] != TAIL_TYP or header["alg"] not in ACCEPTED_ALGS:
        raise BadTailClaim(f"the tail claim's header is not exactly alg, kid and typ {TAIL_TYP}")
    if header["kid"] != key.thumbprint():
        raise BadTailClaim("the tail claim does not name the station's key")
    try:
        jws.deserialize_compact(token, key, registry=_registry)
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise BadTailClaim("the tail claim's signature does not verify with the station's key") from exc
    try:
        payload = parse_canonical(payload_bytes, "the tail claim's payload")
    except TokenError as exc:
        raise BadTailClaim(str(exc)) from exc
    if set(payload) != TAIL_MEMBERS:
        raise BadTailClaim("the tail claim's payload is not exactly v, station, seq, head and ts")
    if not is_integer(payload["v"]) or payload["v"] != PROTOCOL_VERSION:
        raise BadTailClaim(f"the tail claim's version is {payload['v']!r}, not {PROTOCOL_VERSION}")
    if payload["station"] != station_id:
        raise BadTailClaim(f"the tail claim is for station {payload['station']!r}")
    if not is_integer(payload["seq"]) or payload["seq"] < 1:
        raise BadTailClaim("the tail claim's seq is not a positive integer")
    try:
        if len(b64url_decode(payload["head"])) != _CHAIN_VALUE_BYTES:
            raise ValueError("not 32 bytes")
        if not isinstance(payload["ts"], str):
            raise ValueError("ts is not text")
        parse_utc(payload["ts"])
    except ValueError as exc:
        raise BadTailClaim(f"the tail claim's head or ts is not well-formed ({exc})") from exc
    return payload


def _open_tail(meta: dict, station_id: str, station_signing_jwk: Mapping) -> TailClaim | None:
    if "tail" not in meta:
        return None
    token = meta["tail"]
    payload = verify_tail_claim(token, station_signing_jwk, station_id)
    return TailClaim(token, station_id, payload["seq"], payload["head"], payload["ts"])


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
    station_signing_jwk: Mapping | None = None,
    key_track: KeyTrack | None = None,
) -> Batch:
    """Decrypt, decompress and verify a sealed batch; raises an :class:`EnvelopeError` subclass.

    The station's keys: ``key_track`` (the bank's keys of the station, the one that signs entry ``first`` as its
    ``current``), or one ``station_signing_jwk`` for a station that never changed its key. Each entry must be
    signed with the key the chain says (:class:`KeyTrack`: a ``key_rotation`` entry hands over to the next key);
    the batch and its tail claim with the key that follows the batch's last entry.
    """
    if key_track is None:
        if station_signing_jwk is None:
            raise ValueError("open_batch needs the station's key or key track")
        key = verification_key(station_signing_jwk)
        key_track = KeyTrack([key], current=key.thumbprint())
    if len(sealed) > MAX_SEALED_BYTES:
        raise TooLarge(f"a sealed batch is at most {MAX_SEALED_BYTES} bytes")
    if last < first or first < 1 or last - first + 1 > MAX_BATCH_ENTRIES:
        raise EnvelopeError(f"a batch range is 1 to {MAX_BATCH_ENTRIES} entries")
    if len(sealed) < SIGNATURE_BYTES * (last - first + 1):
        raise EnvelopeError("the sealed batch is too small to hold a signature for each entry of its range")
    plaintext = unseal(sealed, server_encryption_key, info=batch_info(station_id, first, last),
                       refusal="the batch does not decrypt with the server's key for this station and range",
                       max_plain=max_batch_plain_bytes(len(sealed), last - first + 1))
    try:
        if plaintext[:4] != BATCH_MAGIC:
            raise EnvelopeError("not a station-kit batch")
        (jws_len,) = struct.unpack(">I", plaintext[4:8])
        detached = plaintext[8:8 + jws_len].decode("ascii")
        body = plaintext[8 + jws_len:]
        (json_len,) = struct.unpack(">I", body[:4])
    except (struct.error, UnicodeDecodeError) as exc:
        raise EnvelopeError("the batch is truncated") from exc
    # The layout is checked before the signature is: one signature per entry of the range after the JSON.
    if len(body) - 4 - json_len != SIGNATURE_BYTES * (last - first + 1):
        raise EnvelopeError("the batch does not hold exactly its range of entries")
    # The batch's signature is checked first when the bank knows its key; a key that one of the batch's own
    # rotation entries introduces is checked once those entries have verified.
    batch_kid = _detached_kid(detached)
    checked = batch_kid in key_track.anchors
    if checked:
        _verify_detached(detached, body, key_track.anchors[batch_kid])
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
    if len(items) != last - first + 1:
        raise EnvelopeError("the batch does not hold exactly its range of entries")
    opened = _verify_entries(items, headers, signatures, station_id, first, prev, meta.get("head"), key_track)
    if batch_kid != key_track.current:
        raise BadBatchSignature("the batch is not signed with the station's key after its last entry")
    batch_key = key_track.key(batch_kid)
    if not checked:
        _verify_detached(detached, body, batch_key)
    tail = _open_tail(meta, station_id, batch_key.as_dict(private=False))
    applied = meta.get("downlink_applied")
    if applied is not None and not _downlink_version(applied):
        raise EnvelopeError(f"the batch's downlink_applied is not an integer of 0 to {MAX_DOWNLINK_VERSION}")
    return Batch(station_id, first, last, prev, meta.get("head"), opened, tail, applied)


def _downlink_version(value) -> bool:
    return is_integer(value) and 0 <= value <= MAX_DOWNLINK_VERSION


def max_batch_plain_bytes(sealed_bytes: int, entries: int) -> int:
    """The most a sealed batch of ``sealed_bytes`` declaring ``entries`` entries may expand to (see
    :data:`MAX_PLAIN_PER_ENTRY`); decompression stops there and the batch is refused as too large."""
    return min(MAX_PLAIN_BYTES, PLAIN_OVERHEAD_BYTES + MAX_PLAIN_PER_ENTRY * entries,
               PLAIN_OVERHEAD_BYTES + MAX_EXPANSION * sealed_bytes)


def _detached_kid(detached: str) -> str:
    """The ``kid`` of a detached batch signature's header (verified later); raises :class:`BadBatchSignature`."""
    parts = detached.split(".")
    if len(parts) != 3 or parts[1] != "":
        raise BadBatchSignature("the batch signature is not a detached JWS")
    try:
        header = json.loads(b64url_decode(parts[0]))
    except (ValueError, RecursionError) as exc:
        raise BadBatchSignature("the batch signature's header is not JSON") from exc
    kid = header.get("kid") if isinstance(header, dict) else None
    if not isinstance(kid, str):
        raise BadBatchSignature("the batch signature does not name its key")
    return kid


def _verify_entries(items, headers, signatures, station_id, first, prev, head, track: KeyTrack) -> list:
    header_kids: dict[str, str | TokenError] = {}
    for header_b64 in headers:
        if not isinstance(header_b64, str):
            raise EnvelopeError("a batch header is not text")
        try:
            header_kids[header_b64] = check_header(header_b64)["kid"]
        except TokenError as exc:
            header_kids[header_b64] = exc
    # By the header's place in the list, as a compact entry names it: its kid (or why it is refused) and, for one that
    # passed (base64url, so ASCII), the start of its entries' signing input.
    kids = [header_kids[header_b64] for header_b64 in headers]
    starts = [b"" if isinstance(header_kids[header_b64], TokenError) else f"{header_b64}.".encode("ascii")
              for header_b64 in headers]
    publics: dict[str, Ed25519PublicKey] = {}
    opened = []
    unsigned: list[tuple[int, Ed25519PublicKey, bytes, bytes]] = []
    expected_prev = prev
    previous_ms = 0
    for index, item in enumerate(items):
        seq = first + index
        signature = signatures[index * SIGNATURE_BYTES:(index + 1) * SIGNATURE_BYTES]
        form_problem = None
        if isinstance(item, str):
            token = chained = item
            kid = token_kid(token) or ""
            try:
                payload = verify_token(token, track.key(kid))
            except NonCanonicalPayload as exc:
                payload, form_problem = exc.payload, str(exc)
            except TokenError as exc:
                raise BadEntry(f"entry {seq}: {exc}", seq=seq) from exc
            # The place in the chain must be right; a seq written 21.0 is right in place but wrong in form (above).
            declared = payload.get("seq")
            if isinstance(declared, bool) or declared != seq or payload.get("station") != station_id:
                raise BadEntry(f"entry {seq} carries the wrong seq or station", seq=seq)
            if not is_integer(declared):
                form_problem = form_problem or f"seq is {declared!r}, not an integer"
            if payload.get("prev") != expected_prev:
                raise BadEntry(f"entry {seq}: prev does not match the hash of the previous entry", seq=seq)
        else:
            header_index, millis, payload, payload_b64 = rebuild_payload(headers, item, station_id, seq,
                                                                         expected_prev, previous_ms)
            kid = kids[header_index]
            if isinstance(kid, TokenError):
                raise BadEntry(f"entry {seq}: {kid}", seq=seq)
            public = publics.get(kid)
            if public is None:
                try:
                    key = track.key(kid)
                except TokenError as exc:
                    raise BadEntry(f"entry {seq}: {exc}", seq=seq) from exc
                public = publics[kid] = ed25519_public_from_jwk(key.as_dict(private=False))
            # The token is put together as bytes: its first two parts are what the signature covers, the whole what
            # the next entry's prev hashes; the text is decoded once, for the entry the ledger keeps.
            signing_input = starts[header_index] + payload_b64
            chained = signing_input + b"." + b64url_bytes(signature)
            token = chained.decode("ascii")
            unsigned.append((seq, public, signature, signing_input))
            # The payload is the object the token's bytes were made from (canonical by construction, and its seq,
            # station and prev are the ones its place gives). A number that is not an integer is the ledger's to
            # reject in the ack (invalid_amount): refusing the batch would wedge the station's outbox on one signed
            # entry.
            previous_ms = millis
        if seq == 1 and payload.get("type") != "start":
            raise BadEntry("the first entry is not a start entry", seq=1)
        try:
            track.follow(seq, kid, payload)
        except TokenError as exc:
            raise BadEntry(f"entry {seq}: {exc}", seq=seq) from exc
        opened.append(OpenedEntry(seq, token, payload, form_problem))
        expected_prev = chain_hash(chained)
    bad_seq = _first_bad_signature(unsigned)
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
#: Threads that check one batch's signatures (``configure_verify_threads``); None: one per core, at most 4.
_verify_threads: int | None = None


def configure_verify_threads(threads: int | None) -> None:
    """How many threads check a batch's signatures in this process: None for one per core (at most 4), 1 to check
    them in the request's own thread.

    Ed25519 verification releases the GIL, so one process fills every core with it; where the server runs as many
    worker processes as there are cores (``sync-server serve`` sets one thread per worker then), the workers fill
    the cores themselves and threads would only add hand-overs."""
    global _verify_threads, _pool
    if threads is not None and threads < 1:
        raise ValueError("verify threads: at least 1")
    if threads != _verify_threads:
        _verify_threads = threads
        if _pool is not None and _pool_pid == os.getpid():
            _pool.shutdown(wait=False)
        _pool = None


def verify_threads() -> int:
    """Threads a batch's signatures are checked on (``configure_verify_threads``)."""
    return _verify_threads if _verify_threads is not None else min(4, os.cpu_count() or 1)


def _executor() -> ThreadPoolExecutor:
    """A thread pool for signature checks (Ed25519 verification releases the GIL); one per process."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        _pool = ThreadPoolExecutor(max_workers=verify_threads(), thread_name_prefix="verify")
        _pool_pid = os.getpid()
    return _pool


def _first_bad_in(chunk: list[tuple[int, Ed25519PublicKey, bytes, bytes]]) -> int | None:
    for seq, public, signature, signing_input in chunk:
        try:
            public.verify(signature, signing_input)
        except InvalidSignature:
            return seq
    return None


def _first_bad_signature(unsigned: list[tuple[int, Ed25519PublicKey, bytes, bytes]]) -> int | None:
    """The lowest seq whose signature (with its entry's key) does not verify, or None; large batches are checked
    on several cores."""
    threads = verify_threads()
    if len(unsigned) < _PARALLEL_FROM or threads == 1:
        return _first_bad_in(unsigned)
    size = -(-len(unsigned) // threads)
    chunks = [unsigned[i:i + size] for i in range(0, len(unsigned), size)]
    failures = [seq for seq in _executor().map(_first_bad_in, chunks) if seq is not None]
    return min(failures) if failures else None
