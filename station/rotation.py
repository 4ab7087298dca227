"""Rotating the station's signing key: a ``key_rotation`` entry, signed with the old key, names the new one.

The key files and which key signs which seq are ``station.keys``; docs/protocol.md ("Keys") is the spec.
"""

from __future__ import annotations

import json
import os

from station.journal import append_entry
from station.keys import (
    NEXT_KEY_FILE,
    ROTATION_REASONS,
    SIGNING_KEY_FILE,
    prune_retired_keys,
    remember_public_key,
    retire_key,
)
from station.protocol.private_files import write_private_file
from station.protocol.tokens import Signer, generate_signing_key, key_id, public_jwk


def rotate_key(st, reason: str = "technician"):
    """Write a ``key_rotation`` entry signed with the current key, naming a new key that signs from then on.

    Returns the journal entry. The new private key is on disk (``next.jwk``) before the entry commits; the signer
    switches inside the write transaction (writers serialise on it); the files are renamed after the commit.
    """
    if reason not in ROTATION_REASONS:
        raise ValueError(f"reason is one of {', '.join(ROTATION_REASONS)}")
    data_dir = st.data_dir
    new_key = generate_signing_key()
    write_private_file(data_dir / NEXT_KEY_FILE, json.dumps(new_key.as_dict(private=True)))
    remember_public_key(data_dir, new_key, st.signing_key)
    before = st.signing_key, st.signer
    try:
        with st.write():
            # Signed with the key in force (``current_signer`` loads it first if another process rotated).
            entry = append_entry(st, "key_rotation", st.now(), {"jwk": public_jwk(new_key), "reason": reason})
            old_key = st.signing_key
            # Every later entry is signed with the new key: switched while this transaction holds the write lock;
            # another process serving this station sees the setting and reloads its key (``current_signer``).
            st.set_setting("signing_kid", key_id(new_key))
            st.signing_key, st.signer = new_key, Signer(new_key)
    except BaseException:
        st.signing_key, st.signer = before
        (data_dir / NEXT_KEY_FILE).unlink(missing_ok=True)
        raise
    retire_key(data_dir, old_key)
    os.replace(data_dir / NEXT_KEY_FILE, data_dir / SIGNING_KEY_FILE)
    prune_retired_keys(st)
    return entry
