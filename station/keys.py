"""The station's signing keys over its life: rotation, the key of each seq, and retired keys.

Files in the data folder's ``keys/`` (mode 0600):

- ``signing.jwk``: the current private key, which signs the next entry;
- ``next.jwk``: only while a rotation is under way (written before the rotation entry commits);
- ``retired/<kid>.jwk``: an old private key, kept only while a batch may still need it (the bank has not yet
  acknowledged the rotation entry), then deleted (:func:`prune_retired_keys`);
- ``public-keys.json``: every public key this device has signed with, kept for ever (the station's own trust
  anchors for ``verify-journal``, and the ``jwks.json`` of an export).

Which key signs which entry is written in the journal itself (docs/protocol.md, "Keys"): a ``start`` entry carries
the key that signs it and what follows; a ``key_rotation`` entry, signed with the old key, names the next one.
``station.rotation.rotate_key`` writes that entry and switches the station's signer inside the same write
transaction, so no other writer thread can sign the next entry with the old key; a crash between the commit and
the file renames is finished when the station opens next (:func:`finish_rotation`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from joserfc.jwk import OKPKey

from station.protocol.private_files import write_private_file
from station.protocol.tokens import Signer, key_id, public_jwk, rotation_key, token_kid, unverified_payload

SIGNING_KEY_FILE = "keys/signing.jwk"
NEXT_KEY_FILE = "keys/next.jwk"
RETIRED_DIR = "keys/retired"
PUBLIC_KEYS_FILE = "keys/public-keys.json"
ROTATION_REASONS = ("scheduled", "bank_request", "technician")


class KeyMissing(RuntimeError):
    """The private key the journal names for a seq is not on this device (deleted after its rotation, or the key
    files do not belong to this journal)."""


def load_private_key(path: Path) -> OKPKey:
    return OKPKey.import_key(json.loads(path.read_text(encoding="utf-8")))


def _spans_of(rows) -> list[tuple[int, str]]:
    """(first seq, kid) of the keys that the given (seq, type, token) start and key_rotation entries bring, as
    ``KeyTrack`` follows them: a start entry's signing key from its seq, a rotation's next key from the seq after."""
    spans = []
    for seq, entry_type, token in rows:
        kid = token_kid(token)
        if entry_type == "start":
            spans.append((seq, kid))
        elif (new_key := rotation_key(unverified_payload(token), kid or "")) is not None:
            spans.append((seq + 1, new_key.thumbprint()))
    return spans


_SPAN_ENTRIES = ("SELECT seq, type, token FROM journal_entry WHERE seq > ? AND seq <= ? "
                 "AND type IN ('start', 'key_rotation') ORDER BY seq")


def key_spans(db) -> list[tuple[int, str]]:
    """(first seq, kid) of each key of the journal, in order (the whole journal read once)."""
    return _spans_of(db.execute_sql(_SPAN_ENTRIES, (0, 2**62)).fetchall())


def station_key_spans(st) -> list[tuple[int, str]]:
    """:func:`key_spans` of ``st``'s journal, kept on the station and brought up to date by reading only the
    entries appended since (the journal is append-only): a sync asks once per batch."""
    scanned, spans = st._key_spans
    head = st.db.execute_sql("SELECT MAX(seq) FROM journal_entry").fetchone()[0] or 0
    if head > scanned:
        spans = spans + _spans_of(st.db.execute_sql(_SPAN_ENTRIES, (scanned, head)).fetchall())
        st._key_spans = (head, spans)
    return spans


def kid_at(st, seq: int) -> str | None:
    """The kid of the key that signs entry ``seq`` (None before the journal's first start entry)."""
    kid = None
    for first, span_kid in station_key_spans(st):
        if first <= seq:
            kid = span_kid
    return kid


def public_keys(data_dir: Path, current: OKPKey) -> list[dict]:
    """Every public key this device has signed with (the current one last)."""
    path = data_dir / PUBLIC_KEYS_FILE
    keys = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    kids = {jwk["kid"] for jwk in keys}
    if key_id(current) not in kids:
        keys.append(public_jwk(current))
    return keys


def remember_public_key(data_dir: Path, key: OKPKey, current: OKPKey) -> None:
    """Add ``key``'s public half to ``public-keys.json`` (before it signs anything)."""
    keys = public_keys(data_dir, current)
    if key_id(key) not in {jwk["kid"] for jwk in keys}:
        keys.append(public_jwk(key))
    write_private_file(data_dir / PUBLIC_KEYS_FILE, json.dumps(keys, indent=2))


def finish_rotation(data_dir: Path, db, signing_key: OKPKey) -> OKPKey:
    """Complete or undo a rotation a crash interrupted; returns the current signing key.

    ``next.jwk`` with the journal's current key is a committed rotation: the old key is retired and the new one
    becomes ``signing.jwk``. A ``next.jwk`` the journal does not name is a rotation that never committed: deleted.
    """
    next_path = data_dir / NEXT_KEY_FILE
    if not next_path.exists():
        return signing_key
    pending = load_private_key(next_path)
    spans = key_spans(db)
    if spans and spans[-1][1] == key_id(pending) and key_id(signing_key) != key_id(pending):
        retire_key(data_dir, signing_key)
        os.replace(next_path, data_dir / SIGNING_KEY_FILE)
        return pending
    next_path.unlink()
    return signing_key


def retire_key(data_dir: Path, key: OKPKey) -> None:
    write_private_file(data_dir / RETIRED_DIR / f"{key_id(key)}.jwk", json.dumps(key.as_dict(private=True)))


def private_key_for(data_dir: Path, current: OKPKey, kid: str) -> OKPKey | None:
    """The private key named ``kid``: the current one or a retired one still kept (None: deleted)."""
    if kid == key_id(current):
        return current
    path = data_dir / RETIRED_DIR / f"{kid}.jwk"
    return load_private_key(path) if path.exists() else None


def current_signer(st) -> Signer:
    """The signer of the next entry, called inside the write transaction: when another process (``station
    rotate-key`` beside ``station serve``) rotated the key, this one loads the new key before it signs."""
    expected = st.setting("signing_kid")
    if expected is None or expected == st.signer.kid:
        return st.signer
    key = load_private_key(st.data_dir / SIGNING_KEY_FILE)
    next_path = st.data_dir / NEXT_KEY_FILE
    if key_id(key) != expected and next_path.exists():
        key = load_private_key(next_path)
    if key_id(key) != expected:
        raise KeyMissing(f"the journal's signing key is {expected}, but no key file holds it")
    st.signing_key, st.signer = key, Signer(key)
    return st.signer


def prune_retired_keys(st) -> list[str]:
    """Delete the retired private keys no batch can need any more; returns their kids.

    A batch is signed with the key of the entry after its last one, so a retired key is needed while the bank
    has not acknowledged the rotation entry that ended it. A station with no bank needs none.
    """
    retired = list((st.data_dir / RETIRED_DIR).glob("*.jwk"))
    if not retired:  # the usual case: no need to look at the journal's keys
        return []
    acked = st.setting("acked_seq", 0) if st.config.get("server") else None
    spans = station_key_spans(st)
    ends = {kid: spans[i + 1][0] for i, (_, kid) in enumerate(spans[:-1])}  # kid -> first seq of the next key
    deleted = []
    for path in retired:
        kid = path.stem
        if kid == key_id(st.signing_key):
            continue
        next_first = ends.get(kid)
        if acked is None or next_first is None or next_first <= acked + 1:
            path.unlink()
            deleted.append(kid)
    return deleted
