"""Offline allowances: what each station may pay out for a customer with the network down, held centrally.

Invariant: the holds of all stations together, with the customer's live real-time authorizations
(``sync_server.authorize``), never exceed a customer's balance, so offline spending at two stations at once can
never overdraw the account. Enforced by ``refresh_allowances``: a station's new hold is the policy's allowance
capped by what the customer has available besides it (``Book.held`` counts the live authorizations too); only
an active customer at one of its home stations gets one, and a station that no longer serves a customer has its
hold released. Spending consumes the hold (``posting_rules``); ``Book`` writes it and refuses a negative one.
"""

from __future__ import annotations

from sync_server.book import Book
from sync_server.db import Hold, HomeStation, arg, cached_execute, one_of


def refresh_allowances(book: Book, policy: dict, homes: set[str], only: set[str] | None = None) -> dict[str, int]:
    """Set this station's hold for each customer it serves (``homes``: ``home_customer_ids``, read in the same
    transaction) to the allowance it may pay out offline now.

    The new hold is the policy's allowance, capped by what the customer has available besides this hold.
    ``only``: refresh just these home customers (a push's partial refresh); the others keep their holds, as the
    station keeps their allowances.
    """
    target = int(policy["offline_allowance_fen"])
    allowances = {}
    if only is None:
        # A customer no longer served by this station: release what was held for it (the station zeroes it too).
        cached_execute("release stale holds", lambda: Hold.update(amount_fen=0, updated_at=arg(0)).where(
            (Hold.station_id == arg(1)) & (Hold.amount_fen > 0) & ~one_of(Hold.account_id, 2)),
            book.now, book.station_id, sorted(homes))
    for account_id, customer in book.customers.items():
        if account_id not in homes or (only is not None and account_id not in only):
            continue
        others = book.held(account_id) - book.hold(account_id)
        allowance = 0 if customer.status != "active" else max(0, min(target, book.balance(account_id) - others))
        book.set_hold(account_id, allowance)
        allowances[account_id] = allowance
    return allowances


def home_customer_ids(station_id: str) -> set[str]:
    """Account ids of customers whose home stations include ``station_id``."""
    return {account_id for (account_id,) in cached_execute(
        "home customers", lambda: HomeStation.select(HomeStation.account_id).where(HomeStation.station_id == arg()),
        station_id).fetchall()}
