"""The ID card of the person present at a large or proxy (代办) withdrawal: checked, then kept only as a keyed hash.

``identity_fields`` turns what the agent typed into the withdrawal's ``id_hash``, ``id_last4`` and ``proxy``
fields (station.protocol.id_card); the full number is used inside that call and never stored, journaled, logged or
put in the session cookie. The HMAC key is the station's own (``keys/id_hash.key`` in the data folder, mode 0600,
created on first use and carried by backups like the other keys): docs/threat-model.md says why.
``identity_required`` is the policy's rule, which the bank applies again to the entry (``id_required``).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from station import errors
from station.context import Station
from station.protocol.id_card import IdNumberError, id_hash, last4, parse_id_number
from station.protocol.money import format_yuan
from station.protocol.private_files import write_private_file

ID_HASH_KEY_FILE = "keys/id_hash.key"


def id_hash_key(data_dir: Path) -> bytes:
    """The station's ID-hash key (32 random bytes, hex in the file), created on first use."""
    path = Path(data_dir) / ID_HASH_KEY_FILE
    if not path.exists():
        try:
            write_private_file(path, secrets.token_hex(32), replace=False)
        except FileExistsError:
            pass  # another thread made it first: use that one
    return bytes.fromhex(path.read_text(encoding="utf-8").strip())


def identity_required(st: Station, amount_fen: int, proxy: bool) -> bool:
    """Whether a withdrawal of ``amount_fen`` needs the ID card of the person present (above the policy's
    ``id_check_fen``, or by a proxy)."""
    return proxy or amount_fen > int(st.policy["id_check_fen"])


def identity_fields(st: Station, typed: str, *, proxy: bool) -> dict:
    """The journal fields of a typed ID card number (``InvalidIdNumber`` when it is not a valid one)."""
    try:
        number = parse_id_number(typed, today=st.local_date())
    except IdNumberError as exc:
        raise errors.InvalidIdNumber(exc.code) from exc
    fields = {"id_hash": id_hash(id_hash_key(st.data_dir), number), "id_last4": last4(number)}
    if proxy:
        fields["proxy"] = True
    return fields


def refuse_without_identity(st: Station, amount_fen: int, identity: dict | None) -> None:
    """``IdentityRequired`` when the withdrawal needs an ID card and ``identity`` has none."""
    identity = identity or {}
    if identity_required(st, amount_fen, bool(identity.get("proxy"))) and not identity.get("id_hash"):
        raise errors.IdentityRequired(limit=format_yuan(int(st.policy["id_check_fen"])))
