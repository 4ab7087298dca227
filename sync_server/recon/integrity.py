"""Integrity: nothing the stations signed was altered, and every entry is signed by its station's enrolled key.

One signature per entry is not needed. The ``prev`` of each entry is the SHA-256 chain value of the token before
it (``recon_fact.hash``, computed from the stored token by ``facts``), so the chain from genesis to a signed head
authenticates every entry below it, as in git or Certificate Transparency. The checks:

1. the chain, in SQL: each entry's ``prev`` against ``LAG(hash)`` of its station (the genesis value for seq 1),
   its payload's ``seq`` and ``station`` against where it is stored, and whether it is readable at all; a failing
   entry is a *break*;
2. signatures, in Python, of only the entries that close a chained run (a station's head, the entry before a
   break or a gap) and of the entry at each break: a run whose top verifies is authenticated to its bottom;
3. the verdict: a top that fails its signature is ``bad_signature`` (it was altered after signing, and the break
   after it follows from that); a break between two entries whose signatures both verify is ``broken_chain``
   (the station signed an entry that does not link); an entry whose header names a key the bank never enrolled
   for the station is ``unknown_key`` (its signature cannot mean anything, so no other finding is made of it);
   the station's recorded head (``station.head``) must be the chain value of entry ``acked_seq``;
4. ``fork``: a station the bank flagged when a batch contradicted what it holds.

``--verify-all`` (``Scope.verify_all``) re-verifies every entry's signature in a process pool, for audits.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from station.protocol.key_codecs import ed25519_public_from_jwk
from station.protocol.tokens import b64url_decode, token_kid
from sync_server.db import Station, StationKey
from sync_server.recon.kinds import N_, Discrepancy

BREAK_REASONS = {
    "unreadable": N_("it is not a readable signed entry"),
    "seq": N_("its payload names another seq"),
    "station": N_("its payload names another station"),
    "genesis": N_("its prev is not the station's genesis value"),
    "prev": N_("its prev is not the chain value of the entry before it"),
    "head": N_("the bank's recorded head is not this entry's chain value"),
}


def _breaks(context) -> dict[tuple[str, int], str]:
    """Entries that do not chain onto the one before them (or are not what they claim to be): reason codes."""
    rows = context.rows("""
        SELECT station_id, seq, readable, pseq, pstation FROM (
            SELECT station_id, seq, readable, pseq, pstation, prev, genesis,
                   LAG(seq) OVER (PARTITION BY station_id ORDER BY seq) AS before_seq,
                   LAG(hash) OVER (PARTITION BY station_id ORDER BY seq) AS before_hash
            FROM recon_fact) chained
        WHERE readable = 0 OR pseq IS NULL OR pseq <> seq OR pstation IS NULL OR pstation <> station_id
           OR (seq = 1 AND (prev IS NULL OR prev <> genesis))
           OR (before_seq = seq - 1 AND (prev IS NULL OR prev <> before_hash))""")
    breaks = {}
    for station_id, seq, readable, pseq, pstation in rows:
        if not readable:
            reason = "unreadable"
        elif pseq != seq:
            reason = "seq"
        elif pstation != station_id:
            reason = "station"
        elif seq == 1:
            reason = "genesis"
        else:
            reason = "prev"
        breaks[(station_id, seq)] = reason
    return breaks


def _tops(context) -> set[tuple[str, int]]:
    """Entries that close a chained run: each station's last, and the entry before a gap."""
    rows = context.rows("""
        SELECT station_id, seq FROM (
            SELECT station_id, seq, LEAD(seq) OVER (PARTITION BY station_id ORDER BY seq) AS after_seq
            FROM recon_fact) ordered
        WHERE after_seq IS NULL OR after_seq <> seq + 1""")
    return {(station_id, seq) for station_id, seq in rows}


def station_keys(context) -> dict[str, dict[str, Ed25519PublicKey]]:
    """Every signing key of each station in scope, by kid (``station_key``: the keys it enrolled, rotated to and
    continued with on a replacement device); a station never enrolled has none."""
    query = StationKey.select(StationKey.station_id, StationKey.kid, StationKey.jwk)
    if context.scope.stations is not None:
        query = query.where(StationKey.station_id.in_(context.scope.stations))
    keys: dict[str, dict[str, Ed25519PublicKey]] = {}
    for station_id, kid, jwk in query.tuples():
        try:
            keys.setdefault(station_id, {})[kid] = ed25519_public_from_jwk(jwk)
        except ValueError:
            keys.setdefault(station_id, {})
    return keys


