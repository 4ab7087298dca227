"""The downlink: what the bank sends a station with each ack (policy, its customers with their allowances, PIN
verifiers and risk-assessment levels, billers, blocked and known payees, the open wealth-management products, the
bank's answers to its customers' voice, server time).

Invariant: a station is sent only the customers it calls home, each with the allowance the bank holds for it at
that station (``refresh_allowances`` decides both; ``build_downlink`` only reports them), so what the station may
pay out offline always equals the hold the bank placed. Between the batches of one sync only the policy is sent.
"""

from __future__ import annotations

from sync_server.book import Book
from sync_server.db import Biller, BlockedPayee, KnownPayee, WmpProduct, cached_execute, cached_rows, one_of
from sync_server.voice import station_answers


def build_downlink(book: Book, allowances: dict[str, int] | None, policy: dict, acked_seq: int, server_time: str,
                   *, rotate_key: bool = False, partial: bool = False) -> dict:
    """What the station needs next: policy, its customers with allowances, billers, blocked and known payees, and
    the bank's answers to the customer voice recorded there (``voice_answers``: ``sync_server.voice``).

    Without ``allowances`` (more batches follow) only the policy is sent: the station keeps its allowances, which
    stay consistent because the holds were consumed but not refreshed either. ``rotate_key``: the bank wants the
    station to rotate its signing key (``lifecycle.rotation_due``); the member is sent only when true.
    ``partial`` (a push right after an online operation): ``allowances`` holds only the customers the batch named;
    they are sent with ``"customers_partial": true`` and without billers and blocked payees, and the station
    leaves every other customer as it is.
    """
    downlink = {"v": 1, "acked_seq": acked_seq, "server_time": server_time, "policy": policy.get("station", {})}
    if rotate_key:
        downlink["rotate_key"] = True
    if allowances is None:
        return downlink
    payees: dict[str, list] = {}
    if allowances:
        # Each lookup's SQL is built once (``db.cached_execute``): a sync's last batch makes the downlink.
        for account_id, payee_account, name in cached_execute("known payees", lambda: KnownPayee.select(
                KnownPayee.account_id, KnownPayee.payee_account, KnownPayee.name).where(
                one_of(KnownPayee.account_id)), sorted(allowances)).fetchall():
            payees.setdefault(account_id, []).append([payee_account, name])
    customers = []
    if partial:
        downlink["customers_partial"] = True
    for account_id in sorted(allowances):
        customer = book.customers[account_id]
        customers.append({
            "account_id": account_id, "name": customer.name, "card_number": customer.card_number,
            "passbook_number": customer.passbook_number, "status": customer.status,
            "pin_verifier": customer.pin_verifier, "allowance_fen": allowances[account_id],
            "balance_fen": book.balance(account_id), "payees": sorted(payees.get(account_id, [])),
        })
        if customer.birth_year is not None:
            customers[-1]["birth_year"] = customer.birth_year
        if customer.risk_level is not None:
            customers[-1]["risk_level"] = customer.risk_level
    if partial:
        downlink["customers"] = customers
        return downlink
    billers = [
        {"code": b.code, "kind": b.kind, "name_zh": b.name_zh, "name_en": b.name_en, "ref_pattern": b.ref_pattern,
         "ref_prefixes": b.ref_prefixes, "min_fen": b.min_fen, "max_fen": b.max_fen, "denominations": b.denominations}
        for b in cached_rows("billers", lambda: Biller.select().order_by(Biller.code))
    ]
    downlink.update(
        customers=customers,
        billers=billers,
        blocked_payees=[account for (account,) in cached_execute(
            "blocked payees", lambda: BlockedPayee.select(BlockedPayee.account).order_by(BlockedPayee.account))
            .fetchall()],
        wmp_products=open_catalogue(),
        voice_answers=station_answers(book.station_id),
    )
    return downlink


def open_catalogue() -> list[dict]:
    """The open wealth-management products as the downlink carries them (``wmp_products``): no quota, since what
    is left to sell is the bank's to check at sync (``sold_out``)."""
    return [{"code": p.code, "name_zh": p.name_zh, "name_en": p.name_en, "risk_level": p.risk_level,
             "min_fen": p.min_fen, "step_fen": p.step_fen, "opens_on": p.opens_on, "closes_on": p.closes_on,
             "description_zh": p.description_zh, "description_en": p.description_en}
            for p in cached_rows("open products", lambda: WmpProduct.select().where(WmpProduct.status == "open")
                                 .order_by(WmpProduct.code))]
