"""Downlink versions: a station is sent only what changed since the downlink it says it applied.

Every downlink to a station of this release has a version, one more than the last the bank made for it
(``downlink_state.version``). The station applies a downlink only when its version is newer than the last one it
applied, and names that one in its next batch (``downlink_applied``, 0 for none). The bank keeps, per station and
item (``policy``, ``billers``, ``blocked_payees``, ``wmp_products``, ``voice_answers``, ``customer:<account id>``),
a digest of what it last sent and the version that carried it (``downlink_item``), and answers with a **delta**
(``"since": A``): only the items that changed, and the customers it no longer serves there (``customers_removed``).

Invariant: once the station has applied version A, it holds exactly the stored digest of every item whose stored
version is at most A. Each delta keeps it, by sending an item again when

- its digest changed (a changed allowance, balance, PIN verifier, payee, status ... is a change);
- the version that last carried it is newer than A (that answer may have been lost: it is sent again);
- for a customer, this station's entries posted to the account since the last downlink that carried the whole
  customer list (``refreshed_seq``): the station subtracts its debits after the seq its allowance is "as of"
  (``station.limits``), so a customer whose hold and balance came back to the same values (a withdrawal and a
  deposit) still needs the new seq. A customer not sent had no posting since it was last sent, by induction.

``voice_answers`` (``sync_server.voice.station_answers``) is one whole item like ``billers``: it carries the answers
changed last (at most ``MAX_ANSWERS_SENT``, any change making an answer the latest), and the station merges it by
seq, keeping the answers it holds that the list no longer names; so a change always reaches the station, and the
invariant holds for the item as for the others.

Everything is sent again (a full downlink, no ``since``), and what the bank knew of the station is forgotten first,
when the station asks (A = 0: a new station, or one restored from a backup), when it names a version the bank never
made (the bank's database was restored: the counter then jumps past it, so versions keep increasing), and when no
whole customer list has reached it since the bank last forgot (``complete_since``), since the station would not
know whom to drop. An older station names no version: it gets every downlink in full as before, and nothing is
recorded for it.
"""

from __future__ import annotations

import hashlib

from station.protocol.envelope import MAX_DOWNLINK_VERSION
from station.protocol.tokens import b64url, canonical_json
from sync_server.book import upsert_rows
from sync_server.db import DownlinkItem, DownlinkState, Posting, arg, cached_execute, cached_row, cached_rows, one_of

CUSTOMER = "customer:"
#: The downlink members kept as one item each (sent whole when any part of them changed).
WHOLE_ITEMS = ("policy", "billers", "blocked_payees", "wmp_products", "voice_answers")


def _digest(value) -> str:
    return b64url(hashlib.sha256(canonical_json(value)).digest()[:16])


def _items(downlink: dict) -> dict[str, tuple[object, str]]:
    """item name -> (what is sent, its digest), for the items this downlink carries."""
    items = {name: downlink[name] for name in WHOLE_ITEMS if name in downlink}
    items.update({CUSTOMER + customer["account_id"]: customer for customer in downlink.get("customers", [])})
    return {name: (value, _digest(value)) for name, value in items.items()}


def _posted_accounts(station_id: str, after_seq: int) -> set[str]:
    """Accounts this station's entries after ``after_seq`` posted to."""
    return {account_id for (account_id,) in cached_execute(
        "posted accounts", lambda: Posting.select(Posting.account_id).distinct().where(
            (Posting.station_id == arg(0)) & (Posting.seq > arg(1))), station_id, after_seq).fetchall()}


