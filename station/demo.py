"""Demo and test data loaded locally, until the bank's downlink provides the real thing.

Everything here is illustrative; the billers, the customers' PIN and their names come from
``station.protocol.demo_data``, which the bank's ``sync-server demo-data`` loads too. Demo PINs are documented in
README.md: agents ``A01`` (agent Tian, PIN 1357) and ``S01`` (supervisor Zhou, PIN 2468); every demo customer's PIN is
``123456``.
"""

from __future__ import annotations

import random
from zoneinfo import ZoneInfo

from stdnum import luhn

from station.agents import add_agent
from station.context import Station, bound_station
from station.db import Agent, Biller, Customer, Payee
from station.journal import journal_head
from station.protocol.demo_data import (
    DEMO_CUSTOMER_PIN,
    DEMO_PIN_LOG2_N,
    GIVEN_NAMES,
    SURNAMES,
    demo_billers,
    demo_birth_year,
)
from station.protocol.pins import make_pin_verifier
from station.protocol.policy import merged_policy

#: The demo station's time zone: the policy's default (the bank's downlink may change a real station's).
DEMO_TIMEZONE = ZoneInfo(merged_policy(None)["timezone"])
DEMO_AGENTS = (("A01", "田师傅 Tian", "agent", "1357"), ("S01", "周主管 Zhou", "supervisor", "2468"))


def load_billers() -> None:
    """Load the demo billers (the same the bank's ``sync-server demo-data`` downlinks), replacing any of theirs."""
    for biller in demo_billers():
        Biller.insert(**biller).on_conflict_replace().execute()


@bound_station
def load_demo_customers(st: Station, count: int = 60, *, seed: int = 7, allowance_fen: int = 300_000) -> None:
    """Create ``count`` demo customers (about one in five with only a passbook), billers and agents."""
    rng = random.Random(seed)
    # Demo only: one cheap scrypt verifier (2**8) shared by every demo customer, so that set-up and
    # `station simulate` run thousands of operations quickly. Real verifiers (2**14, one salt per customer)
    # come from the bank's downlink.
    verifier = make_pin_verifier(DEMO_CUSTOMER_PIN, log2_n=DEMO_PIN_LOG2_N)
    now = st.now()
    head_seq, _ = journal_head(st)
    with st.db.atomic():
        load_billers()
        for index in range(count):
            passbook_only = index % 5 == 4
            card_body, payee_body = f"621700{index:09d}", f"622200{index:09d}"
            card = None if passbook_only else card_body + luhn.calc_check_digit(card_body)
            customer = Customer.create(
                account_id=f"AC{st.station_id[-4:]}{index:06d}",
                name=rng.choice(SURNAMES) + rng.choice(GIVEN_NAMES),
                card_number=card,
                passbook_number=f"{880000000000 + index}",
                pin_verifier=verifier,
                allowance_fen=allowance_fen,
                balance_fen=rng.randrange(2_000, 60_000) * 100,
                balance_as_of=now,
                balance_seq=head_seq,
                birth_year=demo_birth_year(index),
            )
            if index % 3 == 0:
                Payee.create(customer=customer, account=payee_body + luhn.calc_check_digit(payee_body),
                             name=rng.choice(SURNAMES) + rng.choice(GIVEN_NAMES))
    ensure_demo_agents(st)


@bound_station
def ensure_demo_agents(st: Station) -> None:
    """Add the demo agents that are missing (an enrolled station gets customers from the bank, not agents)."""
    for agent_id, name, role, pin in DEMO_AGENTS:
        if Agent.get_or_none(Agent.agent_id == agent_id) is None:
            add_agent(st, agent_id, name, role, pin)

