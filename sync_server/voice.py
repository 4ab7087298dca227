"""客户之声 at the bank: the customer voice of every station listed, filtered and followed up, and the answer sent back.

"客户有呼声，银行有回声": a customer's praise, suggestion or complaint (a ``feedback`` entry) and a transfer the
customer stopped at the fraud warning (``transfer_stopped``) are **voice items**. An item is the entry the bank
acknowledged (``sync_server.posting_rules``), read from its signed token: it has no row of its own, so every entry
ever synced is an item without any backfill. Its id is ``<station>:<seq>`` (``ST-0001:12``), stable for ever.

What the bank does about an item is its trail (``VoiceEvent``): steps ``resolved``, ``reopened`` and ``noted``, each
with who, when and a note. The trail is append-only (database triggers refuse UPDATE and DELETE) and its steps are
numbered per item (a unique ``n``), so two people acting on one item at once cannot both take the same step: the
second is told to look again. The item's status is that of its last ``resolved`` or ``reopened`` step (none: open).

Which entries are items, and how each reads, is ``KINDS``: one line per kind (a new kind of voice, such as the 12315
complaints, is one more line). A kind that is ``answered_at_station`` sends its resolution note back to the station
with the downlink (``station_answers``, the member ``voice_answers``), where the agent sees that the customer was
answered.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from peewee import IntegrityError, fn

from station.protocol.complaints import mask_phone
from station.protocol.entry_types import MAX_ID, EntryType, printable
from station.protocol.money import format_yuan
from station.protocol.times import parse_utc, utc_text
from station.protocol.tokens import unverified_payload
from sync_server.db import Entry, VoiceEvent, db_proxy
from sync_server.policy import server_policy, station_policy

#: The longest note the bank writes: it goes to the station's screen, which shows it whole.
MAX_NOTE_CHARS = 200
#: The longest name in ``--by``.
MAX_BY_CHARS = 80
#: How many answers one downlink carries: the most recently changed (any change makes an item the latest, so a
#: change always goes down; the station keeps the answers it holds).
MAX_ANSWERS_SENT = 100
STATUSES = ("open", "resolved")
ACTIONS = {"resolve": "resolved", "reopen": "reopened", "note": "noted"}


class VoiceError(ValueError):
    """A request the voice commands refuse, in words for the operator."""


def _feedback_words(payload: dict) -> str:
    return payload["text"]


def _stopped_words(payload: dict) -> str:
    """A stopped transfer has no words of the customer: what they were about to send, and to whom. The payee's
    account (maybe a card number) only by its last 4 digits: ``sync-server fraud stopped`` gives it whole to the
    anti-fraud team."""
    return (f"stopped a transfer of ¥{format_yuan(payload['amount'])} to {payload['payee_name']} "
            f"(account ending {payload['payee_account'][-4:]})")


def _complaint_words(payload: dict) -> str:
    """A 12315 complaint as the bank lists it with customer voice: its number, the business, the category and what
    happened; the complainant's phone masked (it goes whole only to the regulator: ``sync-server complaints``)."""
    details = f": {payload['details']}" if payload.get("details") else ""
    return (f"12315 complaint {payload['complaint_no']} about {payload['business']} ({payload['category']}), "
            f"phone {mask_phone(payload['phone'])}{details}")


@dataclass(frozen=True)
class VoiceKind:
    """One kind of voice item: the entry type it comes from, the ``category`` of a feedback (None: every entry of
    the type), the customer's words as the bank lists them, and whether the answer goes back to the station."""

    name: str
    entry_type: str
    category: str | None
    words: Callable[[dict], str]
    answered_at_station: bool


#: The kinds of voice items, in the order they are listed. A stopped scam's follow-up is the bank's anti-fraud
#: work: its note stays at the bank.
KINDS = (
    VoiceKind("praise", EntryType.FEEDBACK, "praise", _feedback_words, True),
    VoiceKind("suggestion", EntryType.FEEDBACK, "suggestion", _feedback_words, True),
    VoiceKind("complaint", EntryType.FEEDBACK, "complaint", _feedback_words, True),
    VoiceKind("scam_stopped", EntryType.TRANSFER_STOPPED, None, _stopped_words, False),
    # The regulator answers a 12315 complaint (``sync-server complaints import-status``); the bank's own follow-up
    # notes stay at the bank.
    VoiceKind("complaint_12315", EntryType.COMPLAINT_12315, None, _complaint_words, False),
)
KIND_NAMES = tuple(kind.name for kind in KINDS)
ENTRY_TYPES = tuple(dict.fromkeys(kind.entry_type for kind in KINDS))


def kind_of(entry_type: str, payload: dict) -> VoiceKind | None:
    """The kind of an acknowledged entry, or None when it is not customer voice."""
    return next((kind for kind in KINDS if kind.entry_type == entry_type
                 and (kind.category is None or payload.get("category") == kind.category)), None)


