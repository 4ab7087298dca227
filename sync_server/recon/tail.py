"""Recon checks on the stations' signed tail claims: entries a station signed for that never arrived.

Every batch and heartbeat a station sends carries its tail claim (``station.protocol.envelope``, docs/protocol.md
"Tail claim"): a JWS signed with the station's key saying that its journal reached seq N, whose chain value (SHA-256
of entry N's JWS) is H. The sync server keeps the newest claim per station in ``station_tail``. Recon trusts the
claim, not the columns stored beside it: it verifies each stored claim again with the station's enrolled key
(``station.signing_jwk``; one signature per station, like a chain head) and takes N and H from the verified payload.
Then one set-based query compares the claims with ``recon_fact`` (what the bank holds, read from the tokens: M =
``max(seq)`` of the station, the ``hash`` column the chain value after each entry):

- ``missing_tail``: N > M (M = 0 when the bank holds nothing): the station recorded and signed for entries M+1..N
  and the bank does not hold them. Located at the station and seq M+1, the first missing entry, so the same
  shortfall keeps its id while nothing arrives; ``detail`` ``{"claimed": N, "held": M, "missing": N - M}``. Not
  for a revoked station, which can no longer sync: ``station_revoked`` (``completeness``) counts those entries,
  from the verified claims this check leaves in ``context.tail_claims``.
- ``fork``: the bank holds entry N and its chain value is not H: the station signed for one history and the bank
  holds another at that seq (``detail["reason"]``). An entry missing below M is ``seq_gap``'s, not this check's.
- ``bad_signature``: a stored claim that does not verify with the station's enrolled key (or is not a well-formed
  claim for that station). The server verified every claim before storing it, so such a claim was changed in the
  bank's own database (or the station's enrolled key was): tampering, to be reported like an altered entry. Its
  ``seq`` is the seq the claim itself names when its payload can still be read as JSON, else the stored ``seq``
  column; ``detail`` says it is the tail claim and why it failed. A claim that does not verify proves nothing, so it
  gives no ``missing_tail`` and no ``fork``. It shares the kind, and so the identity, of an altered entry at that
  same seq: both send the clerk to the same place.

Only stations in the run's scope are read (``Context.station_filter``); these discrepancies have no business day,
so every period includes them. The lead calls :func:`checks` from ``completeness``.
"""

from __future__ import annotations

import json

from station.protocol.envelope import verify_tail_claim
from station.protocol.envelope_errors import EnvelopeError
from station.protocol.tokens import b64url_decode, is_integer, token_kid
from sync_server.db import StationKey
from sync_server.recon.kinds import N_, Discrepancy

#: The fork reason (a message id: the clerk's language is chosen when it is shown).
FORK_REASON = N_("the journal end the station signed is another entry than the one the bank holds there")
TAIL_TABLE = "recon_tail"


def checks(context) -> list[Discrepancy]:
    """``missing_tail``, ``fork`` and ``bad_signature`` from the stations' stored tail claims (see the module)."""
    verified, refused = _verified_claims(context)
    context.tail_claims = {station_id: seq for station_id, seq, _ in verified}
    found = list(refused)
    if not verified:
        return found
    context.database.execute_sql(f"DROP TABLE IF EXISTS {TAIL_TABLE}")
    context.database.execute_sql(
        f"CREATE TEMPORARY TABLE {TAIL_TABLE} (station_id TEXT PRIMARY KEY, seq BIGINT NOT NULL, head TEXT NOT NULL)")
    try:
        context.database.cursor().executemany(
            f"INSERT INTO {TAIL_TABLE} VALUES ({', '.join([context.database.param] * 3)})", verified)
        found.extend(_compare(context))
    finally:
        context.database.execute_sql(f"DROP TABLE IF EXISTS {TAIL_TABLE}")
    return found


