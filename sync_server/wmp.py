"""The bank's wealth-management catalogue (理财) and its customers' risk-assessment levels.

Products are added whole and never edited: a changed product is a new code, so an order names exactly what the
customer was shown. The bank may close a product at any time (orders that arrive after are ``window_closed``).
The rules of an order are ``station.protocol.wmp``'s; the posting rule is ``Applier._wmp_order``.
"""

from __future__ import annotations

from datetime import date

from station.protocol.entry_types import one_line
from station.protocol.money import AmountError, parse_amount
from station.protocol.wmp import CODE_PATTERN, MAX_DESCRIPTION, MAX_NAME, RISK_LEVELS, promises_returns
from sync_server.admin import AdminError
from sync_server.db import Customer, WmpProduct, db_proxy

PRODUCT_FIELDS = ("code", "name_zh", "name_en", "risk_level", "min_fen", "step_fen", "opens_on", "closes_on",
                  "quota_fen", "description_zh", "description_en", "status")


def _fen(label: str, text) -> int:
    try:
        return parse_amount(str(text))
    except AmountError as exc:
        raise AdminError(f"{label}: {exc.message}") from exc


def _day(label: str, text) -> str:
    try:
        return date.fromisoformat(str(text)).isoformat()
    except ValueError as exc:
        raise AdminError(f"{label} must be a date such as 2026-12-01, not {text!r}") from exc


def add_product(code: str, *, name_zh: str, name_en: str, risk_level: int, minimum: str, step: str, opens_on: str,
                closes_on: str, quota: str, description_zh: str, description_en: str) -> WmpProduct:
    """Add a product (amounts in yuan as an operator types them, dates bank-local ISO); refuse a bad field, an
    existing code, or a description that promises a return or gives advice."""
    if not isinstance(code, str) or not CODE_PATTERN.fullmatch(code):
        raise AdminError("code must be 2 to 32 capital letters, digits or '-'")
    names = {"name_zh": one_line(name_zh, MAX_NAME), "name_en": one_line(name_en, MAX_NAME)}
    for key, value in names.items():
        if value is None:
            raise AdminError(f"{key} must be one line of 1 to {MAX_NAME} printable characters")
    descriptions = {"description_zh": one_line(description_zh, MAX_DESCRIPTION),
                    "description_en": one_line(description_en, MAX_DESCRIPTION)}
    for key, value in descriptions.items():
        if value is None:
            raise AdminError(f"{key} must be one line of 1 to {MAX_DESCRIPTION} printable characters")
        if promises_returns(value):
            raise AdminError(f"{key} states a rate, a guarantee or advice: describe the product, promise nothing")
    if risk_level not in RISK_LEVELS:
        raise AdminError("risk level must be 1 to 5 (R1 to R5)")
    min_fen, step_fen, quota_fen = _fen("minimum", minimum), _fen("step", step), _fen("quota", quota)
    if min_fen > quota_fen:
        raise AdminError("the minimum is more than the quota: nothing could be sold")
    opens, closes = _day("opens", opens_on), _day("closes", closes_on)
    if opens > closes:
        raise AdminError("the window closes before it opens")
    with db_proxy.atomic():
        if WmpProduct.get_or_none(WmpProduct.code == code) is not None:
            raise AdminError(f"Product {code} exists already: products are never edited, add another code")
        return WmpProduct.create(code=code, risk_level=risk_level, min_fen=min_fen, step_fen=step_fen,
                                 opens_on=opens, closes_on=closes, quota_fen=quota_fen, status="open",
                                 **names, **descriptions)


def list_products() -> list[dict]:
    """Every product, open ones first, by code."""
    rows = WmpProduct.select().order_by(WmpProduct.status.desc(), WmpProduct.code)
    return [{name: getattr(row, name) for name in PRODUCT_FIELDS} for row in rows]


def close_product(code: str) -> None:
    """Stop selling ``code`` now: stations drop it at their next sync, and orders that arrive later are refused
    (``window_closed``)."""
    if WmpProduct.update(status="closed").where(WmpProduct.code == code).execute() != 1:
        raise AdminError(f"No product {code}.")


def set_risk_level(account_id: str, level: str) -> int | None:
    """Record a customer's risk-assessment level (``1`` to ``5``, or ``none`` when the assessment lapsed); sent
    down with the customer at the next sync, and checked again by the bank for every order."""
    text = str(level).strip().upper().removeprefix("R")
    if text == "NONE":
        value = None
    elif text.isascii() and text.isdecimal() and int(text) in RISK_LEVELS:
        value = int(text)
    else:
        raise AdminError("the risk level is 1 to 5 (R1 to R5), or none")
    if Customer.update(risk_level=value).where(Customer.account_id == account_id).execute() != 1:
        raise AdminError(f"No customer {account_id}.")
    return value
