"""What the API does, as plain functions: enroll a station, ingest a batch (``api`` only carries them over HTTP).

Enrollment: a one-time code (only its SHA-256 is stored, valid ``ENROLLMENT_CODE_DAYS``) records a pending
station's public keys. A code is used once: the update that marks it used is conditional, so two requests with
one code cannot both enroll; a revoked or already enrolled station is refused.

Ingest, in order: who is it (unknown, not enrolled, revoked, flagged: refused), open the envelope (decrypt,
verify the station's signature and every entry, see ``station.protocol.envelope``), then in one database
transaction holding the station's row lock: compare any part already held (same content: a duplicate; different
content: a fork, refused and flagged), refuse a gap, check the batch chains onto the stored head, check and keep
the station's signed tail claim (``_keep_tail``: the newest one, never moved back; one that contradicts the chain
the bank holds, or an earlier claim, is a fork), apply the new entries to the ledger (``posting_rules`` over a
``book.Book``: each checked against the bank's own rules), refresh the station's allowances (holds,
``allowances``) and record its last complete sync (``synced_seq``) with the last batch of a sync, and answer with
the signed ack, bound to the request it answers (the digest of the sealed batch), and the downlink (``downlink``),
reduced to what changed since the downlink the station says it applied (``downlink_versions``). Everything after
the envelope is opened is ``apply_entries``, the one path by which entries reach the ledger: a hand-carried journal
export (``journal_import``) goes through it too.
A refused fork is kept with both contents (``StationFork``, ``record_fork``).

Exactly once with several workers: the station's row is locked (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
transactions begin IMMEDIATE), so a second worker with the same batch waits, then finds it applied and answers
the same ack; the primary key ``(station_id, seq)`` is the backstop (``LedgerError`` or ``IntegrityError``: the
batch is run once more and found to be a duplicate).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from joserfc.jwk import OKPKey
from peewee import EXCLUDED, IntegrityError

from station.protocol import acks, envelope, key_codecs
from station.protocol.enrollment_qr import CODE_ALPHABET, CODE_LENGTH, format_code, normalise_code
from station.protocol.entry_types import MAX_INTEGER, Kind, fits
from station.protocol.envelope_errors import EnvelopeError
from station.protocol.times import parse_utc, utc_text
from station.protocol.tokens import KeyTrack, chain_hash, genesis_prev, verification_jwk
from sync_server.allowances import home_customer_ids, refresh_allowances
from sync_server.book import Book, LedgerError, expire_authorizations
from sync_server.db import (
    EnrollmentCode,
    Entry,
    Station,
    StationEvent,
    StationFork,
    StationKey,
    StationTail,
    arg,
    cached_execute,
    cached_row,
    db_proxy,
    is_postgres,
)
from sync_server.downlink import build_downlink
from sync_server.downlink_versions import versioned_downlink
from sync_server.keyring import key_track, record_rotations
from sync_server.keys import ServerKeys
from sync_server.lifecycle import rotation_due
from sync_server.policy import server_policy, station_policy
from sync_server.posting_rules import Applier
from sync_server.problems import Problem

ENROLLMENT_CODE_DAYS = 7
T = TypeVar("T")


# -- enrollment ---------------------------------------------------------------------------------------------
def code_hash(code: str) -> str:
    """SHA-256 (hex) of the normalised code: codes themselves are never stored."""
    return hashlib.sha256(normalise_code(code).encode()).hexdigest()


def new_enrollment_code(station_id: str, now: datetime | None = None, *, purpose: str = "enroll") -> str:
    """A one-time code for ``station_id`` (valid 7 days), like ``K7QX-M2PD-9HWT``; only its hash is stored.
    ``purpose``: ``enroll`` a new station, or ``replace`` the device of an enrolled one."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    now = now or datetime.now(UTC)
    EnrollmentCode.create(code_hash=code_hash(raw), station_id=station_id, created_at=utc_text(now),
                          expires_at=utc_text(now + timedelta(days=ENROLLMENT_CODE_DAYS)), purpose=purpose)
    return format_code(raw)


