"""Store and forward: enrollment, batches to the bank, and applying the bank's signed acks.

The outbox is every journal entry above the ``acked_seq`` setting. ``acked_seq`` moves only when an ack that
verifies with the server's pinned key, answers the request just sent (``answers_request``: an old answer replayed is
refused) and names this station's own chain head has been applied, in the same transaction as its outcomes and
downlink, so nothing leaves the outbox before its ack and a crash at any point just means the next sync sends the
same entries again (the server answers a duplicate with the same ack). A downlink applies only when its version is
newer than the last one applied (``downlink_version``, which every batch names so the bank sends only what changed).
An unsigned refusal changes nothing by itself: a ``gap`` or a ``station-revoked`` counts only when the bank's signed
head of the station, asked for a fresh nonce, says the same (``_rewind_after_gap``, ``_note_revocation``).
Every batch and heartbeat carries the station's signed tail claim (``tail_claim``: how far its journal reaches),
so the bank knows what it still lacks even when the link drops halfway through a long sync.

Every request to the bank (a batch, the head check, the link probe ``probe``) notes its outcome for the measured link
state (``station.link``); an answer that does not verify is a failure ``bad_answer``. A sync that fails says why in
``SyncError.reason`` (kept in the ``last_sync_failure`` setting for the screens).

Sync settings live in ``config.json`` under ``"sync"`` (see ``SYNC_SETTINGS``, documented in docs/operations.md).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import requests
from peewee import OperationalError

from station.agents import MAX_AGENT_NAME
from station.business_day import drawer_cash
from station.context import SIGNING_KEY_FILE, Station, bound_station, holds_station
from station.db import Biller, BlockedPayee, Customer, JournalEntry, Operation, Payee, WmpProduct
from station.device_state import CLOCK_CORRECTED_SETTING, clock_floor, clock_not_set, device_state, revocation
from station.errors import StorageFull
from station.feedback import apply_answers
from station.journal import append_start_entry, chain_base, chain_value_before, iter_entries, journal_head
from station.keys import KeyMissing, prune_retired_keys
from station.limits import unsynced_exposure
from station.link import REASONS, call_bank, classify, link_status, note_failure, note_success
from station.protocol import acks, envelope, envelope_errors, heads, key_codecs, probes
from station.protocol.entry_types import LIVE_STATES, EntryType, OperationState, one_line
from station.protocol.private_files import write_private_file
from station.protocol.times import parse_utc, utc_text
from station.protocol.tokens import (
    b64url_decode,
    chain_hash,
    generate_signing_key,
    is_integer,
    public_jwk,
    unverified_payload,
)
from station.protocol.wmp import catalogue_item
from station.rotation import rotate_key
from station.storage import is_storage_full, note_storage_full, storage_full

log = logging.getLogger(__name__)

ENCRYPTION_KEY_FILE = "keys/encryption.key"
#: The problem type of the bank's refusal of a revoked station (sync_server/problems.py).
PROBLEM_TYPE_PREFIX = "urn:station-kit:problem:"
STATION_REVOKED_PROBLEM = PROBLEM_TYPE_PREFIX + "station-revoked"
#: The most of the bank's (unsigned) refusal text kept and shown on the screen.
REVOKED_DETAIL_CHARS = 200
USER_AGENT = "station-kit-station/0.1"
#: What the enrollment answer may say about the shop, kept in config.json: field -> longest text kept (the limits
#: of the bank's enrollment sheet; an agent's name is also what ``station.agents`` accepts).
SHOP_DETAILS = {"agent": MAX_AGENT_NAME, "village": 60}

#: Why a sync (or a probe) fails, for the screens: the link's reasons (``station.link.REASONS``), ``flagged`` (the
#: bank stopped taking this station's batches after a fork), ``storage_full`` (the bank's ack could not be saved:
#: it is asked again at the next sync) and ``local`` (this device: a key or a setting).
SYNC_FAILURE_REASONS = (*REASONS, "flagged", "storage_full", "local")
#: (connect, read) seconds of a probe: short, and longer than an answer the link calls slow (``slow_ms``).
PROBE_TIMEOUT = (5.0, 10.0)

#: name -> (default, one-line help). Read from config.json "sync"; docs/operations.md lists every one.
SYNC_SETTINGS: dict[str, tuple[object, str]] = {
    "max_entries": (500, "Most entries in one batch."),
    "max_bytes": (256 * 1024, "Most bytes of one sealed batch (a batch is halved until it fits)."),
    "connect_timeout": (10.0, "Seconds to wait for the server to accept the connection."),
    "read_timeout": (60.0, "Seconds to wait for the server's answer to one batch."),
    "ca_bundle": (None, "Path of a CA bundle to verify the server's TLS certificate (default: system CAs)."),
    "attempts": (3, "Tries per batch before a sync gives up (with exponential backoff and jitter)."),
    "backoff_base": (2.0, "Seconds of the first backoff; doubled each retry."),
    "backoff_cap": (300.0, "Longest backoff between retries, in seconds."),
    "interval_seconds": (300, "How often `station serve` syncs (the scheduler's interval)."),
}


class SyncError(RuntimeError):
    """A sync that did not complete. ``retryable``: worth trying again later (network, server busy).

    ``reason`` says why in one word the screens put in the agent's words (:data:`SYNC_FAILURE_REASONS`)."""

    retryable = False

    def __init__(self, message: str, reason: str = "local"):
        super().__init__(message)
        self.reason = reason


