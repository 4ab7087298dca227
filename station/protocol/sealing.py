"""HPKE sealing of the sync envelopes: compress, then seal to the recipient's X25519 key with a bound ``info``.

The suite is X25519 / HKDF-SHA256 / ChaCha20-Poly1305 (RFC 9180, base mode). The ``info`` string binds what the
sealed bytes are for (a batch: station id and range; a downlink: station id and acked-through seq), so sealed
bytes replayed under other headers do not decrypt.

Guarantees: :func:`unseal` returns the plaintext only when it decrypts with the key and exactly that ``info``
(else :class:`Undecryptable`), and never expands it beyond the bound its caller gives (at most
:data:`MAX_PLAIN_BYTES`; else :class:`TooLarge`): a small sealed body is no memory bomb, and the caller bounds what
it would verify by what the body can honestly hold.
"""

from __future__ import annotations

import zlib

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from station.protocol.envelope_errors import EnvelopeError, TooLarge, Undecryptable

#: Version of the sync envelope formats: named in the HPKE info strings, the batch body and the ack payload.
ENVELOPE_VERSION = 1
#: Decompression stops here: a small sealed batch must not expand into a memory bomb.
MAX_PLAIN_BYTES = 16 * 1024 * 1024

SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


def batch_info(station_id: str, first: int, last: int) -> bytes:
    """The HPKE ``info`` of a batch: binds station id and range to the ciphertext."""
    return f"station-kit/batch/v{ENVELOPE_VERSION}|{station_id}|{first}|{last}".encode()


def downlink_info(station_id: str, acked_through: int) -> bytes:
    """The HPKE ``info`` of a downlink: binds station id and acked-through seq."""
    return f"station-kit/downlink/v{ENVELOPE_VERSION}|{station_id}|{acked_through}".encode()


def seal(plaintext: bytes, recipient: X25519PublicKey, *, info: bytes, level: int) -> bytes:
    """``plaintext`` compressed with zlib at ``level``, then sealed with HPKE to ``recipient`` under ``info``."""
    return SUITE.encrypt(zlib.compress(plaintext, level), recipient, info=info)


def unseal(sealed: bytes, key: X25519PrivateKey, *, info: bytes, refusal: str,
           max_plain: int = MAX_PLAIN_BYTES) -> bytes:
    """The plaintext of :func:`seal`'s output; ``refusal`` is the message of :class:`Undecryptable`.

    ``max_plain``: the most the plaintext may be (at most :data:`MAX_PLAIN_BYTES`); decompression stops there, so
    what is beyond it is never inflated. Raises :class:`Undecryptable`, :class:`TooLarge`, or
    :class:`EnvelopeError` (not zlib data, truncated).
    """
    try:
        compressed = SUITE.decrypt(sealed, key, info=info)
    except (InvalidTag, ValueError) as exc:
        raise Undecryptable(refusal) from exc
    return _bounded_decompress(compressed, min(max_plain, MAX_PLAIN_BYTES))


def _bounded_decompress(data: bytes, max_plain: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, max_plain)
    except zlib.error as exc:
        raise EnvelopeError("the batch is not valid compressed data") from exc
    if inflater.unconsumed_tail:
        raise TooLarge(f"the batch expands beyond {max_plain} bytes")
    if not inflater.eof:
        raise EnvelopeError("the compressed batch is truncated")
    return out
