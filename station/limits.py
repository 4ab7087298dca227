"""The offline risk limits: what bounds every debit a station decides alone.

Steps 4 to 8 of every operation's check order (``station.operations``), in this order: per-transaction limit,
per-customer daily limit, the customer's offline allowance (the bank's hold minus debits recorded since),
the station's unsynced exposure (amount and count), the offline age. The offline age is unknown after a clock
correction whose last sync was stamped by the clock ahead (``offline_age_unknown``, ``station.clock``): step 8 then
refuses every offline debit until the station syncs, so a correction never stretches it. Credits pass every step
but the first two:
a deposit works however long the station has been offline. The drawer (step 9) is ``station.business_day``'s.
A deposit is also bounded by the station's deposits of the day (``check_station_deposits``): cash taken in has to
come from somewhere, and the bank checks the same total.

A debit recorded under the bank's real-time authorization (``operation.auth_id``; ``station.online``) is held by
the bank apart from the offline allowance: it skips steps 6 to 8 and counts in neither the allowance spent nor the
unsynced exposure. Steps 4 and 5 apply to it as to every other.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from station import errors
from station.context import Station
from station.db import Customer, JournalEntry
from station.device_state import CLOCK_CORRECTED_SETTING
from station.protocol.entry_types import LIVE_STATES
from station.protocol.money import format_yuan
from station.protocol.times import parse_utc

#: ``LIVE_STATES`` as an SQL list, for the hand-written queries of the hot path.
_LIVE_SQL = "(" + ", ".join(f"'{state}'" for state in LIVE_STATES) + ")"


def offline_available(st: Station, customer: Customer) -> int:
    """The customer's offline allowance left: the bank's hold minus offline debits recorded since it was set."""
    spent = st.db.execute_sql(
        "SELECT COALESCE(SUM(debit_fen), 0) FROM operation"
        f" WHERE customer_id = ? AND seq > ? AND status IN {_LIVE_SQL} AND auth_id IS NULL",
        (customer.id, customer.allowance_seq),
    ).fetchone()[0]
    return max(customer.allowance_fen - spent, 0)


def unsynced_exposure(st: Station) -> tuple[int, int]:
    """(fen, count) of live offline debits the bank has not acknowledged yet (authorized ones it holds already)."""
    total, count = st.db.execute_sql(
        "SELECT COALESCE(SUM(debit_fen), 0), COUNT(*) FROM operation"
        f" WHERE seq > ? AND debit_fen > 0 AND status IN {_LIVE_SQL} AND auth_id IS NULL",
        (st.setting("acked_seq", 0),),
    ).fetchone()
    return total, count


def last_sync_at(st: Station) -> datetime | None:
    """When the last sync with the bank succeeded, or None."""
    value = st.setting("last_sync_at")
    return parse_utc(value) if value else None


def offline_age_unknown(st: Station) -> bool:
    """True from a clock correction whose last sync was stamped by the clock ahead (``sync_unknown``) until the next
    sync: when the station last heard from the bank is then unknown (``last_sync_at`` was brought back to the
    correction, which is no contact with the bank)."""
    return bool((st.setting(CLOCK_CORRECTED_SETTING) or {}).get("sync_unknown"))


def offline_since(st: Station) -> datetime:
    """When the station last heard from the bank: last sync, or its start entry if it never synced."""
    synced = last_sync_at(st)
    if synced is not None:
        return synced
    # The journal's first entry: seq 1, or on a replacement device the start entry after the bank's head.
    started = st.db.execute_sql("SELECT recorded_at FROM journal_entry ORDER BY seq LIMIT 1").fetchone()[0]
    return JournalEntry.recorded_at.python_value(started)


def used_today(st: Station, customer: Customer, op_type: str) -> int:
    """The customer's live amounts of ``op_type`` at this station on the local day (the daily limit's count)."""
    return st.db.execute_sql(
        "SELECT COALESCE(SUM(amount_fen), 0) FROM operation WHERE customer_id = ? AND business_date = ?"
        f" AND type = ? AND status IN {_LIVE_SQL}",
        (customer.id, st.local_date().isoformat(), op_type),
    ).fetchone()[0]


def check_debit_limits(st: Station, customer: Customer, op_type: str, amount_fen: int, debit_fen: int, *,
                       authorized: bool = False) -> None:
    """Steps 4 to 8 of the check order (per transaction, daily, offline allowance, exposure, offline age);
    ``authorized``: the bank authorized it in real time, so 6 to 8 (the offline rules) do not apply."""
    policy = st.policy
    limits = policy["limits"][op_type]
    if amount_fen > limits["per_txn"]:
        raise errors.OverTransactionLimit(operation=op_type.replace("_", " "), limit=format_yuan(limits["per_txn"]))
    if customer is not None:
        used = used_today(st, customer, op_type)
        if used + amount_fen > limits["daily"]:
            raise errors.OverDailyLimit(
                limit=format_yuan(limits["daily"]), left=format_yuan(max(limits["daily"] - used, 0))
            )
    if debit_fen == 0 or authorized:
        return
    left = offline_available(st, customer)
    if debit_fen > left:
        raise errors.OverOfflineAllowance(left=format_yuan(left))
    exposure_fen, exposure_count = unsynced_exposure(st)
    if exposure_fen + debit_fen > policy["max_unsynced_fen"] or exposure_count + 1 > policy["max_unsynced_count"]:
        raise errors.StationExposureLimit()
    if offline_age_unknown(st):
        raise errors.OfflineAgeUnknown()
    hours = policy["max_offline_hours"]
    if st.now() - offline_since(st) > timedelta(hours=hours):
        raise errors.OfflineTooLong(hours=hours)


def check_station_deposits(st: Station, amount_fen: int) -> None:
    """Refuse a deposit that takes the station's live deposits of the local day past ``deposit_station_daily_fen``."""
    limit = st.policy["deposit_station_daily_fen"]
    taken_in = st.db.execute_sql(
        "SELECT COALESCE(SUM(amount_fen), 0) FROM operation WHERE type = 'deposit' AND business_date = ?"
        f" AND status IN {_LIVE_SQL}",
        (st.local_date().isoformat(),),
    ).fetchone()[0]
    if taken_in + amount_fen > limit:
        raise errors.StationDepositLimit(limit=format_yuan(limit), left=format_yuan(max(limit - taken_in, 0)))