class ServerUnreachable(SyncError):
    """No answer from the bank; ``reason`` is the link's (``station.link.classify``: refused, timeout, ...)."""

    retryable = True

    def __init__(self, message: str, reason: str = "unreachable"):
        super().__init__(message, reason)


class SyncRefused(SyncError):
    """The server refused with a problem+json body (``problem``), or its answer is not the bank's
    (``reason`` ``bad_answer``, status 502). A 5xx and a 429 (the bank's rate limit, reason ``busy``) are worth
    retrying; ``retry_after``: the seconds a 429 asked to wait (its ``Retry-After``), else 0."""

    def __init__(self, message: str, problem: dict | None = None, status: int | None = None,
                 reason: str | None = None, retry_after: float = 0.0):
        self.problem = problem or {}
        self.status = status
        self.retryable = status is not None and (status >= 500 or status == 429)
        self.retry_after = retry_after
        super().__init__(message, reason or self._reason())

    def _reason(self) -> str:
        problem_type = self.problem.get("type")
        if problem_type == STATION_REVOKED_PROBLEM:
            return "revoked"
        if problem_type in (PROBLEM_TYPE_PREFIX + "station-flagged", PROBLEM_TYPE_PREFIX + "fork"):
            return "flagged"
        if self.status == 429:
            return "busy"
        return "http_5xx" if self.retryable else "http_4xx"


def retry_after_seconds(response: requests.Response) -> float:
    """The wait a 429 or 503 answer asks for (``Retry-After`` in seconds; an HTTP date or nonsense counts as
    none)."""
    value = response.headers.get("Retry-After", "") if response.status_code in (429, 503) else ""
    return float(value) if value.isascii() and value.isdigit() else 0.0


class EnrollError(RuntimeError):
    """Enrollment failed: wrong, used or expired code, unreachable server, or a folder already in use.

    ``reason`` says which, for a screen to word it: ``folder_in_use``, ``clock_not_set``, ``unreachable``,
    ``not_station_kit``, or the server's problem slug (``enrollment-code-invalid``, ``enrollment-code-used``,
    ``enrollment-code-expired``, ``station-revoked``, ...; ``refused`` when the answer names none). The message
    never holds the code."""

    def __init__(self, message: str, reason: str = "refused"):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SyncResult:
    batches: int
    entries: int
    acked_seq: int
    pending: int
    rejected: dict[int, str]


@dataclass(frozen=True)
class SyncOutcome:
    """How one run of the background sync ended (``station.scheduler``; the "sync now" button shows it).

    ``at``: the station's time when it ended; a failure's ``reason`` (:data:`SYNC_FAILURE_REASONS`) is worded for
    the agent, its ``message`` is for the technician."""

    ok: bool
    at: str
    result: SyncResult | None = None
    reason: str | None = None
    message: str | None = None


def sync_setting(st: Station, name: str):
    """A sync setting from ``config.json`` (``sync``), else its default from ``SYNC_SETTINGS``."""
    default, _ = SYNC_SETTINGS[name]
    return st.config.get("sync", {}).get(name, default)


def _verify_option(st_or_bundle) -> bool | str:
    bundle = st_or_bundle if isinstance(st_or_bundle, str | None) else sync_setting(st_or_bundle, "ca_bundle")
    return bundle or True


def _problem_message(response: requests.Response) -> tuple[str, dict]:
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):  # JSON, but not a problem (a proxy's or another server's answer)
        problem = {}
    detail = problem.get("detail") or problem.get("title") or response.reason
    return f"{detail} ({response.status_code} {problem.get('type', '')})".strip(), problem


