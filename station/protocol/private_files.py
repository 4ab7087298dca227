"""Private files of both sides: keys and the device's config, readable by their owner only.

One writer for the station (``keys/``, ``config.json``) and the sync server (``SYNC_SERVER_KEYS_DIR``): the file
is written to a temporary name with mode 0600 in a 0700 folder, flushed to disk, then renamed into place, so a
power cut leaves the old file or the new one, never half a key. Pure standard library, like the rest of
``station.protocol``.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_private_file(path: Path, text: str | bytes, *, replace: bool = True) -> None:
    """Write ``text`` (UTF-8) or bytes to ``path`` (mode 0600) durably and atomically.

    With ``replace=False`` an existing file is kept and ``FileExistsError`` raised: the server's keys, once
    stations have pinned them, are never overwritten.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8") if isinstance(text, str) else text)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            # link() refuses an existing target atomically, where exists()-then-rename would race.
            os.link(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
