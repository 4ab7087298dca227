"""The compact entry codec: a journal token in the few fields its receiver cannot re-derive, and back.

A batch carries each entry as ``[ts, type, txn, rest, *extras]`` plus its raw 64-byte signature: ``v``,
``station``, ``seq``, ``prev`` and the JWS header are re-derived by the receiver (the header as an index into the
batch's list of headers, ``v`` as an extra only when it is not the current protocol version), and ``ts`` is the
delta in milliseconds from the previous compact entry's time.

Guarantees: :func:`rebuild_token` is the exact inverse of :func:`compact_entries`, so the receiver holds the
station's token byte for byte; a token that would not rebuild exactly (not the journal's canonical form) travels
whole instead. A compact entry that cannot be rebuilt is refused as :class:`BadEntry`, never an exception of
another kind. Rebuilding proves nothing about a signature: that is the batch's check.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from station.protocol.envelope_errors import BadEntry
from station.protocol.times import parse_utc, utc_text
from station.protocol.tokens import (
    PROTOCOL_VERSION,
    b64url,
    b64url_bytes,
    b64url_decode,
    canonical_json,
    is_integer,
)

_FIXED_FIELDS = ("v", "station", "seq", "type", "ts", "prev", "txn")
_TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@dataclass(frozen=True)
class CompactRun:
    """A run of entries in compact form: the distinct JWS headers, one item per entry, the signatures joined."""

    headers: list[str]
    items: list[Any]
    signatures: bytes


def compact_entries(entries: Sequence[tuple[int, str]], station_id: str) -> CompactRun:
    """The compact form of a gapless run of ``(seq, token)`` pairs of ``station_id``'s journal."""
    headers: list[str] = []
    items: list[Any] = []
    signatures = bytearray()
    previous_ms = 0
    for seq, token in entries:
        header_b64, payload, signature = _split_token(token)
        if header_b64 not in headers:
            headers.append(header_b64)
        item = _compact_entry(payload, headers.index(header_b64), previous_ms)
        try:
            rebuilt = rebuild_token(headers, item, station_id, seq, payload.get("prev"), previous_ms, signature)
        except BadEntry:
            # An entry the compact form cannot carry (say, a ts that is a number): the bank judges it, whole.
            rebuilt = None
        if rebuilt is None or rebuilt[0] != token:
            # Not the journal's canonical form (a foreign or hand-made token): send it whole.
            item = token
        else:
            previous_ms = rebuilt[1]
        items.append(item)
        signatures += signature
    return CompactRun(headers, items, bytes(signatures))


def rebuild_token(headers, item, station_id, seq, prev, previous_ms, signature) -> tuple[str, int, dict]:
    """The exact JWS string of a compact entry, its ts in ms (for the next entry's delta), and its payload: the
    object whose canonical JSON the token carries (so the receiver need not decode and parse it again)."""
    header_index, millis, payload, payload_b64 = rebuild_payload(headers, item, station_id, seq, prev, previous_ms)
    return f"{headers[header_index]}.{payload_b64.decode('ascii')}.{b64url(signature)}", millis, payload


def rebuild_payload(headers, item, station_id, seq, prev, previous_ms) -> tuple[int, int, dict, bytes]:
    """:func:`rebuild_token` up to the payload: the index of the entry's header in ``headers``, its ts in ms, its
    payload, and the payload's part of the token (base64url, ASCII bytes). The batch's receiver joins the parts as
    bytes: the signing input is what the signature covers, the whole token what the chain hash covers."""
    if not isinstance(item, list) or len(item) < 4 or not isinstance(item[3], dict):
        raise BadEntry(f"entry {seq} is not a compact entry", seq=seq)
    ts, entry_type, txn, rest, *extras = item
    header_index = 0
    version = PROTOCOL_VERSION
    for extra in extras:
        if is_integer(extra):
            header_index = extra
        elif isinstance(extra, dict) and "v" in extra:
            version = extra["v"]
    if not 0 <= header_index < len(headers):
        raise BadEntry(f"entry {seq} names an unknown header", seq=seq)
    if is_integer(ts):
        millis = previous_ms + ts
        try:
            ts_text = _millis_ts(millis)
        except (OverflowError, OSError, ValueError) as exc:
            raise BadEntry(f"entry {seq} has an impossible time", seq=seq) from exc
    else:
        millis, ts_text = previous_ms, ts
    # The fixed fields after ``rest``'s: they win over a member of the same name, which keeps its place (the order
    # of dict(rest).update(...), in one step).
    payload = {**rest, "v": version, "station": station_id, "seq": seq, "type": entry_type, "ts": ts_text,
               "prev": prev}
    if txn is not None:
        payload["txn"] = txn
    try:
        payload_bytes = canonical_json(payload)
    except UnicodeEncodeError as exc:  # a lone surrogate has no UTF-8 encoding
        raise BadEntry(f"entry {seq} is not UTF-8 text", seq=seq) from exc
    return header_index, millis, payload, b64url_bytes(payload_bytes)


def _compact_entry(payload: dict, header_index: int, previous_ms: int) -> list:
    millis = _ts_millis(payload.get("ts"))
    ts: int | str = (millis - previous_ms) if millis is not None else payload.get("ts")
    rest = {key: value for key, value in payload.items() if key not in _FIXED_FIELDS}
    item = [ts, payload.get("type"), payload.get("txn"), rest]
    if payload.get("v") != PROTOCOL_VERSION:
        item.append({"v": payload.get("v")})
    if header_index:
        item.append(header_index)
    return item


def _ts_millis(ts: str) -> int | None:
    """Milliseconds since the epoch when ``ts`` is in the exact format the journal writes, else None."""
    if not isinstance(ts, str) or not _TS_RE.match(ts):
        return None
    moment = parse_utc(ts)
    millis = int(moment.timestamp() * 1000 + (0.5 if moment.timestamp() >= 0 else -0.5))
    return millis if _millis_ts(millis) == ts else None


#: ``08:10:``: the text of each minute of a day.
_MINUTES = [f"{hour:02d}:{minute:02d}:" for hour in range(24) for minute in range(60)]


def _millis_ts(millis: int) -> str:
    """``utc_text`` of ``millis`` since the epoch. The date's text is worked out once per day (a batch's entries fall
    on a few days, seldom two of them in one second), the time of day by arithmetic: POSIX time, which ``utc_text``
    writes, gives every day 86,400 seconds."""
    day, millis_of_day = divmod(millis, 86_400_000)
    minute, millis_of_minute = divmod(millis_of_day, 60_000)
    second, ms = divmod(millis_of_minute, 1000)
    return f"{_day_text(day)}T{_MINUTES[minute]}{second:02d}.{ms:03d}Z"


@functools.lru_cache(maxsize=1024)
def _day_text(day: int) -> str:
    """``2026-11-28``: the UTC date of ``day`` days since the epoch, as ``utc_text`` writes it (raises as
    ``datetime.fromtimestamp`` does for a day it cannot write)."""
    return utc_text(datetime.fromtimestamp(day * 86_400, UTC))[:10]


def _split_token(token: str) -> tuple[str, dict, bytes]:
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWS compact serialization")
    header_b64, payload_b64, sig_b64 = parts
    payload = json.loads(b64url_decode(payload_b64))
    return header_b64, payload, b64url_decode(sig_b64)
