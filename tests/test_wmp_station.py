"""Wealth-product orders at the station, without a bank: the catalogue as a downlink leaves it (hostile items left
out), and what the receipt says on screen and on paper while the order waits, once confirmed, and once refused
(the reason and "the money is released")."""

from __future__ import annotations

from datetime import UTC, datetime
from html import unescape

import pytest
from ui_helpers import CUSTOMER_PIN, card_customer, english, error_of, identify, login, start, txn_of

from station import agents, receipts, wmp
from station.db import Customer, Operation, WmpProduct
from station.demo import DEMO_CUSTOMER_PIN
from station.limits import offline_available
from station.printing import receipt_sheet
from station.protocol.entry_types import OperationState
from station.receipt_layout import receipt_lines
from station.receipts import receipt_for
from station.sync import apply_downlink


def catalogue_item(**changes):
    item = {"code": "WM-01", "name_zh": "稳健理财", "name_en": "Steady", "risk_level": 2, "min_fen": 10_000,
            "step_fen": 1_000, "opens_on": "2026-11-01", "closes_on": "2026-11-30",
            "description_zh": "投资于存款和债券，可能亏损本金。", "description_en": "The capital can be lost."}
    return {**item, **changes}


def downlink(station, products, customers=None):
    """A delta downlink (``since``): the catalogue, and the customers given (the others left as they are)."""
    sent = {"v": 1, "since": 1, "wmp_products": products}
    if customers is not None:
        sent["customers"] = customers
    apply_downlink(station, sent, station.setting("acked_seq", 0), datetime(2026, 11, 2, 23, 40, tzinfo=UTC))


def test_the_station_keeps_only_the_products_it_can_read(station):
    downlink(station, [
        catalogue_item(),
        catalogue_item(code="WM-02", risk_level=True),
        catalogue_item(code="WM-03", min_fen=0),
        catalogue_item(code="WM-04", opens_on="2026-12-01"),  # opens after it closes
        catalogue_item(code="wm 05"),
        catalogue_item(code="WM-06", name_zh="稳健\n理财"),
        catalogue_item(code="WM-07", step_fen=1.5),
        catalogue_item(code="WM-08", closes_on="someday"),
        catalogue_item(code="WM-01", name_en="Duplicate"),  # the last of a code counts
        "WM-09",
        catalogue_item(code="WM-10", description_en="x" * 201),
    ])
    assert [(p.code, p.name_en) for p in WmpProduct.select()] == [("WM-01", "Duplicate")]
    downlink(station, "not a list")
    assert WmpProduct.select().count() == 0


@pytest.mark.parametrize("sent, kept", [(3, 3), (0, None), (6, None), ("3", None), (True, None), (None, None)])
def test_the_risk_level_is_kept_only_when_it_is_one_to_five(station, sent, kept):
    customer = Customer.select().first()
    item = {"account_id": customer.account_id, "name": customer.name, "pin_verifier": customer.pin_verifier,
            "risk_level": sent}
    downlink(station, [], [item])
    assert Customer.get_by_id(customer.id).risk_level == kept


@pytest.fixture
def ordered(station, agent, open_drawer):
    """An order of 120 yuan recorded for a card customer assessed R3: (customer, receipt)."""
    downlink(station, [catalogue_item()])
    customer = Customer.select().where(Customer.card_number.is_null(False)).first()
    Customer.update(risk_level=3).where(Customer.id == customer.id).execute()
    auth = agents.authenticate_customer(station, agent, customer, DEMO_CUSTOMER_PIN)
    return customer, wmp.place_order(station, agent, auth, "WM-01", "120", receipts.new_txn_id(),
                                     risk_statement_read=True)


def printed_status(station, receipt) -> str:
    """The paper's text, its wrapped lines joined again with one space."""
    return " ".join(line.strip() for line in receipt_lines(receipt_sheet(station, receipt)))


def test_the_receipt_waits_then_says_confirmed(station, ordered):
    customer, receipt = ordered
    assert receipt.details == {"product": "WM-01", "risk_level": 2, "warned": True}
    assert "申购已记录，等待银行确认" in printed_status(station, receipt).replace(" ", "")
    assert "Order recorded, waiting for the bank's confirmation" in printed_status(station, receipt)
    assert "产品 Product" in printed_status(station, receipt)
    Operation.update(status=OperationState.SETTLED).where(Operation.txn == receipt.txn).execute()
    assert "银行已确认申购" in printed_status(station, receipt_for(station, Operation.get_by_id(receipt.txn)))


def test_an_order_recorded_under_the_banks_grant_says_so_until_the_bank_confirms_it(station, ordered, ui_client):
    _, receipt = ordered
    Operation.update(auth_id="AUTH-0001").where(Operation.txn == receipt.txn).execute()
    paper = printed_status(station, receipt_for(station, Operation.get_by_id(receipt.txn)))
    assert "银行已授权申购，等待银行确认" in paper.replace(" ", "")
    assert "Order authorized by the bank, waiting for its confirmation" in paper
    login(ui_client)
    assert "银行已授权申购，等待银行确认" in ui_client.get(f"/receipts/{receipt.seq}").get_data(as_text=True)
    english(ui_client)
    screen = unescape(ui_client.get(f"/receipts/{receipt.seq}").get_data(as_text=True))
    assert "Order authorized by the bank, waiting for its confirmation" in screen


