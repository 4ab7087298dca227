"""PIN verifiers: scrypt with a random salt, in a self-describing string both sides can read.

Format: ``scrypt$<log2 n>$<r>$<p>$<salt b64url>$<hash b64url>``. The server makes customers' verifiers
and sends them down to stations; stations make their agents' verifiers locally. A PIN itself is never stored,
logged or sent anywhere.
"""

from __future__ import annotations

import hmac
import os
import re
from itertools import pairwise

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from station.protocol.tokens import b64url, b64url_decode

#: 2**14 with r=8 costs about 16 MiB and tens of milliseconds: slow for a guesser with a stolen SD card,
#: still quick enough for a customer at the counter on a Raspberry Pi.
DEFAULT_LOG2_N = 14
#: ASCII digits only (``\d`` would take other scripts' digits) and no trailing newline (which ``$`` allows).
PIN_RE = re.compile(r"^[0-9]{4,6}\Z")


def weak_pin(pin: str) -> bool:
    """True for a PIN anyone tries first: one digit repeated (1111) or digits in a row, up or down, wrapping
    past 9 (1234, 654321, 7890). ``pin`` is a PIN ``PIN_RE`` accepts."""
    steps = {(int(b) - int(a)) % 10 for a, b in pairwise(pin)}
    return len(steps) == 1 and steps <= {0, 1, 9}


def _derive(pin: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**log2_n, r=r, p=p).derive(pin.encode("ascii"))


def make_pin_verifier(pin: str, *, log2_n: int | None = None) -> str:
    """A fresh verifier for ``pin`` (4 to 6 digits; raises ``ValueError`` otherwise), at cost ``log2_n``
    (``DEFAULT_LOG2_N`` as it is when called)."""
    if not PIN_RE.match(pin or ""):
        raise ValueError("A PIN is 4 to 6 digits.")
    log2_n = DEFAULT_LOG2_N if log2_n is None else log2_n
    salt = os.urandom(16)
    r, p = 8, 1
    return f"scrypt${log2_n}${r}${p}${b64url(salt)}${b64url(_derive(pin, salt, log2_n, r, p))}"


def check_pin(pin: str, verifier: str) -> bool:
    """True when ``pin`` matches ``verifier``; constant-time in the comparison; False for junk input."""
    if not PIN_RE.match(pin or ""):
        return False
    try:
        scheme, log2_n, r, p, salt, digest = verifier.split("$")
        if scheme != "scrypt":
            return False
        candidate = _derive(pin, b64url_decode(salt), int(log2_n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate, b64url_decode(digest))
