"""The server's own keys: an Ed25519 key that signs acks, an X25519 key that stations seal batches to.

They live in the keys folder (``SYNC_SERVER_KEYS_DIR``, files mode 0600), never in the database or the package,
so every worker of one deployment reads the same pair and a database dump does not carry them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from joserfc.jwk import OKPKey

from station.protocol.key_codecs import (
    encryption_private_from_text,
    encryption_private_to_text,
    encryption_public_jwk,
    generate_encryption_key,
)
from station.protocol.private_files import write_private_file
from station.protocol.tokens import Signer, generate_signing_key, public_jwk

SIGNING_FILE = "signing.jwk"
ENCRYPTION_FILE = "encryption.key"


class KeysMissing(RuntimeError):
    """The keys folder has no server keys: run ``sync-server keys --create``."""


@dataclass(frozen=True)
class ServerKeys:
    signer: Signer
    encryption_key: X25519PrivateKey

    def public(self) -> dict:
        """What stations pin at enrollment."""
        return {"signing_jwk": public_jwk(self.signer.key),
                "encryption_jwk": encryption_public_jwk(self.encryption_key)}


def create_keys(keys_dir: str | os.PathLike) -> ServerKeys:
    """Create the key pair; refuses to replace existing keys (stations have pinned them)."""
    keys_dir = Path(keys_dir)
    if (keys_dir / SIGNING_FILE).exists() or (keys_dir / ENCRYPTION_FILE).exists():
        raise FileExistsError(f"{keys_dir} already holds server keys; stations have pinned them.")
    write_private_file(keys_dir / SIGNING_FILE, json.dumps(generate_signing_key().as_dict(private=True)),
                       replace=False)
    write_private_file(keys_dir / ENCRYPTION_FILE, encryption_private_to_text(generate_encryption_key()),
                       replace=False)
    return load_keys(keys_dir)


def load_keys(keys_dir: str | os.PathLike) -> ServerKeys:
    """The server's keys from ``keys_dir``; ``KeysMissing`` when absent."""
    keys_dir = Path(keys_dir)
    try:
        signing = OKPKey.import_key(json.loads((keys_dir / SIGNING_FILE).read_text(encoding="utf-8")))
        encryption = encryption_private_from_text((keys_dir / ENCRYPTION_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise KeysMissing(f"No server keys in {keys_dir}: run `sync-server keys --create` first.") from exc
    return ServerKeys(Signer(signing), encryption)