def parse_item_id(item_id: str) -> tuple[str, int]:
    """(station, seq) of ``ST-0001:12``; ``VoiceError`` for anything else."""
    text = str(item_id or "")
    station_id, _, seq = text.rpartition(":")
    if (not station_id or len(station_id) > MAX_ID or not printable(station_id) or not seq.isascii()
            or not seq.isdigit() or len(seq) > 18 or int(seq) < 1):
        shown = text if len(text) <= 40 and text.isprintable() else repr(text[:40])
        raise VoiceError(f"{shown} is not a voice item id: it is a station and a seq, e.g. ST-0001:12.")
    return station_id, int(seq)


def _status(steps: list[VoiceEvent]) -> str:
    changes = [step.action for step in steps if step.action != "noted"]
    return "resolved" if changes and changes[-1] == "resolved" else "open"


def _answer(steps: list[VoiceEvent]) -> VoiceEvent | None:
    """The step that resolved the item, while it stands (None: open)."""
    if _status(steps) != "resolved":
        return None
    return next(step for step in reversed(steps) if step.action == "resolved")


def _steps(station_id: str | None = None, seq: int | None = None) -> dict[tuple[str, int], list[VoiceEvent]]:
    query = VoiceEvent.select()
    if station_id is not None:
        query = query.where(VoiceEvent.station_id == station_id)
    if seq is not None:
        query = query.where(VoiceEvent.seq == seq)
    trails: dict[tuple[str, int], list[VoiceEvent]] = {}
    for step in query.order_by(VoiceEvent.station_id, VoiceEvent.seq, VoiceEvent.n):
        trails.setdefault((step.station_id, step.seq), []).append(step)
    return trails


def resolved_items() -> set[tuple[str, int]]:
    """(station, seq) of every item whose trail ends resolved (a trail is a few human steps per item: read whole)."""
    return {key for key, steps in _steps().items() if _status(steps) == "resolved"}


def _item(station_id: str, seq: int, entry_type: str, token: str, received_at: str, steps: list[VoiceEvent],
          timezone: ZoneInfo) -> dict | None:
    payload = unverified_payload(token)
    kind = kind_of(entry_type, payload)
    if kind is None:
        return None
    answer = _answer(steps)
    local = parse_utc(payload["ts"]).astimezone(timezone)
    return {"id": f"{station_id}:{seq}", "station_id": station_id, "seq": seq, "kind": kind.name,
            "local_time": local.strftime("%Y-%m-%d %H:%M"), "received_at": received_at, "agent": payload["agent"],
            "words": kind.words(payload), "status": _status(steps),
            "answer": answer.note if answer else None,
            "trail": [{"n": s.n, "at": s.at, "by": s.by, "action": s.action, "note": s.note} for s in steps]}


def _timezone() -> ZoneInfo:
    return ZoneInfo(station_policy(server_policy())["timezone"])


def voice_items(station_id: str | None = None, kind: str | None = None, status: str | None = None,
                since: date | None = None) -> list[dict]:
    """The voice items, by station and seq: kind, when (local time in the policy's time zone), agent, the
    customer's words, status, the standing answer and the trail. ``since``: from that local date."""
    if kind is not None and kind not in KIND_NAMES:
        raise VoiceError(f"No kind {kind!r}: choose one of {', '.join(KIND_NAMES)}.")
    if status is not None and status not in STATUSES:
        raise VoiceError(f"No status {status!r}: choose open or resolved.")
    types = [k.entry_type for k in KINDS if kind is None or k.name == kind]
    query = Entry.select(Entry.station_id, Entry.seq, Entry.type, Entry.token, Entry.received_at).where(
        Entry.type.in_(sorted(set(types))) & (Entry.outcome == "acknowledged"))
    if station_id:
        query = query.where(Entry.station_id == station_id)
    trails = _steps(station_id or None)
    timezone = _timezone()
    items = []
    for station, seq, entry_type, token, received_at in query.order_by(Entry.station_id, Entry.seq).tuples():
        item = _item(station, seq, entry_type, token, received_at, trails.get((station, seq), []), timezone)
        if item is None or (kind is not None and item["kind"] != kind):
            continue
        if status is not None and item["status"] != status:
            continue
        if since is not None and item["local_time"][:10] < since.isoformat():
            continue
        items.append(item)
    return items


def voice_item(item_id: str) -> dict:
    """One item by its id, with its trail; ``VoiceError`` when the bank holds no such item."""
    station_id, seq = parse_item_id(item_id)
    row = Entry.select(Entry.type, Entry.token, Entry.received_at).where(
        (Entry.station_id == station_id) & (Entry.seq == seq) & Entry.type.in_(ENTRY_TYPES)
        & (Entry.outcome == "acknowledged")).tuples().first()
    item = None
    if row is not None:
        entry_type, token, received_at = row
        item = _item(station_id, seq, entry_type, token, received_at,
                     _steps(station_id, seq).get((station_id, seq), []), _timezone())
    if item is None:
        raise VoiceError(f"No customer voice item {station_id}:{seq} (a feedback or a stopped transfer the bank "
                         "acknowledged).")
    return item