def versioned_downlink(station_id: str, downlink: dict, applied: int | None, acked_through: int
                       ) -> tuple[dict, int | None]:
    """The downlink to send after ``build_downlink``'s ``downlink`` and its version (None: an older station that
    names no version, sent ``downlink`` as it is). Runs in the batch's transaction, under the station's row lock.

    ``applied``: the version the station says it applied last; ``acked_through``: the ack's seq.
    """
    if applied is None:
        return downlink, None
    state = cached_row("downlink state", lambda: DownlinkState.select().where(DownlinkState.station_id == arg())
                       .limit(1), station_id)
    last = state.version if state else 0
    # Never past what a station may name back (envelope.MAX_DOWNLINK_VERSION): one version per sync never gets there,
    # and a station that names the last one (nothing but its own key can) takes no newer downlink but still syncs.
    version = min(max(last, applied) + 1, MAX_DOWNLINK_VERSION)
    # The whole customer list (not a push's partial one, not the policy alone between the batches of a sync).
    complete = "customers" in downlink and downlink.get("customers_partial") is not True
    full = (applied == 0 or applied > last or state is None
            or (complete and (state.complete_since is None or state.complete_since > applied)))
    items = _items(downlink)
    if full:
        DownlinkItem.delete().where(DownlinkItem.station_id == station_id).execute()
        _record(station_id, {name: digest for name, (_, digest) in items.items()}, version)
        _keep_state(station_id, version, version if complete else None,
                    acked_through if complete else (state.refreshed_seq if state else 0), state)
        return downlink, version
    if complete:
        rows = cached_rows("downlink items", lambda: DownlinkItem.select().where(DownlinkItem.station_id == arg()),
                           station_id)
    else:
        # Between the batches of a sync, or after a push: only what this downlink carries can have changed.
        rows = cached_rows("downlink items named", lambda: DownlinkItem.select().where(
            (DownlinkItem.station_id == arg(0)) & one_of(DownlinkItem.item, 1)), station_id, sorted(items))
    stored = {row.item: row for row in rows}
    posted = _posted_accounts(station_id, state.refreshed_seq) if "customers" in downlink else set()
    changed: dict[str, str | None] = {}
    for name, (_, digest) in items.items():
        row = stored.get(name)
        if (row is None or row.digest != digest or row.version > applied
                or (name.startswith(CUSTOMER) and name.removeprefix(CUSTOMER) in posted)):
            changed[name] = digest
    if complete:
        for name, row in stored.items():
            if name.startswith(CUSTOMER) and name not in items and (row.digest is not None or row.version > applied):
                changed[name] = None
    delta = {key: downlink[key] for key in ("v", "acked_seq", "server_time", "rotate_key") if key in downlink}
    delta["since"] = applied
    delta.update({name: items[name][0] for name in WHOLE_ITEMS if name in changed})
    customers = [items[name][0] for name in sorted(changed) if name.startswith(CUSTOMER) and changed[name]]
    removed = [name.removeprefix(CUSTOMER) for name in sorted(changed) if changed[name] is None]
    if customers:
        delta["customers"] = customers
    if removed:
        delta["customers_removed"] = removed
    _record(station_id, changed, version)
    _keep_state(station_id, version, state.complete_since, acked_through if complete else state.refreshed_seq, state)
    return delta, version


def _record(station_id: str, digests: dict[str, str | None], version: int) -> None:
    """Keep each item's digest and version (``INSERT ... ON CONFLICT (station_id, item) DO UPDATE``, one statement
    however many items: ``book.upsert_rows``)."""
    upsert_rows(DownlinkItem, [{"station_id": station_id, "item": name, "digest": digest, "version": version}
                               for name, digest in sorted(digests.items())], update=["digest", "version"])


def _keep_state(station_id: str, version: int, complete_since: int | None, refreshed_seq: int,
                state: DownlinkState | None) -> None:
    fields = {"version": version, "complete_since": complete_since, "refreshed_seq": refreshed_seq}
    if state is None:
        DownlinkState.create(station_id=station_id, **fields)
    else:
        cached_execute("keep downlink state", lambda: DownlinkState.update(
            version=arg(0), complete_since=arg(1), refreshed_seq=arg(2)).where(DownlinkState.station_id == arg(3)),
            version, complete_since, refreshed_seq, station_id)
