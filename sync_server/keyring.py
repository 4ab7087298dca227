"""Every signing key of each station, and which one signs which seq (docs/protocol.md, "Keys").

``station_key`` holds a station's keys for ever (its receipts keep verifying after a rotation, a replacement or a
revocation): the enrollment key from seq 1, each key a signed ``key_rotation`` entry handed over to, from the seq
after it, and each replacement device's key from the seq its start entry continues at. ``station.signing_jwk`` and
``kid`` are the newest of them.
"""

from __future__ import annotations

from datetime import datetime

from station.protocol.times import utc_text
from station.protocol.tokens import KeyTrack, public_jwk, verification_jwk
from sync_server.book import insert_new_rows
from sync_server.db import Station, StationEvent, StationKey
from sync_server.lifecycle import station_keys


def key_track(station_id: str, first_seq: int) -> KeyTrack:
    """The station's keys as anchors, the key of ``first_seq`` as the current one, replacement keys pinned to the
    seq they start at: what a batch or an imported journal starting at ``first_seq`` is verified with."""
    rows = station_keys(station_id)  # migration 5 gave every station enrolled before it its one key
    current = None
    for row in rows:
        if row.from_seq <= first_seq:
            current = row.kid
    return KeyTrack([verification_jwk(row.jwk) for row in rows], current=current,
                    replacements={row.kid: row.from_seq for row in rows if row.source == "replacement"})


def record_rotations(station_id: str, track: KeyTrack, after_seq: int, upto_seq: int, now: datetime) -> None:
    """Record the keys that the rotation entries applied now (seq ``after_seq`` + 1 to ``upto_seq``) handed over
    to; the newest becomes the station's current key and a pending rotation request is fulfilled."""
    rotations = [(seq, key) for seq, key in track.rotations if after_seq < seq <= upto_seq]
    if not rotations:
        return
    for seq, key in rotations:
        jwk = public_jwk(key)
        # ON CONFLICT (station_id, kid) DO NOTHING: the same rotation applied again (never INSERT OR IGNORE).
        insert_new_rows(StationKey, [dict(station_id=station_id, kid=jwk["kid"], jwk=StationKey.jwk.db_value(jwk),
                                          from_seq=seq + 1, source="rotation", created_at=utc_text(now))])
        StationEvent.create(station_id=station_id, at=utc_text(now), by=station_id, action="key_rotated",
                            reason=f"key_rotation entry {seq}", detail={"kid": jwk["kid"], "from_seq": seq + 1})
    newest = public_jwk(rotations[-1][1])
    Station.update(signing_jwk=newest, kid=newest["kid"], rotate_requested=False).where(
        Station.station_id == station_id).execute()