def _operator_text(value: str | None, what: str, limit: int) -> str:
    """``value`` as the station keeps an answer (``entry_types.one_line``: runs of spaces made one, ends trimmed);
    refused when empty, longer than ``limit`` or holding a character ``one_line`` refuses (a control character, a
    line break, a private-use or unassigned one): the station would drop such a note, and the customer never hear
    the answer the bank recorded."""
    value = str(value or "")
    if not all(ch.isprintable() or unicodedata.category(ch) == "Zs" for ch in value):
        raise VoiceError(f"{what.capitalize()} may hold printable characters only (no control characters or line "
                         "breaks).")
    text = " ".join(value.split())
    if not text:
        raise VoiceError(f"Give {what}: it is kept in the item's trail.")
    if len(text) > limit:
        raise VoiceError(f"{what.capitalize()} is at most {limit} characters.")
    return text


def follow_up(item_id: str, action: str, *, note: str, by: str, now: datetime | None = None) -> dict:
    """Append one step to an item's trail: ``resolve`` (the note is the answer), ``reopen`` or ``note``.

    Resolving a resolved item, or reopening an open one, is refused (it says so); so is a step another person took
    on the same item meanwhile (the unique step number): look again, then retry. Returns the item as it is now.
    """
    if action not in ACTIONS:
        raise VoiceError(f"No action {action!r}: resolve, reopen or note.")
    note = _operator_text(note, "a note (--note)", MAX_NOTE_CHARS)
    by = _operator_text(by, "your name (--by)", MAX_BY_CHARS)
    item = voice_item(item_id)
    if action == "resolve" and item["status"] == "resolved":
        resolver = next(step["by"] for step in reversed(item["trail"]) if step["action"] == "resolved")
        raise VoiceError(f"{item['id']} is already resolved (by {resolver}); reopen it first to answer again.")
    if action == "reopen" and item["status"] == "open":
        raise VoiceError(f"{item['id']} is open already.")
    try:
        with db_proxy.atomic():
            VoiceEvent.create(station_id=item["station_id"], seq=item["seq"], n=len(item["trail"]) + 1,
                              at=utc_text(now or datetime.now(UTC)), by=by, action=ACTIONS[action], note=note)
    except IntegrityError as exc:
        raise VoiceError(f"{item['id']} was changed by someone else meanwhile: show it again, then retry.") from exc
    return voice_item(item["id"])


def station_answers(station_id: str) -> list[dict]:
    """What the downlink member ``voice_answers`` carries to ``station_id``: for each of its items of a kind
    ``answered_at_station`` with a resolve or reopen step, its seq and status, and, while resolved, the note and
    when it was written. The ``MAX_ANSWERS_SENT`` items changed last, by seq."""
    answered_types = sorted({kind.entry_type for kind in KINDS if kind.answered_at_station})
    # Only the items of the answered types count towards the limit: a busy week of stopped scams or 12315
    # complaints followed up at the bank must not crowd the customers' answers out.
    changed = (VoiceEvent.select(VoiceEvent.seq, fn.MAX(VoiceEvent.id).alias("last"))
               .join(Entry, on=(Entry.station_id == VoiceEvent.station_id) & (Entry.seq == VoiceEvent.seq))
               .where((VoiceEvent.station_id == station_id) & (VoiceEvent.action != "noted")
                      & Entry.type.in_(answered_types))
               .group_by(VoiceEvent.seq).order_by(fn.MAX(VoiceEvent.id).desc()).limit(MAX_ANSWERS_SENT).tuples())
    seqs = [seq for seq, _ in changed]
    if not seqs:
        return []
    entries = Entry.select(Entry.seq, Entry.type, Entry.token).where(
        (Entry.station_id == station_id) & Entry.seq.in_(seqs) & Entry.type.in_(answered_types)
        & (Entry.outcome == "acknowledged")).tuples()
    trails: dict[int, list[VoiceEvent]] = {}
    for step in VoiceEvent.select().where((VoiceEvent.station_id == station_id) & VoiceEvent.seq.in_(seqs)
                                          ).order_by(VoiceEvent.seq, VoiceEvent.n):
        trails.setdefault(step.seq, []).append(step)
    answers = []
    for seq, entry_type, token in sorted(entries):
        kind = kind_of(entry_type, unverified_payload(token))
        if kind is None or not kind.answered_at_station:
            continue
        answer = _answer(trails[seq])
        answers.append({"seq": seq, "status": "resolved", "note": answer.note, "at": answer.at} if answer
                       else {"seq": seq, "status": "open"})
    return answers