def enroll(keys: ServerKeys, request: dict, now: datetime | None = None) -> dict:
    """Use an enrollment code: record the station's public keys; return its config and the server's keys."""
    now = now or datetime.now(UTC)
    if not isinstance(request, dict) or not isinstance(request.get("code"), str):
        raise Problem("malformed-request", "Send a JSON object with code, signing_jwk and encryption_jwk.")
    try:
        signing_jwk = dict(request["signing_jwk"])
        encryption_jwk = dict(request["encryption_jwk"])
        key_codecs.ed25519_public_from_jwk(signing_jwk)
        key_codecs.encryption_public_from_jwk(encryption_jwk)
    except (KeyError, TypeError, ValueError) as exc:
        raise Problem("malformed-request", f"The station's public keys are not valid JWKs ({exc}).") from exc
    kid = OKPKey.import_key(signing_jwk).thumbprint()
    with db_proxy.atomic():
        row = EnrollmentCode.get_or_none(EnrollmentCode.code_hash == code_hash(request["code"]))
        if row is None:
            raise Problem("enrollment-code-invalid", "No such enrollment code: check it letter by letter.")
        if row.used_at is not None:
            raise Problem("enrollment-code-used", "This enrollment code has already been used; ask for a new one.")
        if parse_utc(row.expires_at) < now:
            raise Problem("enrollment-code-expired", "This enrollment code has expired; ask for a new one.")
        used = EnrollmentCode.update(used_at=utc_text(now)).where(
            (EnrollmentCode.code_hash == row.code_hash) & EnrollmentCode.used_at.is_null()).execute()
        if used != 1:
            raise Problem("enrollment-code-used", "This enrollment code has already been used; ask for a new one.")
        query = Station.select().where(Station.station_id == row.station_id)
        station = (query.for_update() if is_postgres() else query).get()
        if station.status == "revoked":
            raise Problem("station-revoked", f"Station {station.station_id} is revoked.")
        public = {**verification_jwk(signing_jwk), "kid": kid}
        answer = {
            "station_id": station.station_id,
            "name": station.name,
            "server": keys.public(),
            "policy": server_policy().get("station", {}),
            "server_time": utc_text(now),
        }
        # Who runs the shop and where, when the bank knows (`station add --agent/--village`, `bulk-add`): the
        # station's set-up screen offers the agent's name when the shop's people are added.
        answer.update({field: value for field, value in (("agent", station.agent), ("village", station.village))
                       if value})
        if row.purpose == "replace":
            answer["continue_from"] = _enroll_replacement(station, public, encryption_jwk, now)
            return answer
        if station.status != "pending":
            raise Problem("enrollment-code-used", f"Station {station.station_id} has already enrolled.")
        Station.update(status="active", signing_jwk=public,
                       encryption_jwk=encryption_jwk, kid=kid, enrolled_at=utc_text(now), acked_seq=0,
                       head=None).where(
            Station.station_id == station.station_id).execute()
        StationKey.create(station_id=station.station_id, kid=kid, jwk=public, from_seq=1, source="enrollment",
                          created_at=utc_text(now))
    return answer


def _enroll_replacement(station: Station, public: dict, encryption_jwk: dict, now: datetime) -> dict:
    """A new device for an enrolled station: its key signs from the seq after the bank's head, where its start
    entry continues the chain. What the old device recorded and never delivered is lost to the bank unless its
    journal was imported before (``sync-server journal import``): its signed tail claim is kept in the audit trail
    and dropped, since the new device's entries take those seqs."""
    if station.status != "active":
        raise Problem("station-not-enrolled", f"Station {station.station_id} has no device to replace yet: "
                                              "enroll it with its enrollment code.")
    if station.flagged:
        raise Problem("station-flagged", f"Station {station.station_id} is flagged: {station.flag_reason}. "
                                         "An operator clears the flag first (`sync-server station clear-flag`).")
    head = station.head or genesis_prev(station.station_id)
    tail = StationTail.get_or_none(StationTail.station_id == station.station_id)
    lost = tail.seq - station.acked_seq if tail is not None and tail.seq > station.acked_seq else 0
    StationKey.create(station_id=station.station_id, kid=public["kid"], jwk=public, from_seq=station.acked_seq + 1,
                      source="replacement", created_at=utc_text(now))
    Station.update(signing_jwk=public, encryption_jwk=encryption_jwk, kid=public["kid"], rotate_requested=False,
                   synced_seq=station.acked_seq, unsynced_debit_fen=0, unsynced_debit_count=0).where(
        Station.station_id == station.station_id).execute()
    StationTail.delete().where(StationTail.station_id == station.station_id).execute()
    StationEvent.create(
        station_id=station.station_id, at=utc_text(now), by=station.station_id, action="device_replaced",
        reason=f"a replacement device continues after seq {station.acked_seq}",
        detail={"kid": public["kid"], "continues": station.acked_seq, "head": head, "entries_never_received": lost,
                "old_tail_seq": tail.seq if tail else None, "old_tail_claim": tail.claim if tail else None})
    return {"seq": station.acked_seq, "head": head}


