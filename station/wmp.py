"""Wealth-management product orders (理财) at the station: the open catalogue, the checks, the order.

An order is a customer operation (``station.writepath.customer_operation``) paid from the account: the entry
``wmp_order`` is a debit held against the customer's offline allowance until the bank confirms it at sync (settled)
or refuses it (rejected: the allowance is free again, and the receipt says why and that the money is released).
The order of the checks, each with its own refusal (``station.errors``), the bank's rules as
``station.protocol.wmp`` states them:

    agent session, customer status and PIN, the product in the catalogue the bank sent (``UnknownWmpProduct``),
    open today by the station's local date (``WmpWindowClosed``), the customer's risk-assessment level at least
    the product's (``WmpNotAssessed``, ``WmpRiskLevelTooLow``), the amount's format, the product's minimum and step
    (``WmpAmountRule``), the risk statement read with the customer (``WmpRiskStatementRequired``), then the limits of
    every debit (``station.limits``: per transaction, daily, offline allowance, exposure, offline age).

Online (``station.online``) the bank is asked before the PIN (authorization kind ``wmp_order``, with the product):
it checks the product, its window by the bank's date, the customer's risk level at the bank, the minimum and step,
the quota left (less every live grant of the product, at every station) and the money, and its grant holds the
amount. An order recorded under the grant (``authorization=``, ``station.online.usable_grant``) names it (``auth``)
and skips the offline rules (allowance, unsynced exposure, offline age), as an online withdrawal does; the outbox is
pushed at once and the bank settles it against the grant (the answer does not repeat the product: the bank holds
the grant to the order's product, and an entry naming another is ``not_authorized``). Offline (the link down, or
the bank not answering in time) an order is recorded within the offline allowance, and the bank confirms or refuses
it when it arrives.
The station shows only what the bank wrote: names, risk level, minimum and step, window and the plain description;
never advice or a return figure.
"""

from __future__ import annotations

from station import errors
from station.agents import AgentSession, CustomerAuth, check_session, refuse_inactive
from station.business_day import open_day_or_refuse
from station.context import Station, bound_station
from station.db import Customer, WmpProduct
from station.limits import check_debit_limits
from station.online import usable_grant
from station.protocol.entry_types import EntryType
from station.protocol.money import AmountError, format_yuan, parse_amount
from station.protocol.wmp import amount_problem, risk_problem, window_problem
from station.receipts import Receipt
from station.writepath import Plan, customer_operation


@bound_station
def open_products(st: Station) -> list[WmpProduct]:
    """The products of the bank's catalogue open for orders on the station's local date, by code."""
    today = st.local_date().isoformat()
    return list(WmpProduct.select().where((WmpProduct.opens_on <= today) & (WmpProduct.closes_on >= today))
                .order_by(WmpProduct.code))


def _product(st: Station, code) -> WmpProduct:
    """The product ``code`` if it is open today; refuses an unknown one or one outside its window."""
    product = WmpProduct.get_or_none(WmpProduct.code == code) if isinstance(code, str) else None
    if product is None:
        raise errors.UnknownWmpProduct()
    if window_problem(product.opens_on, product.closes_on, st.local_date().isoformat()):
        raise errors.WmpWindowClosed(opens=product.opens_on, closes=product.closes_on)
    return product


def _check_customer_level(customer: Customer, product: WmpProduct) -> None:
    if customer.risk_level is None:
        raise errors.WmpNotAssessed()
    if risk_problem(customer.risk_level, product.risk_level):
        raise errors.WmpRiskLevelTooLow(product=product.risk_level, customer=customer.risk_level)


def _order_amount(product: WmpProduct, amount) -> int:
    """The amount in fen, once its format and the product's minimum and step are checked."""
    amount_fen = _parsed(amount)
    if amount_problem(product.min_fen, product.step_fen, amount_fen):
        raise errors.WmpAmountRule(minimum=format_yuan(product.min_fen), step=format_yuan(product.step_fen))
    return amount_fen


@bound_station
def check_customer(st: Station, session: AgentSession, customer: Customer, code: str) -> WmpProduct:
    """Whether this customer may order ``code`` at all (open today, risk level): asked before the amount is typed,
    so a customer whose assessment is too low is told at once. Records nothing."""
    check_session(st, session)
    customer = Customer.get_by_id(customer.id)
    refuse_inactive(customer)
    product = _product(st, code)
    _check_customer_level(customer, product)
    return product


@bound_station
def check_order(st: Station, session: AgentSession, customer: Customer, code: str, amount, *,
                ask_bank: bool = False) -> int:
    """Every check of an order except the risk statement and the PIN, so the agent learns of a refusal before the
    customer reads the statement and types a PIN. ``ask_bank``: the bank is asked next, so the offline rules
    (allowance, exposure, offline age) are left to it. Returns the amount in fen; records nothing."""
    product = check_customer(st, session, customer, code)
    open_day_or_refuse(st)
    customer = Customer.get_by_id(customer.id)
    amount_fen = _order_amount(product, amount)
    check_debit_limits(st, customer, EntryType.WMP_ORDER, amount_fen, amount_fen, authorized=ask_bank)
    return amount_fen


def place_order(st: Station, session: AgentSession, auth: CustomerAuth, code: str, amount, txn: str, *,
                risk_statement_read: bool = False, authorization=None) -> Receipt:
    """Record a wealth-product order paid from the customer's account, for the bank to confirm or refuse.

    ``risk_statement_read``: the agent confirmed the risk statement was read with the customer (the entry says so:
    ``warned``; the bank refuses an order without it). ``authorization``: the bank's real-time grant (an
    ``Authorization`` or its auth_id); when it is usable for exactly this order the offline rules give way to it,
    else the order is checked and recorded offline."""

    def request(customer):
        return {"type": EntryType.WMP_ORDER.value, "customer": customer.id, "product": str(code),
                "amount": _parsed(amount)}

    def plan(customer, day):
        product = _product(st, code)
        _check_customer_level(customer, product)
        amount_fen = _order_amount(product, amount)
        if not risk_statement_read:
            raise errors.WmpRiskStatementRequired()
        auth_id = (usable_grant(st, authorization, kind=EntryType.WMP_ORDER, txn=str(txn).lower(),
                                account=customer.account_id, amount=amount_fen, fee=0)
                   if authorization is not None else None)
        check_debit_limits(st, customer, EntryType.WMP_ORDER, amount_fen, amount_fen, authorized=bool(auth_id))
        details = {"product": product.code, "risk_level": product.risk_level, "warned": True}
        return Plan(EntryType.WMP_ORDER, customer, amount_fen, 0, amount_fen, 0, details, auth_id=auth_id)

    return customer_operation(st, session, auth, txn, request, plan)


def _parsed(amount) -> int:
    try:
        return parse_amount(amount)
    except AmountError as exc:
        raise errors.InvalidAmount(exc.code) from exc