def _verified_claims(context) -> tuple[list[tuple[str, int, str]], list[Discrepancy]]:
    """(station, N, H) of every stored claim in scope that verifies, and a ``bad_signature`` for each that does not."""
    where, params = context.station_filter("t.station_id")
    rows = context.rows("SELECT t.station_id, t.seq, t.claim FROM station_tail t WHERE 1 = 1" + where, params)
    keys: dict[tuple[str, str], object] = {}
    station_filter = [row[0] for row in rows]
    for start in range(0, len(station_filter), 500):
        for station_id, kid, jwk in StationKey.select(StationKey.station_id, StationKey.kid, StationKey.jwk).where(
                StationKey.station_id.in_(station_filter[start:start + 500])).tuples():
            keys[station_id, kid] = jwk
    verified, refused = [], []
    for station_id, stored_seq, claim in rows:
        try:
            # Signed with the key of the batch that carried it, which a later rotation may have replaced.
            jwk = keys.get((station_id, token_kid(claim) or ""))
            jwk = json.loads(jwk) if isinstance(jwk, str) else jwk
            payload = verify_tail_claim(claim, jwk or {}, station_id)
        except (EnvelopeError, ValueError) as exc:
            refused.append(Discrepancy("bad_signature", station=station_id, seq=_claimed_seq(claim, stored_seq),
                                       detail={"what": "tail_claim", "reason": str(exc)}))
            continue
        verified.append((station_id, payload["seq"], payload["head"]))
    return verified, refused


def _claimed_seq(claim, stored_seq: int) -> int:
    """The seq an unverifiable claim names, if its payload still reads as JSON with an integer seq; else the column."""
    try:
        payload = json.loads(b64url_decode(claim.split(".")[1]))
    except (AttributeError, IndexError, ValueError):
        return stored_seq
    seq = payload.get("seq") if isinstance(payload, dict) else None
    return seq if is_integer(seq) and seq > 0 else stored_seq


def _compare(context) -> list[Discrepancy]:
    """The verified claims against what the bank holds: one query, grouped by station."""
    rows = context.rows(
        f"""SELECT t.station_id, t.seq, coalesce(h.held, 0), f.hash, s.status
            FROM {TAIL_TABLE} t
            LEFT JOIN (SELECT station_id, max(seq) AS held FROM recon_fact GROUP BY station_id) h
                   ON h.station_id = t.station_id
            LEFT JOIN recon_fact f ON f.station_id = t.station_id AND f.seq = t.seq
            LEFT JOIN station s ON s.station_id = t.station_id
            WHERE t.seq > coalesce(h.held, 0) OR (f.hash IS NOT NULL AND f.hash <> t.head)
            ORDER BY t.station_id""")
    found = []
    forks = [(station_id, claimed) for station_id, claimed, held, _, _ in rows if claimed <= held]
    altered = _altered(context, forks)
    for station_id, claimed, held, held_hash, status in rows:
        if claimed > held:
            if status == "revoked":
                continue  # a revoked station cannot sync: ``station_revoked`` counts what never arrived
            found.append(Discrepancy("missing_tail", station=station_id, seq=held + 1,
                                     detail={"claimed": claimed, "held": held, "missing": claimed - held}))
        elif (station_id, claimed) not in altered:
            found.append(Discrepancy("fork", station=station_id, seq=claimed,
                                     detail={"reason": FORK_REASON, "held_hash": held_hash}))
    return found


def _altered(context, wanted: list[tuple[str, int]]) -> set[tuple[str, int]]:
    """Of the held entries a claim contradicts, those whose own signature fails with the station's enrolled key:
    altered in the bank's database after the station signed them. That is ``integrity``'s ``bad_signature`` (or
    ``unknown_key``), and the claim's disagreement follows from it: no fork is reported as well."""
    from sync_server.recon.integrity import key_of, signature_ok, station_keys

    keys = station_keys(context)
    rows = context.by_keys("SELECT station_id, seq, token FROM entry WHERE station_id = ? AND seq IN ({seqs})",
                           set(wanted))
    return {(station_id, seq) for station_id, seq, token in rows
            if (key := key_of(keys, station_id, token)) is None or not signature_ok(token, key)}