# -- ingest -------------------------------------------------------------------------------------------------
def _int_header(headers, name: str) -> int:
    value = headers.get(name)
    # isdigit() alone also accepts characters int() refuses, such as the latin-1 superscript "²"; and int() refuses
    # more than 4,300 digits (a ValueError): a seq never needs more than MAX_INTEGER's.
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > len(str(MAX_INTEGER)):
        raise Problem("malformed-request", f"The {name} header must be a positive integer.")
    return int(value)


def known_station(station_id: str) -> Station:
    """The station, or the refusal for an unknown, not enrolled, revoked or flagged one."""
    return usable_station(cached_row("station", lambda: Station.select().where(Station.station_id == arg()).limit(1),
                                     station_id), station_id)


def usable_station(station: Station | None, station_id: str) -> Station:
    """``station`` (the row of ``station_id``, or None), or the refusal for an unknown, not enrolled, revoked or
    flagged one."""
    if station is None:
        raise Problem("unknown-station", f"The bank knows no station {station_id}.")
    if station.status == "revoked":
        when = {"revoked_at": station.revoked_at} if station.revoked_at else {}
        raise Problem("station-revoked", revoked_detail(station), **when)
    if station.status != "active":
        raise Problem("station-not-enrolled", f"Station {station_id} has not enrolled yet.")
    if station.flagged:
        raise Problem("station-flagged", f"Station {station_id} is flagged: {station.flag_reason}")
    return station


def revoked_detail(station: Station) -> str:
    """Why a revoked station's upload is refused, in words the shop's agent understands (the station shows it)."""
    when = f" on {station.revoked_at[:10]}" if station.revoked_at else ""
    return (f"The bank has revoked station {station.station_id}{when}: this device may no longer send records to "
            f"the bank. Do not serve customers on it; call the bank. What it recorded stays on the device and can "
            f"be carried to the bank by a technician.")


def ingest(keys: ServerKeys, station_id: str, headers, body: bytes, now: datetime | None = None) -> dict:
    """Apply one sealed batch exactly once; returns the response body (signed ack and sealed downlink)."""
    if headers.get(envelope.HEADER_STATION) != station_id:
        raise Problem("malformed-request", f"The {envelope.HEADER_STATION} header must name station {station_id}.")
    first = _int_header(headers, envelope.HEADER_FIRST)
    last = _int_header(headers, envelope.HEADER_LAST)
    known_station(station_id)
    try:
        track = key_track(station_id, first)
        batch = envelope.open_batch(body, station_id=station_id, first=first, last=last,
                                   server_encryption_key=keys.encryption_key, key_track=track)
    except EnvelopeError as exc:
        extra = {"seq": exc.seq} if exc.seq is not None else {}
        raise Problem(exc.code, str(exc), **extra) from exc
    now = now or datetime.now(UTC)
    station_time = headers.get("X-Station-Time")
    # More batches follow: the allowances are refreshed (and the full downlink sent) only with the last one.
    more = headers.get(envelope.HEADER_MORE) == "1"
    # The push after an online operation: only the customers it names are refreshed and sent down.
    push = headers.get(envelope.HEADER_PUSH) == "1"
    # The ack names the request it answers, so that it cannot be replayed to another one (acks.request_digest).
    request = acks.request_digest(body)
    return once_more_on_conflict(lambda: _apply(keys, batch, now, station_time, more, track, push, request))