def key_of(keys: dict[str, dict[str, Ed25519PublicKey]], station_id: str, token: str) -> Ed25519PublicKey | None:
    """The station's key that ``token``'s header names (None: no such key of that station)."""
    return keys.get(station_id, {}).get(token_kid(token) or "")


def _tokens(context, wanted: set[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """The stored tokens of the ``wanted`` entries."""
    rows = context.by_keys("SELECT station_id, seq, token FROM entry WHERE station_id = ? AND seq IN ({seqs})",
                           wanted)
    return {(station_id, seq): token for station_id, seq, token in rows}


def signature_ok(token: str, key: Ed25519PublicKey) -> bool:
    """Whether ``token``'s Ed25519 signature verifies over its signing input (nothing else is checked here)."""
    try:
        header, payload, signature = token.split(".")
        key.verify(b64url_decode(signature), f"{header}.{payload}".encode("ascii"))
        return True
    except (ValueError, UnicodeEncodeError, InvalidSignature):
        return False


def _unknown_keys(context) -> dict[tuple[str, int], Discrepancy]:
    """Entries not signed with the station's key of their seq: the key with the highest ``from_seq`` at or below
    it (a rotation hands over from the seq after it, a replacement device from its start entry)."""
    where, params = context.station_filter("f.station_id")
    rows = context.rows(f"""
        SELECT f.station_id, f.seq, f.kid, f.day FROM recon_fact f
        WHERE f.readable = 1{where} AND NOT EXISTS (
            SELECT 1 FROM station_key k WHERE k.station_id = f.station_id AND k.kid = f.kid AND k.from_seq <= f.seq
            AND NOT EXISTS (SELECT 1 FROM station_key later WHERE later.station_id = k.station_id
                            AND later.from_seq > k.from_seq AND later.from_seq <= f.seq))""", params)
    return {(station_id, seq): Discrepancy("unknown_key", station=station_id, seq=seq, day=day,
                                           detail={"kid": kid or "-"})
            for station_id, seq, kid, day in rows}


def _days(context, wanted: set[tuple[str, int]]) -> dict[tuple[str, int], str | None]:
    """The business day of the ``wanted`` entries (for the period of their discrepancies)."""
    rows = context.by_keys("SELECT station_id, seq, day FROM recon_fact WHERE station_id = ? AND seq IN ({seqs})",
                           wanted)
    return {(station_id, seq): day for station_id, seq, day in rows}


def checks(context) -> list[Discrepancy]:
    """Every integrity discrepancy of the run's scope; records ``context.heads_verified`` for the proof."""
    keys = station_keys(context)
    unknown = _unknown_keys(context)
    breaks = _breaks(context)
    recorded = _recorded_heads(context)
    tops = _tops(context)
    wanted = tops | set(breaks) | {(s, n - 1) for s, n in breaks if n > 1} | set(recorded)
    tokens = _tokens(context, wanted - set(unknown))
    verdicts = {where: (key := key_of(keys, where[0], token)) is not None and signature_ok(token, key)
                for where, token in tokens.items()}
    if context.scope.verify_all:
        verdicts.update(verify_all(context, keys, set(unknown)))
    bad = {where for where, ok in verdicts.items() if not ok}
    days = _days(context, bad | set(breaks) | set(recorded))
    found = list(unknown.values())
    found += [Discrepancy("bad_signature", station=s, seq=n, day=days.get((s, n))) for s, n in sorted(bad)]
    explained = bad | set(unknown)
    for (station_id, seq), reason in sorted(breaks.items()):
        if (station_id, seq) in explained or (station_id, seq - 1) in explained:
            continue
        found.append(Discrepancy("broken_chain", station=station_id, seq=seq, day=days.get((station_id, seq)),
                                 detail={"reason": BREAK_REASONS[reason], "cause": reason}))
    for where in sorted(recorded):
        if where not in explained and where not in breaks:
            found.append(Discrepancy("broken_chain", station=where[0], seq=where[1], day=days.get(where),
                                     detail={"reason": BREAK_REASONS["head"], "cause": "head"}))
    found += forks(context)
    broken_stations = {s for s, _ in breaks} | {s for s, _ in bad} | {s for s, _ in unknown}
    # The head of each station is its highest top; a gap below it (another top) is ``completeness.proof``'s to see.
    heads = {}
    for station_id, seq in tops:
        heads[station_id] = max(seq, heads.get(station_id, 0))
    context.heads_verified = {s: verdicts.get((s, n), False) and s not in broken_stations for s, n in heads.items()}
    return found


def _recorded_heads(context) -> set[tuple[str, int]]:
    """Stations whose recorded head (``station.head``) is not the chain value of entry ``acked_seq``."""
    where, params = context.station_filter("s.station_id")
    rows = context.rows(f"""
        SELECT s.station_id, s.acked_seq FROM station s JOIN recon_fact f
            ON f.station_id = s.station_id AND f.seq = s.acked_seq
        WHERE s.acked_seq > 0{where} AND (s.head IS NULL OR s.head <> f.hash)""", params)
    return {(station_id, seq) for station_id, seq in rows}


_FORK_SEQ = re.compile(r"fork at seq (\d+)")


def forks(context) -> list[Discrepancy]:
    """Stations the bank flagged when a batch contradicted what it holds (``flag_reason`` names the seq)."""
    query = Station.select(Station.station_id, Station.flag_reason).where(Station.flagged == True)  # noqa: E712
    if context.scope.stations is not None:
        query = query.where(Station.station_id.in_(context.scope.stations))
    found = []
    for station_id, reason in query.tuples():
        match = _FORK_SEQ.search(reason or "")
        found.append(Discrepancy("fork", station=station_id, seq=int(match.group(1)) if match else None,
                                 detail={"reason": reason or "-"}))
    return found


# -- --verify-all -------------------------------------------------------------------------------------------
def _verify_chunk(items: list[tuple[str, int, bytes | None, str]]) -> list[tuple[str, int]]:
    """In a worker: the (station, seq) of every token whose signature fails with the raw public key of the
    station's key its header names (None: the station has no such key)."""
    keys: dict[bytes, Ed25519PublicKey] = {}
    failed = []
    for station_id, seq, raw, token in items:
        if raw is None:
            failed.append((station_id, seq))
            continue
        key = keys.get(raw) or keys.setdefault(raw, Ed25519PublicKey.from_public_bytes(raw))
        if not signature_ok(token, key):
            failed.append((station_id, seq))
    return failed


def verify_all(context, keys, skip: set[tuple[str, int]], chunk: int = 2_000) -> dict[tuple[str, int], bool]:
    """Every entry's signature, verified in a process pool; returns the failures (``False``). At most two chunks
    per worker wait at a time, so memory stays flat however long the history."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = {s: {kid: key.public_bytes(Encoding.Raw, PublicFormat.Raw) for kid, key in by_kid.items()}
           for s, by_kid in keys.items()}
    where, params = context.station_filter()
    stored = context.stream(f"SELECT station_id, seq, token FROM entry WHERE 1 = 1{where}", params,
                            name="recon_verify_all")
    failed: dict[tuple[str, int], bool] = {}
    workers = os.cpu_count() or 2
    pending: set = set()

    def collect(futures) -> None:
        for future in futures:
            failed.update({where: False for where in future.result()})

    # forkserver: the workers do not inherit the caller's threads or its database connection.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
        batch: list = []
        for station_id, seq, token in stored:
            if (station_id, seq) in skip:
                continue
            if station_id not in raw:
                failed[(station_id, seq)] = False
                continue
            batch.append((station_id, seq, raw[station_id].get(token_kid(token) or ""), token))
            if len(batch) >= chunk:
                pending.add(pool.submit(_verify_chunk, batch))
                batch = []
                if len(pending) >= 2 * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    collect(done)
        if batch:
            pending.add(pool.submit(_verify_chunk, batch))
        collect(pending)
    return failed
