"""The bank's side of the link probe (``POST /api/v1/stations/ID/probe``, docs/protocol.md "Link probe").

Stateless and cheap: nothing is written, no table is read but the station's row and its keys. Checks in order of
cost, each a problem+json refusal, never a 500: the body's shape and the probe's payload read unverified
(``malformed-request``), the station itself as for a batch (``service.known_station``: ``unknown-station``,
``station-revoked``, ``station-not-enrolled``, ``station-flagged``), then the signature with the station's current
key, the newest it handed over to (``bad-signature``). Only then is the answer signed with the server's key.
"""

from __future__ import annotations

from datetime import UTC, datetime

from station.protocol import probes
from station.protocol.times import utc_text
from sync_server.keys import ServerKeys
from sync_server.lifecycle import station_keys
from sync_server.problems import Problem
from sync_server.service import known_station


def answer_probe(keys: ServerKeys, station_id: str, body, now: datetime | None = None) -> dict:
    """``{"answer": JWS}`` for a good probe of ``station_id``; raises :class:`Problem` otherwise."""
    token = body.get("probe") if isinstance(body, dict) else None
    if not isinstance(token, str):
        raise Problem("malformed-request", 'Send a JSON object {"probe": JWS}.')
    try:
        kid, _ = probes.read_probe(token, station_id)
    except probes.BadProbe as exc:
        raise Problem("malformed-request", f"This is not a probe of station {station_id}: {exc}.") from exc
    known_station(station_id)
    keys_held = station_keys(station_id)
    if not keys_held:  # every enrolled station has its key (migration 5); refused, never a 500, if not
        raise Problem("bad-signature", f"The bank holds no key of station {station_id}.")
    current = keys_held[-1]
    if kid != current.kid:
        raise Problem("bad-signature", f"The probe is signed with key {kid}, not with station {station_id}'s "
                                       f"current key {current.kid}: sync first if the station rotated its key.")
    try:
        payload = probes.verify_probe(token, current.jwk)
    except probes.BadProbe as exc:
        raise Problem("bad-signature", f"{exc}.") from exc
    answer = probes.make_probe_answer(keys.signer, payload, server_time=utc_text(now or datetime.now(UTC)))
    return {"answer": answer}