def once_more_on_conflict(apply: Callable[[], T]) -> T:
    """Run ``apply`` (a transaction applying entries); run it once more when another worker applied (part of) the
    same entries between its checks and its writes (``IntegrityError``, ``LedgerError``): they are duplicates now."""
    try:
        return apply()
    except (IntegrityError, LedgerError):
        return apply()


class Fork(Exception):
    """Entries or a tail claim, signed by the station, that contradict what the bank holds: refused and flagged.

    ``held_token`` is what the bank holds at ``seq`` (an entry, or the station's earlier tail claim; None: nothing
    there yet), ``offered_token`` what the station sent there now; both are kept (``StationFork``) so that
    ``sync-server station show`` can put the two contents side by side.
    """

    def __init__(self, reason: str, seq: int, *, held_token: str | None = None, offered_token: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.seq = seq
        self.held_token = held_token
        self.offered_token = offered_token


@dataclass
class Applied:
    """What :func:`apply_entries` did: the book it used, the allowances it refreshed (None: not refreshed), and
    how far the bank now holds the station's journal."""

    book: Book
    policy: dict
    allowances: dict[str, int] | None
    acked_through: int
    head: str | None
    new_entries: int
    #: The batch's entries the bank rejected (seq -> reason), those it held already and those applied now.
    rejected: dict[int, str]
    #: Only the customers the batch names were refreshed (a push): the downlink sends only them.
    partial: bool = False


def locked_station(station_id: str) -> Station:
    """The station's row, locked until the transaction ends (PostgreSQL ``FOR UPDATE``; SQLite transactions are
    IMMEDIATE, so the whole database is)."""
    if is_postgres():
        return cached_row("station for update", lambda: Station.select().where(Station.station_id == arg()).limit(1)
                          .for_update(), station_id)
    return cached_row("station", lambda: Station.select().where(Station.station_id == arg()).limit(1), station_id)


def _apply(keys: ServerKeys, batch: envelope.Batch, now: datetime, station_time: str | None, more: bool,
           track: KeyTrack, push: bool = False, request: str | None = None) -> dict:
    now_text = utc_text(now)
    try:
        with db_proxy.atomic():
            # Checked again under the lock: revoked or flagged while the batch was opened.
            station = usable_station(locked_station(batch.station_id), batch.station_id)
            applied = apply_entries(station, batch, now, more=more, station_time=station_time, track=track,
                                    push=push)
            downlink = build_downlink(applied.book, applied.allowances, applied.policy, applied.acked_through,
                                      now_text, rotate_key=rotation_due(station.station_id, applied.policy, now),
                                      partial=applied.partial)
            downlink, version = versioned_downlink(batch.station_id, downlink, batch.downlink_applied,
                                                   applied.acked_through)
    except Fork as fork:
        record_fork(batch.station_id, fork, now)
        raise Problem("fork", f"Refused and flagged: {fork.reason}. Nothing of this batch was applied.",
                      seq=fork.seq) from None
    return acks.make_ack(
        signer=keys.signer, station_id=batch.station_id, first=batch.first, last=batch.last,
        acked_through=applied.acked_through, head=applied.head, rejected=applied.rejected, server_time=now_text,
        downlink=downlink, station_encryption_key=key_codecs.encryption_public_from_jwk(station.encryption_jwk),
        request=request, downlink_version=version,
    )


def apply_entries(station: Station, batch: envelope.Batch, now: datetime, *, more: bool,
                  station_time: str | None = None, device_contact: bool = True,
                  track: KeyTrack | None = None, push: bool = False) -> Applied:
    """Apply a verified run of a station's entries: the one path of a synced batch and of an imported journal.

    Runs in the caller's transaction, which holds the station's row lock (:func:`locked_station`). In order: refuse
    a gap; compare the part the bank already holds (same tokens: a duplicate; different: :class:`Fork`); check
    the new entries chain onto the stored head and the tail claims (``_keep_tail``); mark the station's expired
    real-time authorizations (``expire_authorizations``); apply the new entries to the ledger (``Applier``); with
    the last batch of a sync (``more`` false) refresh the station's allowances (not for a revoked station: it gets
    no holds) and record the complete sync (``synced_seq``); move ``acked_seq`` and ``head``. ``device_contact``:
    the station itself sent this (a sync), so its last sync and clock offset are recorded; an import carried by
    hand is no contact with the device. ``push``: the station's push right after an online operation; the refresh
    then covers only the home customers the new entries name (``Applied.partial``).
    """
    now_text = utc_text(now)
    acked = station.acked_seq
    if batch.first > acked + 1:
        raise Problem("gap", f"The bank holds entries up to {acked}; send from {acked + 1}.",
                      expected_first=acked + 1)
    # The part of the batch the bank holds already: each entry's token, and the reason when it was rejected (an
    # entry's row never changes, so the ack repeats it).
    held, rejected = {}, {}
    for seq, token, outcome, reason in cached_execute(
            "held entries", lambda: Entry.select(Entry.seq, Entry.token, Entry.outcome, Entry.reason).where(
                (Entry.station_id == arg(0)) & Entry.seq.between(arg(1), arg(2))),
            batch.station_id, batch.first, min(batch.last, acked)).fetchall():
        held[seq] = token
        if outcome == "rejected":
            rejected[seq] = reason
    for entry in batch.entries:
        if entry.seq <= acked and held.get(entry.seq) != entry.token:
            raise Fork(f"entry {entry.seq} differs from the one the bank holds", entry.seq,
                       held_token=held.get(entry.seq), offered_token=entry.token)
    new_entries = [entry for entry in batch.entries if entry.seq > acked]
    if new_entries:
        expected_prev = station.head or genesis_prev(batch.station_id)
        if new_entries[0].payload.get("prev") != expected_prev:
            raise Fork(f"entry {new_entries[0].seq} does not chain onto the bank's head", new_entries[0].seq,
                       offered_token=new_entries[0].token)
    _keep_tail(batch, acked, now_text)
    expire_authorizations(batch.station_id, now_text)
    refresh = not more and station.status == "active"
    policy = server_policy()
    homes = home_customer_ids(batch.station_id)
    # Only an account id that fits the protocol is looked up (PostgreSQL refuses a NUL in text).
    referenced = {e.payload["account"] for e in new_entries if fits(Kind.ID, e.payload.get("account"))}
    partial = refresh and push
    book = Book(batch.station_id, (homes if refresh and not partial else set()) | referenced, now_text,
                station_accounts=True)
    applier = Applier(book, policy, station_policy(policy), homes,
                      (station.unsynced_debit_fen, station.unsynced_debit_count))
    payloads = [entry.payload for entry in new_entries]
    applier.load_seen_txns(payloads)
    applier.load_authorizations(payloads)
    applier.load_daily_totals(payloads)
    applier.load_products(payloads)
    for entry in new_entries:
        applier.apply(entry.seq, entry.token, entry.payload, form_problem=entry.form_problem)
    rejected.update(applier.rejected)  # the new entries' outcomes, as the applier has just decided them
    applier.write()
    if track is not None:
        # The keys the batch's rotation entries handed over to (the track followed them while verifying).
        record_rotations(batch.station_id, track, acked, batch.last, now)
    allowances = None
    if refresh:
        allowances = refresh_allowances(book, policy, homes, only=(referenced & homes) if partial else None)
    book.flush()
    acked_through = max(acked, batch.last)
    head = batch.head if new_entries else station.head
    update = {}
    if device_contact:
        update[Station.last_sync_at] = now_text
        offset = _clock_offset_ms(now, station_time)
        if offset is not None:
            update[Station.clock_offset_ms] = offset
    if new_entries:
        update.update({Station.acked_seq: acked_through, Station.head: head})
    if not more:
        # A complete sync: the station's unsynced exposure starts again after this seq (posting_rules).
        update.update({Station.synced_seq: acked_through, Station.unsynced_debit_fen: 0,
                       Station.unsynced_debit_count: 0})
    elif (applier.exposure_fen, applier.exposure_count) != (station.unsynced_debit_fen, station.unsynced_debit_count):
        update.update({Station.unsynced_debit_fen: applier.exposure_fen,
                       Station.unsynced_debit_count: applier.exposure_count})
    if update:
        _update_station(batch.station_id, update)
    return Applied(book, policy, allowances, acked_through, head, len(new_entries), rejected, partial)


def _update_station(station_id: str, update: dict) -> None:
    """``UPDATE station SET`` the ``update`` fields (field -> value) of ``station_id``: its SQL built once per set of
    fields (``cached_execute``; a batch sets one of a handful)."""
    fields = tuple(update)
    cached_execute("station update " + " ".join(field.name for field in fields),
                   lambda: Station.update({field: arg(n) for n, field in enumerate(fields)}).where(
                       Station.station_id == arg(len(fields))), *update.values(), station_id)


def record_fork(station_id: str, fork: Fork, now: datetime) -> None:
    """Flag the station and keep both contents at the fork's seq (its own transaction: the refused one rolled
    back). The station stays refused until an operator has looked (``sync-server station clear-flag``)."""
    with db_proxy.atomic():
        Station.update(flagged=True, flag_reason=f"fork at seq {fork.seq}: {fork.reason}").where(
            Station.station_id == station_id).execute()
        StationFork.create(station_id=station_id, seq=fork.seq, reason=fork.reason, held_token=fork.held_token,
                           offered_token=fork.offered_token, detected_at=utc_text(now))


def _keep_tail(batch: envelope.Batch, acked: int, now_text: str) -> None:
    """Check the batch's tail claim and the stored one against the chain, then keep the newest claim.

    Runs in the batch's transaction, under the station's row lock, after the batch's entries were found to agree
    with (and chain onto) what the bank holds. A contradiction is a fork (:class:`Fork`: refused, flagged):
    the claim names a chain value other than the entry the bank holds (or receives now) at its seq; it names the
    same seq as the stored claim with another chain value; or this batch brings the entry at the stored claim's seq
    and it is not the one the station signed for before. The stored claim only moves forward (a claim at or below
    it, e.g. from a batch sent again after a lost ack, is checked and then dropped).
    """
    stored = cached_row("station tail", lambda: StationTail.select().where(StationTail.station_id == arg()).limit(1),
                        batch.station_id)
    claim = batch.tail

    def held_token(seq: int) -> str | None:
        """Entry ``seq`` as the bank holds it once this batch is applied (None: not held)."""
        if batch.first <= seq <= batch.last:
            return batch.entries[seq - batch.first].token
        if seq <= acked:
            return Entry.select(Entry.token).where(
                (Entry.station_id == batch.station_id) & (Entry.seq == seq)).scalar()
        return None

    def held_chain_value(seq: int) -> str | None:
        """The chain value after entry ``seq`` as the bank holds it once this batch is applied (None: not held)."""
        token = held_token(seq)
        return chain_hash(token) if token is not None else None

    if claim is not None:
        held = held_chain_value(claim.seq)
        if held is not None and held != claim.head:
            raise Fork(f"the station signed that its journal ends at seq {claim.seq} with another entry than the "
                       f"one the bank holds there", claim.seq, held_token=held_token(claim.seq),
                       offered_token=claim.token)
        if stored is not None and stored.seq == claim.seq and stored.head != claim.head:
            raise Fork(f"the station signed two different journal ends at seq {claim.seq}", claim.seq,
                       held_token=stored.claim, offered_token=claim.token)
    if stored is not None and batch.first <= stored.seq <= batch.last and held_chain_value(stored.seq) != stored.head:
        raise Fork(f"entry {stored.seq} is not the one the station signed as its journal end before", stored.seq,
                   held_token=stored.claim, offered_token=held_token(stored.seq))
    if claim is not None and (stored is None or claim.seq > stored.seq):
        cached_execute("keep station tail", lambda: StationTail.insert(
            station_id=arg(0), seq=arg(1), head=arg(2), claim=arg(3), received_at=arg(4)).on_conflict(
            conflict_target=[StationTail.station_id],
            update={StationTail.seq: EXCLUDED.seq, StationTail.head: EXCLUDED.head,
                    StationTail.claim: EXCLUDED.claim, StationTail.received_at: EXCLUDED.received_at},
            where=(EXCLUDED.seq > StationTail.seq)), batch.station_id, claim.seq, claim.head, claim.token, now_text)


def _clock_offset_ms(now: datetime, station_time: str | None) -> int | None:
    """Server time minus the station's clock as it sent the batch (the station's clock is not trusted)."""
    if not station_time:
        return None
    try:
        moment = parse_utc(station_time)
    except ValueError:
        return None
    return int((now - moment).total_seconds() * 1000)
