"""Helpers shared by the UI tests: log in, walk an operation's steps, find demo customers."""

from __future__ import annotations

import re

from station.db import Customer, Payee

AGENT_PIN = "1357"
SUPERVISOR_PIN = "2468"
CUSTOMER_PIN = "123456"


def login(client, agent_id="A01", pin=AGENT_PIN):
    return client.post("/login", data={"agent_id": agent_id, "pin": pin})


def english(client):
    client.post("/lang", data={"lang": "en", "next": "/"})


def card_customer(index=0) -> Customer:
    return list(Customer.select().where(Customer.card_number.is_null(False)).order_by(Customer.id))[index]


def passbook_only_customer() -> Customer:
    return Customer.select().where(Customer.card_number.is_null()).order_by(Customer.id).first()


def customer_with_payee() -> tuple[Customer, Payee]:
    payee = Payee.select().order_by(Payee.id).first()
    return payee.customer, payee


def start(client, kind):
    response = client.post(f"/op/{kind}/start")
    assert response.status_code == 302
    return response


def identify(client, kind, customer, id_kind="card"):
    number = customer.card_number if id_kind == "card" else customer.passbook_number
    return client.post(f"/op/{kind}/customer", data={"id_kind": id_kind, "number": number})


def txn_of(html: str) -> str:
    return re.search(r'name="txn" value="([0-9a-f-]{36})"', html).group(1)


def error_of(html: str) -> str | None:
    match = re.search(r'id="error">([^<]*)<', html)
    return match.group(1) if match else None


def withdraw(client, customer, amount="500", pin=CUSTOMER_PIN):
    """Walk a withdrawal to its receipt; returns the PIN step's response (the amount step's on a refusal)."""
    start(client, "withdrawal")
    identify(client, "withdrawal", customer)
    response = client.post("/op/withdrawal/amount", data={"amount": amount})
    if response.status_code != 302:
        return response  # refused on the amount screen, before the customer types a PIN
    client.post("/op/withdrawal/confirm")
    page = client.get("/op/withdrawal/pin").get_data(as_text=True)
    return client.post("/op/withdrawal/pin", data={"pin": pin, "txn": txn_of(page)})