def test_a_refused_order_says_why_and_that_the_money_is_released(station, ordered, ui_client):
    customer, receipt = ordered
    left = offline_available(station, customer)
    Operation.update(status=OperationState.REJECTED, outcome_reason="sold_out").where(
        Operation.txn == receipt.txn).execute()
    assert offline_available(station, customer) == left + 12_000  # the allowance is free again
    paper = printed_status(station, receipt_for(station, Operation.get_by_id(receipt.txn)))
    assert "银行未受理申购：产品额度已售完；款项已释放" in paper.replace(" ", "")
    assert "Order refused by the bank: the product was sold out. The money is released." in paper
    login(ui_client)
    screen = ui_client.get(f"/receipts/{receipt.seq}").get_data(as_text=True)
    assert "银行未受理申购：产品额度已售完。款项已释放。" in screen
    assert "WM-01 · R2" in screen
    english(ui_client)
    screen = ui_client.get(f"/receipts/{receipt.seq}").get_data(as_text=True)
    assert "Order refused by the bank: the product was sold out. The money is released." in screen


def test_the_touchscreen_walks_an_order_to_its_receipt(station, open_drawer, ui_client):
    """Home tile, customer, product (one above the customer's level refused there, nothing recorded), amount (the
    step rule), the risk statement read together, confirm, PIN, the receipt waiting for the bank."""
    downlink(station, [catalogue_item(), catalogue_item(code="WM-05", risk_level=5, name_en="Bold")])
    customer = card_customer()
    Customer.update(risk_level=3).where(Customer.id == customer.id).execute()
    login(ui_client)
    english(ui_client)
    home = ui_client.get("/home").get_data(as_text=True)
    assert 'id="tile-wmp_order"' in home
    start(ui_client, "wmp_order")
    assert identify(ui_client, "wmp_order", customer).location.endswith("/op/wmp_order/product")
    listed = ui_client.get("/op/wmp_order/product").get_data(as_text=True)
    assert "Steady" in listed and "R2" in listed and "The capital can be lost." in listed
    assert "The customer's risk assessment: R3" in listed
    refused = ui_client.post("/op/wmp_order/product", data={"product": "WM-05"}).get_data(as_text=True)
    assert unescape(error_of(refused)) == ("This product is risk level R5; the customer's risk assessment is R3. "
                                           "The order cannot be taken.")
    assert ui_client.post("/op/wmp_order/product", data={"product": "WM-01"}).location.endswith("/amount")
    step_refused = ui_client.post("/op/wmp_order/amount", data={"amount": "105"}).get_data(as_text=True)
    assert error_of(step_refused) == "For this product the amount is at least 100.00 yuan, then in steps of 10.00 yuan."
    assert ui_client.post("/op/wmp_order/amount", data={"amount": "120"}).location.endswith("/statement")
    # No skipping the risk statement: the confirm screen sends the agent back to it.
    assert ui_client.get("/op/wmp_order/confirm").location.endswith("/statement")
    statement = ui_client.get("/op/wmp_order/statement").get_data(as_text=True)
    assert "the capital can be lost" in statement and "Nobody here promises a return" in statement
    assert ui_client.post("/op/wmp_order/statement", data={"read": "yes"}).location.endswith("/confirm")
    confirm = ui_client.get("/op/wmp_order/confirm").get_data(as_text=True)
    assert "the amount is held" in confirm
    assert ui_client.post("/op/wmp_order/confirm", data={"txn": txn_of(confirm)}).location.endswith("/pin")
    pin = ui_client.get("/op/wmp_order/pin").get_data(as_text=True)
    done = ui_client.post("/op/wmp_order/pin", data={"pin": CUSTOMER_PIN, "txn": txn_of(pin)})
    assert "/receipts/" in done.location
    receipt = ui_client.get(done.location).get_data(as_text=True)
    assert "Order recorded, waiting for the bank's confirmation" in unescape(receipt)
    op = Operation.get(Operation.type == "wmp_order")
    assert (op.amount_fen, op.debit_fen, op.details) == (12_000, 12_000, {"product": "WM-01", "risk_level": 2,
                                                                         "warned": True})
    assert Operation.select().where(Operation.type == "wmp_order").count() == 1


def test_the_demo_products_keep_the_banks_rules_and_the_station_reads_them():
    from datetime import date

    from station.protocol.demo_data import demo_wmp_products
    from station.protocol.wmp import catalogue_item as station_item
    from station.protocol.wmp import promises_returns

    products = demo_wmp_products(date(2026, 11, 3))
    assert [p["opens_on"] for p in products] == ["2026-10-27"] * 3
    for product in products:
        assert not promises_returns(product["description_zh"]) and not promises_returns(product["description_en"])
        assert station_item(product) is not None and product["min_fen"] <= product["quota_fen"]


@pytest.mark.parametrize("text", ["年化收益率4.5%", "保本保息", "预期收益稳定", "Guaranteed return", "3.2% a year",
                                  "We recommend it", "risk-free", "an annualised yield"])
def test_a_description_that_promises_or_advises_is_refused(text):
    from station.protocol.wmp import promises_returns

    assert promises_returns(text)
