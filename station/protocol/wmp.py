"""Wealth-management products (理财): the rules of an order, shared by the station and the bank.

The bank keeps a small catalogue (``sync_server.wmp``) and sends its open products down with every full downlink
(``wmp_products``). An order (entry ``wmp_order``) is allowed when, in this order:

1. the product is in the catalogue (``unknown_product``) and open: the bank has not closed it, and the order's
   bank-local date (the policy's ``timezone``) is inside its subscription window, both ends included
   (``window_closed``); the bank checks the date of the entry's ``ts`` and the date it arrives, so an order made
   offline on the window's last day and synced after it is refused;
2. the customer's risk-assessment level (1 to 5, from the bank's questionnaire; none: not assessed) is at least the
   product's risk level (``risk_level_too_low``);
3. the amount is the product's minimum plus a whole number of steps (``amount_rule``);
4. at the bank only: the product's quota (what is left to sell) still covers it (``sold_out``), then the offline
   allowance as for every debit.

Neither side gives advice or promises a return: a description that states a rate or a guarantee is refused when the
bank adds the product (``promises_returns``). Pure code: no Flask or peewee import.
"""

from __future__ import annotations

import re
from datetime import date

from station.protocol.entry_types import one_line
from station.protocol.tokens import is_integer

UNKNOWN_PRODUCT = "unknown_product"
WINDOW_CLOSED = "window_closed"
RISK_LEVEL_TOO_LOW = "risk_level_too_low"
AMOUNT_RULE = "amount_rule"
SOLD_OUT = "sold_out"
RISK_STATEMENT_UNREAD = "risk_statement_unread"

RISK_LEVELS = (1, 2, 3, 4, 5)
CODE_PATTERN = re.compile(r"[A-Z0-9-]{2,32}")
MAX_NAME = 30
MAX_DESCRIPTION = 200

#: Words of a promise or of advice the bank may not put in a product's description: a rate (a figure with %), a
#: guarantee of the capital or of a return, an "expected"/"annualised" yield, a recommendation.
_PROMISES = re.compile(r"\d\s*[%％]|保本|保收益|保息|稳赚|零风险|无风险|预期收益|年化|收益率|推荐|"
                       r"guarantee|risk[- ]free|expected (?:return|yield)|annuali[sz]ed|\byield|recommend", re.I)


def promises_returns(text: str) -> bool:
    """Whether a description states a rate, guarantees the capital or a return, or recommends (refused)."""
    return bool(_PROMISES.search(text))


def window_problem(opens_on: str, closes_on: str, local_date: str) -> str | None:
    """``window_closed`` unless ``local_date`` (ISO, bank-local) is within the window, both ends included."""
    return None if opens_on <= local_date <= closes_on else WINDOW_CLOSED


def risk_problem(customer_level, product_level: int) -> str | None:
    """``risk_level_too_low`` unless the customer was assessed at the product's level or above."""
    return None if is_integer(customer_level) and customer_level >= product_level else RISK_LEVEL_TOO_LOW


def amount_problem(min_fen: int, step_fen: int, amount_fen: int) -> str | None:
    """``amount_rule`` unless the amount is the minimum plus a whole number of steps."""
    return None if amount_fen >= min_fen and (amount_fen - min_fen) % step_fen == 0 else AMOUNT_RULE


def catalogue_item(item) -> dict | None:
    """One downlinked product as the station keeps it, or None when any field is not what the bank sends (the
    station then leaves that product out rather than show something it cannot check)."""
    if not isinstance(item, dict):
        return None
    code = item.get("code")
    texts = {key: one_line(item.get(key), MAX_DESCRIPTION if key.startswith("description") else MAX_NAME)
             for key in ("name_zh", "name_en", "description_zh", "description_en")}
    numbers = [item.get(key) for key in ("min_fen", "step_fen")]
    try:
        dates = [date.fromisoformat(item.get(key)).isoformat() for key in ("opens_on", "closes_on")]
    except (TypeError, ValueError):
        return None
    if (not isinstance(code, str) or not CODE_PATTERN.fullmatch(code) or None in texts.values()
            or item.get("risk_level") not in RISK_LEVELS or not is_integer(item.get("risk_level"))
            or not all(is_integer(n) and 0 < n <= 2**53 - 1 for n in numbers) or dates[0] > dates[1]):
        return None
    return {"code": code, **texts, "risk_level": item["risk_level"], "min_fen": numbers[0], "step_fen": numbers[1],
            "opens_on": dates[0], "closes_on": dates[1]}
