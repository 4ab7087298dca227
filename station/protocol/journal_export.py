"""A hand-carried journal export: what ``station export-journal`` writes and what the bank and auditors read.

The folder holds ``journal.jsonl``, one line per entry in seq order, each exactly the JSON object
``{"seq": N, "type": "<the entry's type>", "jws": "<the entry's compact JWS>"}``, and ``jwks.json``, the public
keys the device held. Neither is trusted by a reader: the seq and type of a line are labels (the chain check
compares the seq with the signed payload's, :func:`mislabelled` the type), and the keys to verify with are the
ones the bank enrolled and publishes (``GET /api/v1/stations/ID/jwks``), never the folder's own ``jwks.json``,
which whoever carried the folder could have replaced together with the entries.

Pure code (no Flask, no peewee): the station writes and audits exports with it, the sync server imports them
(``sync-server journal import``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from station.protocol.tokens import is_integer, unverified_payload

JOURNAL_FILE = "journal.jsonl"
JWKS_FILE = "jwks.json"


class ExportError(ValueError):
    """An export folder that cannot be read as ``journal.jsonl`` lines."""


def export_line(seq: int, token: str) -> str:
    """The ``journal.jsonl`` line of entry ``seq`` (with its newline): its seq, its type and its JWS."""
    return json.dumps({"seq": seq, "type": unverified_payload(token)["type"], "jws": token}) + "\n"


def read_export(folder: Path) -> list[tuple[int, str, str]]:
    """The ``(seq, type, jws)`` of every line of ``folder/journal.jsonl``; raises :class:`ExportError`."""
    path = Path(folder) / JOURNAL_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from exc
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise ExportError(f"line {number} is not JSON") from exc
        if (not isinstance(item, dict) or set(item) != {"seq", "type", "jws"} or not is_integer(item["seq"])
                or not isinstance(item["type"], str) or not isinstance(item["jws"], str)):
            raise ExportError(f"line {number} is not an object of an integer seq, a type and a jws")
        lines.append((item["seq"], item["type"], item["jws"]))
    return lines


def mislabelled(lines: Iterable[tuple[int, str, str]]) -> list[tuple[int, str]]:
    """``(seq, problem)`` of every line whose ``type`` is not its entry's; call it on lines whose chain verified."""
    found = []
    for seq, declared, token in lines:
        actual = unverified_payload(token).get("type")
        if declared != actual:
            found.append((seq, f"the export line says type {declared!r}, the entry {actual!r}"))
    return found
