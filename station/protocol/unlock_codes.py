"""One-time unlock codes: the bank unlocks an agent at a station with no network, over the phone.

Both sides compute the same secret offline from the keys they already hold: X25519 of the station's encryption
private key with the server's encryption public key equals X25519 of the server's private key with the station's
public key (the pair that seals batches and downlinks, docs/protocol.md). HKDF-SHA256 turns it into one key per
station and agent (``info`` names the purpose, the station and the agent), and the code is HOTP (RFC 4226,
``cryptography``'s implementation with SHA-256) of that key at the bank's counter for the station, 8 digits.

The bank issues counter N + 1 after N; the station accepts a code only at a counter above the last one it used
(single use: a code read out twice, or an older code, is refused) and at most ``LOOK_AHEAD`` above it (codes the
bank issued that never reached the station). A code names no counter, so the station tries each in that window.

Pure code: no Flask or peewee import (the server imports it).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.twofactor import InvalidToken
from cryptography.hazmat.primitives.twofactor.hotp import HOTP

#: Digits of a code: the most HOTP gives (one guess in 100 million per counter tried).
CODE_DIGITS = 8
#: How many counters past the last used one a station tries (codes issued that were never typed in).
LOOK_AHEAD = 5
_PURPOSE = "station-kit agent unlock v1"


def unlock_key(private_key: X25519PrivateKey, peer_public_key: X25519PublicKey, station_id: str,
               agent_id: str) -> bytes:
    """The HOTP key of the codes that unlock ``agent_id`` at ``station_id``: the station passes its encryption
    private key and the server's public key, the server its private key and the station's public key.
    ``ValueError`` for a public key X25519 refuses (a low-order point: the shared secret would be zero)."""
    shared = private_key.exchange(peer_public_key)
    info = "|".join((_PURPOSE, station_id, agent_id)).encode("utf-8")
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(shared)


def unlock_code(key: bytes, counter: int) -> str:
    """The code of ``counter`` (1, 2, ...) as the bank reads it out: 8 digits."""
    return HOTP(key, CODE_DIGITS, SHA256()).generate(counter).decode("ascii")


def matching_counter(key: bytes, code: str, last_used: int) -> int | None:
    """The counter above ``last_used`` (at most ``LOOK_AHEAD`` above) whose code is ``code``, or None."""
    if not (len(code) == CODE_DIGITS and code.isascii() and code.isdigit()):
        return None
    hotp = HOTP(key, CODE_DIGITS, SHA256())
    for counter in range(last_used + 1, last_used + 1 + LOOK_AHEAD):
        try:
            hotp.verify(code.encode("ascii"), counter)
        except InvalidToken:
            continue
        return counter
    return None
