"""Helpers shared by the UI tests: log in, walk an operation's steps, find demo customers."""

from __future__ import annotations

import re

from station.db import Customer, Payee
from station.identity import identity_fields

AGENT_PIN = "1357"
SUPERVISOR_PIN = "2468"
CUSTOMER_PIN = "123456"
#: A valid resident ID card number (GB 11643-1999's own example), typed at a withdrawal above ``id_check_fen``.
ID_NUMBER = "11010519491231002X"


def login(client, agent_id="A01", pin=AGENT_PIN):
    return client.post("/login", data={"agent_id": agent_id, "pin": pin})


def english(client):
    client.post("/lang", data={"lang": "en", "next": "/"})


def identity_present(st) -> dict:
    """The ID card fields of ``ID_NUMBER``, for a withdrawal above ``id_check_fen`` recorded by the core."""
    return identity_fields(st, ID_NUMBER, proxy=False)


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
    if response.location.endswith("/identity"):
        client.post("/op/withdrawal/identity", data={"id_number": ID_NUMBER})
    client.post("/op/withdrawal/confirm")
    page = client.get("/op/withdrawal/pin").get_data(as_text=True)
    return client.post("/op/withdrawal/pin", data={"pin": pin, "txn": txn_of(page)})


# -- the set-up screen's "shop's people" step ----------------------------------------------------------------
#: The people the set-up tests add (PINs neither weak nor the demo agents').
SETUP_SUPERVISOR = {"agent_id": "S01", "name": "周主管", "pin": "2580"}
SETUP_AGENT = {"agent_id": "A01", "name": "刘秀英", "pin": "3691"}


def csrf_token_of(html: str) -> str | None:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    return match.group(1) if match else None


def post_person(client, role, agent_id, name, pin, pin_again=None):
    """Fill the people step's form for ``role`` (with the page's CSRF token when it has one) and save it."""
    html = client.get("/setup/people").get_data(as_text=True)
    data = {"role": role, "agent_id": agent_id, "name": name, "pin": pin,
            "pin_again": pin if pin_again is None else pin_again}
    token = csrf_token_of(html)
    if token:
        data["csrf_token"] = token
    return client.post("/setup/people", data=data)


def add_shop_people(client, supervisor=SETUP_SUPERVISOR, agent=SETUP_AGENT):
    """The set-up's people step done: the supervisor, then the agent; returns the agent's answer."""
    assert post_person(client, "supervisor", **supervisor).status_code == 302
    return post_person(client, "agent", **agent)
