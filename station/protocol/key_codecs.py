"""Key codecs of the sync protocol: X25519 encryption keys and Ed25519 public keys, as JWKs and as text.

Guarantees: a public key read from a JWK is of the named curve and the right length, or ``ValueError``; a
private key written with :func:`encryption_private_to_text` reads back the same key. (Ed25519 signing keys and
their JWKs with ``kid`` are ``station.protocol.tokens``'s.)
"""

from __future__ import annotations

from collections.abc import Mapping

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from station.protocol.tokens import b64url, b64url_decode


def generate_encryption_key() -> X25519PrivateKey:
    """A fresh X25519 key (HPKE recipient key of a station or the server)."""
    return X25519PrivateKey.generate()


def encryption_private_to_text(key: X25519PrivateKey) -> str:
    """The private key as base64url of its 32 raw bytes (stored in a 0600 file)."""
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    return b64url(raw)


def encryption_private_from_text(text: str) -> X25519PrivateKey:
    """The X25519 private key from its base64url text."""
    return X25519PrivateKey.from_private_bytes(b64url_decode(text.strip()))


def encryption_public_jwk(key: X25519PrivateKey | X25519PublicKey) -> dict:
    """An X25519 public key as a JWK (``use`` = ``enc``)."""
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "X25519", "x": b64url(raw), "use": "enc"}


def encryption_public_from_jwk(jwk: Mapping) -> X25519PublicKey:
    """The X25519 public key of a JWK; ``ValueError`` when it is not one."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "X25519" or not isinstance(jwk.get("x"), str):
        raise ValueError("not an X25519 public JWK")
    raw = b64url_decode(jwk["x"])
    if len(raw) != 32:
        raise ValueError("an X25519 public key is 32 bytes")
    return X25519PublicKey.from_public_bytes(raw)


def ed25519_public_from_jwk(jwk: Mapping) -> Ed25519PublicKey:
    """The Ed25519 public key of a JWK; ``ValueError`` when it is not one."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("x"), str):
        raise ValueError("not an Ed25519 public JWK")
    return Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))