# -- enrollment ---------------------------------------------------------------------------------------------
def enroll_station(
    data_dir: str | os.PathLike,
    server_url: str,
    code: str,
    *,
    ca_bundle: str | None = None,
    http: requests.Session | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Station:
    """Create this device's keys, enroll with ``code``, pin the server's keys, start the journal.

    Nothing is written to ``data_dir`` before the bank has accepted the code, so any refusal leaves the folder
    as it was, ready for another try."""
    data_dir = Path(data_dir)
    if holds_station(data_dir):
        raise EnrollError(f"{data_dir} already holds a station; refusing to overwrite its keys.", "folder_in_use")
    now = (clock or (lambda: datetime.now(UTC)))()
    if clock_not_set(now):
        # The journal's first entry would carry this time; and the code would be spent on it.
        raise EnrollError(f"This device's clock reads {utc_text(now)}: set the time (network time) first.",
                          "clock_not_set")
    signing_key = generate_signing_key()
    encryption_key = key_codecs.generate_encryption_key()
    server_url = server_url.rstrip("/")
    try:
        response = (http or requests).post(
            f"{server_url}/api/v1/enroll",
            json={"code": code, "signing_jwk": public_jwk(signing_key),
                  "encryption_jwk": key_codecs.encryption_public_jwk(encryption_key)},
            timeout=(SYNC_SETTINGS["connect_timeout"][0], SYNC_SETTINGS["read_timeout"][0]),
            verify=_verify_option(ca_bundle), headers={"User-Agent": USER_AGENT},
        )
    except requests.RequestException as exc:
        raise EnrollError(f"Cannot reach the bank's server at {server_url}: {exc.__class__.__name__}.",
                          "unreachable") from exc
    except OSError as exc:  # e.g. a CA bundle that cannot be read: requests does not wrap it
        raise EnrollError(f"Cannot reach the bank's server at {server_url}: {exc.strerror or exc} "
                          f"({getattr(exc, 'filename', '') or 'the CA bundle'}).", "unreachable") from exc
    if response.status_code != 200:
        message, problem = _problem_message(response)
        problem_type = problem.get("type")
        reason = "refused"
        if isinstance(problem_type, str) and problem_type.startswith(PROBLEM_TYPE_PREFIX):
            reason = problem_type.removeprefix(PROBLEM_TYPE_PREFIX)
        raise EnrollError(f"Enrollment refused: {message}", reason)
    try:
        answer = response.json()
        server = answer["server"]
        key_codecs.ed25519_public_from_jwk(server["signing_jwk"])
        key_codecs.encryption_public_from_jwk(server["encryption_jwk"])
        station_id = answer["station_id"]
        base = _chain_base(answer.get("continue_from"))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # A captive portal or a plain web server answers 200 too: say so instead of a traceback.
        raise EnrollError(f"{server_url} answered, but not as a station-kit sync server: check the URL.",
                          "not_station_kit") from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    write_private_file(data_dir / SIGNING_KEY_FILE, json.dumps(signing_key.as_dict(private=True)))
    write_private_file(data_dir / ENCRYPTION_KEY_FILE, key_codecs.encryption_private_to_text(encryption_key))
    config = {
        "station_id": station_id,
        "name": answer.get("name", ""),
        "server": {"url": server_url, "signing_jwk": server["signing_jwk"],
                   "encryption_jwk": server["encryption_jwk"]},
        "sync": {"ca_bundle": ca_bundle} if ca_bundle else {},
        **_shop_details(answer),
    }
    write_private_file(data_dir / "config.json", json.dumps(config, indent=2, ensure_ascii=False))
    st = Station(data_dir, clock=clock, new=True)
    with st.write():
        if base is not None:
            # A replacement device: its journal continues after the bank's head (its start entry names it).
            st.set_setting("chain_base", base)
            st.set_setting("acked_seq", base["seq"])
        append_start_entry(st)
        st.set_setting("policy", answer.get("policy") or {})
    return st


def _shop_details(answer: dict) -> dict:
    """Who runs the shop and where, as the bank knows them (``agent``, ``village``), to keep in ``config.json``.

    Only a suggestion for the set-up screen: a value that is not one line of printable text within the bank's
    own limits is dropped, never a reason to refuse the enrollment."""
    details = {field: one_line(answer.get(field), limit) for field, limit in SHOP_DETAILS.items()}
    return {field: text for field, text in details.items() if text}


def _chain_base(continue_from) -> dict | None:
    """The bank's head a replacement device continues after, from the enrollment answer (None: a new station)."""
    if continue_from is None:
        return None
    seq, head = continue_from["seq"], continue_from["head"]
    if not is_integer(seq) or seq < 0 or not isinstance(head, str) or len(b64url_decode(head)) != 32:
        raise ValueError("continue_from is not a seq and a chain value")
    return {"seq": seq, "head": head} if seq > 0 else None


# -- batches ------------------------------------------------------------------------------------------------
@bound_station
def pending_entries(st: Station) -> int:
    """How many journal entries wait for the bank's ack (the outbox)."""
    head_seq, _ = journal_head(st)
    return head_seq - st.setting("acked_seq", 0)


@bound_station
def oldest_waiting_at(st: Station) -> datetime | None:
    """When the oldest entry waiting for the bank's ack was recorded (the station's clock), or None."""
    entry = JournalEntry.get_or_none(JournalEntry.seq == st.setting("acked_seq", 0) + 1)
    return None if entry is None else entry.recorded_at


def _server(st: Station) -> dict:
    server = st.config.get("server")
    if not server:
        raise SyncError(f"Station {st.station_id} is not enrolled with a server: run `station enroll` first.")
    return server


@bound_station
def build_batch(st: Station, *, max_entries: int | None = None, max_bytes: int | None = None
                ) -> envelope.SealedBatch | None:
    """The next batch: entries after ``acked_seq``, at most ``max_entries`` and ``max_bytes`` sealed."""
    max_entries = max_entries or sync_setting(st, "max_entries")
    max_bytes = max_bytes or sync_setting(st, "max_bytes")
    acked = st.setting("acked_seq", 0)
    entries = []
    for pair in iter_entries(st, after_seq=acked, batch=max_entries):
        entries.append(pair)
        if len(entries) >= max_entries:
            break
    if not entries:
        return None
    return _seal(st, entries, max_bytes)


@bound_station
def build_heartbeat(st: Station, *, max_bytes: int | None = None) -> envelope.SealedBatch | None:
    """The last acknowledged entry again: the bank answers a duplicate with an ack and a fresh downlink."""
    acked = st.setting("acked_seq", 0)
    if not acked:
        return None
    return _seal(st, [(acked, JournalEntry.get_by_id(acked).token)], max_bytes or sync_setting(st, "max_bytes"))


def tail_claim(st: Station, signer=None) -> str:
    """The station's signed claim of where its journal ends now (seq and chain value): every batch carries it, so
    the bank knows what it has not received yet even when the link drops before the rest arrives. ``signer``:
    the batch's (default: the current key)."""
    head_seq, head_token = journal_head(st)
    return envelope.make_tail_claim(signer or st.signer, station_id=st.station_id, seq=head_seq,
                                    head=chain_hash(head_token), ts=utc_text(st.now()))


def _seal(st: Station, entries: list[tuple[int, str]], max_bytes: int) -> envelope.SealedBatch:
    prev = chain_value_before(st, entries[0][0])
    server_key = key_codecs.encryption_public_from_jwk(_server(st)["encryption_jwk"])
    while True:
        # Signed with the key that follows the batch's last entry (docs/protocol.md, "Keys"): the bank knows it
        # from the entries it holds or receives now, even when the station rotated its key after them.
        try:
            signer = st.signer_for(entries[-1][0] + 1)
        except KeyMissing as exc:
            raise SyncError(f"This station cannot sign its batch: {exc}. Call the technician.") from exc
        # Read after the entries: the journal only grows, so the claim reaches at least the batch's last entry.
        tail = tail_claim(st, signer)
        sealed = envelope.seal_batch(entries, station_id=st.station_id, prev=prev, signer=signer,
                                    server_encryption_key=server_key, tail=tail,
                                    downlink_applied=st.setting("downlink_version", 0))
        if len(sealed.body) <= max_bytes or len(entries) == 1:
            return sealed
        entries = entries[: len(entries) // 2]


def send_batch(st: Station, sealed: envelope.SealedBatch, http: requests.Session | None = None, *,
               more: bool = False, push: bool = False) -> dict:
    """POST one sealed batch (``more``: another follows at once; ``push``: right after an online operation, the
    bank refreshes only the customers it names); the server's answer, or a :class:`SyncError`."""
    server = _server(st)
    headers = {**sealed.headers, "X-Station-Time": utc_text(st.now()), "User-Agent": USER_AGENT}
    if more:
        headers[envelope.HEADER_MORE] = "1"
    if push:
        headers[envelope.HEADER_PUSH] = "1"
    http = http or requests
    try:
        # The outcome is noted for the link state (station.link); an answer that does not verify, by open_answer.
        response = call_bank(st, "sync", lambda: http.post(
            f"{server['url']}/api/v1/stations/{st.station_id}/batches", data=sealed.body, headers=headers,
            timeout=(sync_setting(st, "connect_timeout"), sync_setting(st, "read_timeout")),
            verify=_verify_option(st),
        ))
    except requests.RequestException as exc:
        raise ServerUnreachable(f"Cannot reach the bank's server: {exc.__class__.__name__}.",
                                classify(exc)[0]) from exc
    except OSError as exc:
        # requests does not wrap every local failure, e.g. a CA bundle (sync "ca_bundle") that cannot be read.
        raise SyncError(f"Cannot send to the bank: {exc.strerror or exc} ({getattr(exc, 'filename', '') or ''}). "
                        "Check the sync settings (ca_bundle).") from exc
    if response.status_code != 200:
        message, problem = _problem_message(response)
        raise SyncRefused(f"The bank refused batch {sealed.first}-{sealed.last}: {message}", problem,
                          response.status_code, retry_after=retry_after_seconds(response))
    try:
        return response.json()
    except ValueError as exc:
        note_failure(st, "sync", "bad_answer", "the answer is not JSON")
        raise SyncRefused("The bank's answer is not JSON.", status=502, reason="bad_answer") from exc


def _encryption_key(st: Station):
    return key_codecs.encryption_private_from_text((st.data_dir / ENCRYPTION_KEY_FILE).read_text(encoding="utf-8"))


def open_answer(st: Station, answer: dict) -> acks.Ack:
    """Verify the server's answer with the pinned key and decrypt its downlink."""
    try:
        return acks.open_ack(answer, server_signing_jwk=_server(st)["signing_jwk"], station_id=st.station_id,
                             station_encryption_key=_encryption_key(st))
    except envelope_errors.EnvelopeError as exc:
        note_failure(st, "sync", "bad_answer", str(exc))
        raise SyncRefused(f"The bank's answer does not verify: {exc}", status=502, reason="bad_answer") from exc


def answers_request(st: Station, ack: acks.Ack, sealed: envelope.SealedBatch) -> None:
    """Refuse a signed ack that does not answer ``sealed`` (an old answer replayed, or a bank older than acks bound
    to their request): a :class:`SyncRefused` ``bad_answer``, which the sync retries; nothing is applied."""
    if ack.request is None or ack.downlink_version is None:
        problem = "is not bound to a request (a sync server older than this station: upgrade the server first)"
    elif ack.request != acks.request_digest(sealed.body):
        problem = "answers another request (an old answer replayed?)"
    else:
        return
    note_failure(st, "sync", "bad_answer", f"the ack {problem}")
    raise SyncRefused(f"The bank's ack {problem}.", status=502, reason="bad_answer")


# -- applying an ack ----------------------------------------------------------------------------------------
class StorageFullSync(SyncError):
    """The bank's ack could not be saved for want of room: nothing of it was kept (``acked_seq`` did not move), so
    the next sync sends the same batch and the bank answers it with the same ack."""

    retryable = True

    def __init__(self, exc: BaseException):
        super().__init__(f"Storage is full: the bank's answer could not be saved ({exc}). It is asked again at the "
                         "next sync; free space on the device.", "storage_full")


@bound_station
def apply_ack(st: Station, ack: acks.Ack, sealed: envelope.SealedBatch) -> None:
    """Outcomes, acked seq, last sync time, clock offset and the downlink, in one transaction (for an ack that
    answers ``sealed``: :func:`answers_request`; a full disk rolls it all back: ``sync_once`` says so with
    ``StorageFullSync``). The first ack after a clock correction that left the offline age unknown makes it known
    again (``station.limits.offline_age_unknown``).

    The downlink only when its version is newer than the last one applied (``downlink_version``): an older one
    (an answer overtaken by a later one) would put back what the bank has changed since.

    The binding is checked here too, although ``_sync_once`` checks it first (there a replayed answer is retried):
    whatever calls this, an answer to another request never reaches the journal's outcomes or the downlink."""
    answers_request(st, ack, sealed)
    if (ack.first, ack.last) != (sealed.first, sealed.last) or ack.acked_through < sealed.last:
        raise SyncRefused("The bank's ack does not cover the batch sent.", status=502, reason="bad_answer")
    with st.db.atomic():
        head_seq, _ = journal_head(st)
        if ack.acked_through > head_seq:
            raise SyncRefused("The bank acknowledges entries this station never wrote.", status=502,
                              reason="bad_answer")
        if chain_hash(JournalEntry.get_by_id(ack.acked_through).token) != ack.head:
            raise SyncRefused("The bank's chain head differs from this station's journal.", status=502,
                              reason="bad_answer")
        _apply_outcomes(ack)
        now = st.now()
        st.set_setting("acked_seq", max(ack.acked_through, st.setting("acked_seq", 0)))
        st.set_setting("last_sync_at", utc_text(now))
        corrected = st.setting(CLOCK_CORRECTED_SETTING)
        if corrected and corrected.get("sync_unknown"):
            # The first sync after a clock correction: the offline age is measured again (``station.limits``).
            st.set_setting(CLOCK_CORRECTED_SETTING, {**corrected, "sync_unknown": False})
        server_time = parse_utc(ack.server_time)
        st.set_setting("server_time_offset_ms", int((server_time - now).total_seconds() * 1000))
        st.delete_setting("last_sync_error")
        # An ack that verifies with the pinned key outweighs an unsigned refusal (or the bank took it back).
        st.delete_setting("revoked")
        if ack.downlink_version > st.setting("downlink_version", 0):
            apply_downlink(st, ack.downlink, ack.acked_through, server_time)
            st.set_setting("downlink_version", ack.downlink_version)
    prune_retired_keys(st)


def _apply_outcomes(ack: acks.Ack) -> None:
    ops = Operation.select().where(Operation.seq.between(ack.first, ack.last))
    for op in ops:
        reason = ack.rejected.get(op.seq)
        if reason is not None:
            if op.status in LIVE_STATES:
                Operation.update(status=OperationState.REJECTED, outcome_reason=reason).where(
                    Operation.txn == op.txn).execute()
            if op.type == EntryType.TRANSFER_CANCEL and reason == "already_executed" and op.ref_txn:
                # The bank executed the transfer before the cancellation arrived: it stands.
                Operation.update(status=OperationState.SETTLED).where(Operation.txn == op.ref_txn).execute()
            if op.type == EntryType.REVERSAL and op.ref_txn:
                # The bank refused to undo it (the money is no longer there): the original operation stands.
                Operation.update(status=OperationState.SETTLED).where(
                    (Operation.txn == op.ref_txn) & (Operation.status == OperationState.REVERSED)).execute()
        elif op.status == OperationState.RECORDED:
            Operation.update(status=OperationState.SETTLED).where(Operation.txn == op.txn).execute()


def _locked_since(acked_through: int) -> set[str]:
    """Accounts this station locked (wrong PINs) in entries the bank has not seen yet."""
    locked = set()
    for entry in JournalEntry.select().where((JournalEntry.seq > acked_through)
                                             & (JournalEntry.type == "customer_pin_failed")):
        payload = unverified_payload(entry.token)
        if payload.get("locked"):
            locked.add(payload.get("account"))
    return locked


def _risk_level(value) -> int | None:
    """A downlinked risk-assessment level as the station keeps it: 1 to 5, else not assessed (None)."""
    return value if is_integer(value) and 1 <= value <= 5 else None


def _birth_year(value) -> int | None:
    """A downlinked birth year as the station keeps it: a plausible year, else unknown (None)."""
    return value if is_integer(value) and 1900 <= value <= 2100 else None


@bound_station
def apply_downlink(st: Station, downlink: dict, acked_through: int, server_time: datetime) -> None:
    """Policy, customers (allowance as of ``acked_through``), payees, billers, blocked payees, the open
    wealth-management products and the bank's answers to customer voice (``voice_answers``:
    ``station.feedback.apply_answers``).

    A delta (``since``: what changed since the downlink the station applied) carries only the members that changed
    and the customers the bank no longer serves here (``customers_removed``); the rest stays as it is."""
    if "policy" in downlink:
        st.set_setting("policy", downlink["policy"] or {})
    if downlink.get("rotate_key") is True and not JournalEntry.select().where(
            (JournalEntry.seq > acked_through) & (JournalEntry.type == EntryType.KEY_ROTATION)).exists():
        # The bank asks for a new signing key (its key-age policy, or an operator): rotated at the next sync,
        # unless a rotation the bank has not received yet already answers it.
        st.set_setting("rotate_requested", True)
    if "billers" in downlink:
        codes = []
        for biller in downlink["billers"]:
            codes.append(biller["code"])
            Biller.insert(**biller).on_conflict_replace().execute()
        Biller.delete().where(Biller.code.not_in(codes)).execute()
    if "blocked_payees" in downlink:
        BlockedPayee.delete().execute()
        for account in downlink["blocked_payees"]:
            BlockedPayee.create(account=account, reason="blocked by the bank")
    if "wmp_products" in downlink:
        # The open catalogue as a whole: a product the bank closed is gone from it, so from the station. A product
        # the station cannot read is left out rather than shown (``catalogue_item``).
        listed = downlink["wmp_products"] if isinstance(downlink["wmp_products"], list) else []
        products = {item["code"]: item for item in map(catalogue_item, listed) if item is not None}
        WmpProduct.delete().execute()
        if products:
            WmpProduct.insert_many(list(products.values())).execute()
    if downlink.get("customers_removed"):
        Customer.update(allowance_fen=0, allowance_seq=acked_through).where(
            Customer.account_id.in_(downlink["customers_removed"]) & (Customer.allowance_fen > 0)).execute()
    if "customers" in downlink:
        _apply_customers(downlink, acked_through, server_time)
    if "voice_answers" in downlink:
        apply_answers(downlink["voice_answers"])


def _apply_customers(downlink: dict, acked_through: int, server_time: datetime) -> None:
    still_locked = _locked_since(acked_through)
    served = [item["account_id"] for item in downlink["customers"]]
    if downlink.get("customers_partial") is not True and "since" not in downlink:
        # Customers the bank no longer serves here keep their records (receipts refer to them) but lose the
        # allowance. A partial downlink (the answer to a push) names only the customers its batch touched, a delta
        # only those that changed (and those no longer served in customers_removed).
        Customer.update(allowance_fen=0, allowance_seq=acked_through).where(
            Customer.account_id.not_in(served) & (Customer.allowance_fen > 0)).execute()
    # The customers already here, in one query (not one per item: a full downlink names every customer).
    known = {customer.account_id: customer
             for customer in Customer.select(Customer.id, Customer.account_id, Customer.status)
             .where(Customer.account_id.in_(served))}
    for item in downlink["customers"]:
        fields = dict(
            name=item["name"], card_number=item.get("card_number"), passbook_number=item.get("passbook_number"),
            status=item.get("status", "active"), pin_verifier=item["pin_verifier"],
            allowance_fen=int(item.get("allowance_fen", 0)), allowance_seq=acked_through,
            balance_fen=item.get("balance_fen"), balance_as_of=server_time, balance_seq=acked_through,
            birth_year=_birth_year(item.get("birth_year")),
            risk_level=_risk_level(item.get("risk_level")),
        )
        for number_field in (Customer.card_number, Customer.passbook_number):
            number = fields[number_field.name]
            if number:
                # The bank's record wins: a card or passbook now belongs to this account, not to an old record.
                Customer.update({number_field: None}).where(
                    (number_field == number) & (Customer.account_id != item["account_id"])).execute()
        customer = known.get(item["account_id"])
        if customer is None:
            customer = known[item["account_id"]] = Customer.create(account_id=item["account_id"], **fields)
        else:
            if customer.status == "locked" and item["account_id"] in still_locked:
                fields["status"] = "locked"
            elif fields["status"] == "active" and customer.status == "locked":
                fields["pin_failures"] = 0
            Customer.update(**fields).where(Customer.id == customer.id).execute()
            customer.status = fields["status"]
        Payee.delete().where(Payee.customer == customer.id).execute()
        for account, name in item.get("payees", []):
            Payee.create(customer=customer.id, account=account, name=name)


# -- one sync -----------------------------------------------------------------------------------------------
def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**attempt))."""
    return (rng or random).uniform(0, min(cap, base * 2 ** attempt))


def sync_once(
    st: Station,
    *,
    http: requests.Session | None = None,
    attempts: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    max_batches: int | None = None,
    push: bool = False,
) -> SyncResult:
    """Send batches until the outbox is empty (or ``max_batches``); retry transient failures with backoff.

    One at a time per station in this process (``Station.sync_lock``)."""
    with st.sync_lock:
        return _sync_once(st, http=http, attempts=attempts, sleep=sleep, rng=rng, max_batches=max_batches, push=push)


def _sync_once(st, *, http, attempts, sleep, rng, max_batches, push) -> SyncResult:
    if st.setting("rotate_requested") and not storage_full(st):
        # Asked by the bank in an earlier ack: the rotation entry goes out with this sync. A full disk puts it off
        # (it writes key files and an entry); the journal still goes to the bank meanwhile.
        try:
            rotate_key(st, "bank_request")
            st.set_setting("rotate_requested", False)
        except (StorageFull, OSError) as exc:
            if not is_storage_full(exc):
                raise
            note_storage_full(st, "the key rotation the bank asked for", exc)
    own_session = http is None
    http = http or requests.Session()
    attempts = attempts or sync_setting(st, "attempts")
    batches = entries = 0
    rejected: dict[int, str] = {}
    heartbeat_sent = False
    try:
        while max_batches is None or batches < max_batches:
            sealed = build_batch(st)
            heartbeat = False
            if sealed is None:
                if batches or heartbeat_sent:
                    break
                # Nothing to send: still ask the bank for fresh allowances and policy (and prove we are online).
                sealed = build_heartbeat(st)
                if sealed is None:
                    break
                heartbeat = heartbeat_sent = True
            for attempt in range(attempts):
                try:
                    more = max_batches is None and pending_entries(st) > sealed.last - st.setting("acked_seq", 0)
                    ack = open_answer(st, send_batch(st, sealed, http, more=more, push=push and not heartbeat))
                    answers_request(st, ack, sealed)
                    break
                except SyncError as exc:
                    if isinstance(exc, SyncRefused) and _rewind_after_gap(st, exc, http):
                        ack = None
                        break
                    if not exc.retryable or attempt == attempts - 1:
                        raise
                    cap = sync_setting(st, "backoff_cap")
                    # A rate-limited station waits at least what the bank asked (never past the cap).
                    asked = min(getattr(exc, "retry_after", 0.0), cap)
                    sleep(max(asked, backoff_delay(attempt, sync_setting(st, "backoff_base"), cap, rng)))
            if ack is None:
                continue
            apply_ack(st, ack, sealed)
            if not heartbeat:
                batches += 1
                entries += sealed.last - sealed.first + 1
            rejected.update(ack.rejected)
    except OperationalError as exc:
        # Saving what the bank answered (its ack, a gap's rewind) found no room: rolled back whole, asked again.
        if not is_storage_full(exc):
            raise
        note_storage_full(st, "saving the bank's answer", exc)
        failure = StorageFullSync(exc)
        _note_sync_failure(st, failure)
        raise failure from exc
    except SyncError as exc:
        _note_sync_failure(st, exc, http)
        raise
    finally:
        if own_session:
            http.close()
    return SyncResult(batches, entries, st.setting("acked_seq", 0), pending_entries(st), rejected)


def _note_sync_failure(st: Station, exc: SyncError, http: requests.Session | None = None) -> None:
    """Keep why the sync failed for the screens (and a revocation); with the storage full, the log has it alone."""
    try:
        with st.write():
            st.set_setting("last_sync_error", str(exc))
            st.set_setting("last_sync_failure", {"at": utc_text(st.now()), "reason": exc.reason})
        if isinstance(exc, SyncRefused):
            _note_revocation(st, exc, http)  # asks the bank's signed head: outside the write transaction
    except StorageFull:
        log.warning("sync failed (%s) and storage is full: the failure is not saved for the screens", exc.reason)


def _note_revocation(st: Station, refusal: SyncRefused, http: requests.Session | None = None) -> None:
    """The bank refused this station as revoked: keep it (setting ``revoked``), so the screen shows it and no new
    operation is recorded (``station.device_state``). The first refusal's time is kept.

    The refusal is not signed, so it is kept only when the bank's signed head for a fresh nonce
    (:func:`fetch_bank_head`) says ``revoked`` too: a forged refusal does not stop the counter."""
    if refusal.problem.get("type") != STATION_REVOKED_PROBLEM or st.setting("revoked"):
        return
    try:
        if fetch_bank_head(st, http).status != "revoked":
            return
    except SyncError:
        return
    # The head's answer counted as the link working; the link state is the bank's refusal (station.link).
    note_failure(st, "head", "revoked", "the bank's signed head says this station is revoked")
    detail = refusal.problem.get("detail")
    detail = "".join(ch for ch in (detail if isinstance(detail, str) else str(refusal)) if ch.isprintable())
    with st.write():
        st.set_setting("revoked", {"at": utc_text(st.now()), "detail": detail[:REVOKED_DETAIL_CHARS]})


@bound_station
def _rewind_after_gap(st: Station, refusal: SyncRefused, http: requests.Session | None = None) -> bool:
    """The bank holds fewer entries than this station believes (its database was restored from a backup): send
    again from where the bank stands. Only ever moves ``acked_seq`` back, so nothing is skipped.

    The ``gap`` refusal is not signed, so it only makes the station ask: the bank's signed head for a fresh nonce
    (:func:`fetch_bank_head`) must say it holds less, and its chain value there must be this journal's; otherwise
    nothing changes (a forged ``gap`` moves nothing) and the refusal stands."""
    if refusal.problem.get("type") != PROBLEM_TYPE_PREFIX + "gap":
        return False
    try:
        bank = fetch_bank_head(st, http)
    except SyncError:
        return False
    acked = st.setting("acked_seq", 0)
    # A replacement device holds nothing before its chain base: it cannot send what the bank lacks there.
    base_seq, _ = chain_base(st)
    if not base_seq <= bank.acked_seq < acked:
        return False
    ours = None if bank.acked_seq == 0 else chain_value_before(st, bank.acked_seq + 1)
    if bank.head != ours:
        return False
    st.set_setting("acked_seq", bank.acked_seq)
    return True


@bound_station
def station_status(st: Station) -> dict:
    """What `station status` shows: identity, link, sync state, outbox, exposure, drawer.

    ``link`` (``online``/``degraded``/``offline``) and ``link_reason`` are measured from the requests the station
    made (``station.link.link_status``); ``last_success_at``, ``last_failure_at`` and ``last_failure_reason`` are
    those of any request to the bank (sync, probe, authorization), ``last_sync_*`` those of syncs."""
    head_seq, _ = journal_head(st)
    exposure_fen, exposure_count = unsynced_exposure(st)
    link = link_status(st)
    oldest = oldest_waiting_at(st)
    failure = st.setting("last_sync_failure") or {}
    return {
        "station_id": st.station_id,
        "server": (st.config.get("server") or {}).get("url"),
        "link": link["link"],
        "link_reason": link["reason"],
        "last_success_at": link["last_success_at"],
        "last_failure_at": link["last_failure_at"],
        "last_failure_reason": link["last_failure_reason"],
        "last_failure_detail": link["last_failure_detail"],
        "latency_ms": link["latency_ms"],
        "oldest_waiting_at": None if oldest is None else utc_text(oldest),
        "oldest_waiting_seconds": None if oldest is None else max(0, int((st.now() - oldest).total_seconds())),
        "last_sync_at": st.setting("last_sync_at"),
        "last_sync_failed_at": failure.get("at"),
        "last_sync_failure_reason": failure.get("reason"),
        "last_sync_error": st.setting("last_sync_error"),
        "acked_seq": st.setting("acked_seq", 0),
        "head_seq": head_seq,
        "pending_entries": head_seq - st.setting("acked_seq", 0),
        "unsynced_exposure_fen": exposure_fen,
        "unsynced_debits": exposure_count,
        "drawer_cash_fen": drawer_cash(st),
        "server_time_offset_ms": st.setting("server_time_offset_ms"),
        "device_state": device_state(st).value,
        "clock_floor": None if (floor := clock_floor(st)) is None else utc_text(floor),
        # The last clock correction (``station.clock``): {"at", "seq", "floor", "sync_unknown"}, or None.
        "clock_corrected": st.setting(CLOCK_CORRECTED_SETTING),
        "revoked": revocation(st),
        # The key that signs the next entry, every key the device has signed with, and a rotation the bank asked.
        "signing_kid": st.signer.kid,
        "signing_keys": len(st.public_jwks()["keys"]),
        "rotate_requested": bool(st.setting("rotate_requested")),
        "checked_at": utc_text(datetime.now(UTC)),
    }


# -- the link probe ----------------------------------------------------------------------------------------
def probe(st: Station, http: requests.Session | None = None) -> probes.ProbeAnswer:
    """Ask the bank whether it is there and still deals with this station (docs/protocol.md "Link probe"), with
    short timeouts (:data:`PROBE_TIMEOUT`); the outcome is noted for the link state (``station.link``).

    Signed with the key the bank knows as the station's current one: the key that follows the acknowledged
    entries. Returns the verified answer, or raises :class:`ServerUnreachable` (network) or :class:`SyncRefused`
    (the bank's refusal; ``bad_answer`` for an answer that is not the bank's for this probe). A refusal as revoked
    is kept as after a sync (``_note_revocation``)."""
    server = _server(st)
    nonce = heads.new_nonce()
    try:
        signer = st.signer_for(st.setting("acked_seq", 0) + 1)
    except KeyMissing as exc:
        raise SyncError(f"This station cannot sign its probe: {exc}. Call the technician.") from exc
    token = probes.make_probe(signer, station_id=st.station_id, nonce=nonce, ts=utc_text(st.now()))
    started = time.monotonic()
    try:
        response = (http or requests).post(
            f"{server['url']}/api/v1/stations/{st.station_id}/probe", json={"probe": token}, timeout=PROBE_TIMEOUT,
            verify=_verify_option(st), headers={"User-Agent": USER_AGENT})
    except (requests.RequestException, OSError) as exc:
        reason, detail = classify(exc)
        note_failure(st, "probe", reason, detail)
        raise ServerUnreachable(f"Cannot reach the bank's server at {server['url']}: {detail}.", reason) from exc
    latency_ms = int((time.monotonic() - started) * 1000)
    if response.status_code != 200:
        message, problem = _problem_message(response)
        refusal = SyncRefused(f"The bank refused the probe of station {st.station_id}: {message}", problem,
                              response.status_code)
        note_failure(st, "probe", refusal.reason if refusal.reason in REASONS else "http_4xx", message)
        _note_revocation(st, refusal, http)
        raise refusal
    try:
        answer = probes.open_probe_answer(response.json()["answer"], server_signing_jwk=server["signing_jwk"],
                                          station_id=st.station_id, nonce=nonce)
    except (ValueError, KeyError, TypeError, probes.BadProbeAnswer) as exc:
        note_failure(st, "probe", "bad_answer", str(exc))
        raise SyncRefused(f"The answer to the probe is not the bank's: {exc}", status=502,
                          reason="bad_answer") from exc
    note_success(st, "probe", latency_ms)
    return answer


# -- the bank's head of this station (``station restore``) ---------------------------------------------------
def fetch_bank_head(st: Station, http: requests.Session | None = None) -> heads.BankHead:
    """How far the bank holds this station's journal: an answer signed with the pinned server key, for a nonce
    chosen here (so an old answer replayed on the way is refused).

    Raises :class:`ServerUnreachable` (network), :class:`SyncRefused` (the bank's refusal, such as an unknown
    station; status 5xx for a server error, 502 for an answer that is not the bank's signed head for this request).
    """
    server = _server(st)
    nonce = heads.new_nonce()
    try:
        response = call_bank(st, "head", lambda: (http or requests).get(
            f"{server['url']}/api/v1/stations/{st.station_id}/head", params={"nonce": nonce},
            timeout=(sync_setting(st, "connect_timeout"), sync_setting(st, "read_timeout")),
            verify=_verify_option(st), headers={"User-Agent": USER_AGENT},
        ))
    except requests.RequestException as exc:
        raise ServerUnreachable(f"Cannot reach the bank's server at {server['url']}: "
                                f"{exc.__class__.__name__}.", classify(exc)[0]) from exc
    except OSError as exc:  # requests' own: a ca_bundle path that does not exist on this device
        raise ServerUnreachable(f"Cannot reach the bank's server at {server['url']}: {exc}.") from exc
    if response.status_code != 200:
        message, problem = _problem_message(response)
        raise SyncRefused(f"The bank did not tell its head of station {st.station_id}: {message}", problem,
                          response.status_code)
    try:
        token = response.json()["signed_head"]
    except (ValueError, KeyError, TypeError) as exc:
        note_failure(st, "head", "bad_answer", "the answer is not a signed head")
        raise SyncRefused(f"{server['url']} answered, but not as a station-kit sync server.", status=502,
                          reason="bad_answer") from exc
    try:
        return heads.open_signed_head(token, server_signing_jwk=server["signing_jwk"], station_id=st.station_id,
                                      nonce=nonce)
    except heads.BadHeadAnswer as exc:
        note_failure(st, "head", "bad_answer", str(exc))
        raise SyncRefused(f"The answer about station {st.station_id} is not the bank's: {exc}.", status=502,
                          reason="bad_answer") from exc
