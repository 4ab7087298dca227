"""Demo and test data loaded locally, until the bank's downlink provides the real thing.

Everything here is illustrative (names from ../shared/STORIES.md). Demo PINs are documented in README.md:
agents ``A01`` (agent Tian, PIN 1357) and ``S01`` (supervisor Zhou, PIN 2468); every demo customer's PIN is
``123456``.
"""

from __future__ import annotations

import random

from stdnum import luhn

from station.agents import add_agent
from station.context import Station, bound_station
from station.db import Agent, Biller, Customer, Payee
from station.protocol.pins import make_pin_verifier

DEMO_CUSTOMER_PIN = "123456"
DEMO_PIN_LOG2_N = 8
DEMO_AGENTS = (("A01", "田师傅 Tian", "agent", "1357"), ("S01", "周主管 Zhou", "supervisor", "2468"))

CHINA_MOBILE = ["134", "135", "136", "137", "138", "139", "147", "150", "151", "152", "157", "158", "159",
                "178", "182", "183", "184", "187", "188", "198"]
CHINA_UNICOM = ["130", "131", "132", "145", "155", "156", "166", "175", "176", "185", "186"]
CHINA_TELECOM = ["133", "149", "153", "173", "177", "180", "181", "189", "199"]
TOP_UPS_FEN = [1_000, 2_000, 3_000, 5_000, 10_000, 20_000]

DEMO_BILLERS = [
    dict(code="ELEC-SGCC", kind="electricity", name_zh="国网电费", name_en="State Grid electricity",
         ref_pattern=r"\d{10}", min_fen=100, max_fen=500_000),
    dict(code="WATER-COUNTY", kind="water", name_zh="县自来水费", name_en="County water",
         ref_pattern=r"\d{8}", min_fen=100, max_fen=200_000),
    dict(code="GAS-COUNTY", kind="gas", name_zh="县燃气费", name_en="County gas",
         ref_pattern=r"\d{10,12}", min_fen=100, max_fen=300_000),
    dict(code="MOBILE-CMCC", kind="mobile", name_zh="中国移动充值", name_en="China Mobile top-up",
         ref_pattern=r"1\d{10}", ref_prefixes=CHINA_MOBILE, denominations=TOP_UPS_FEN),
    dict(code="MOBILE-CUCC", kind="mobile", name_zh="中国联通充值", name_en="China Unicom top-up",
         ref_pattern=r"1\d{10}", ref_prefixes=CHINA_UNICOM, denominations=TOP_UPS_FEN),
    dict(code="MOBILE-CTCC", kind="mobile", name_zh="中国电信充值", name_en="China Telecom top-up",
         ref_pattern=r"1\d{10}", ref_prefixes=CHINA_TELECOM, denominations=TOP_UPS_FEN),
]

SURNAMES = "李王张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = ["秀英", "桂英", "玉兰", "建国", "国强", "德明", "淑珍", "志强", "凤英", "春华", "永福", "金花", "长顺", "素芬"]


def load_billers() -> None:
    for biller in DEMO_BILLERS:
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
    with st.db.atomic():
        load_billers()
        for index in range(count):
            passbook_only = index % 5 == 4
            card_body, payee_body = f"621700{index:09d}", f"622200{index:09d}"
            card = None if passbook_only else card_body + luhn.calc_check_digit(card_body)
            customer = Customer.create(
                account_id=f"AC{st.station_id[-4:]}{index:06d}",
                name=rng.choice(SURNAMES) + rng.choice(GIVEN),
                card_number=card,
                passbook_number=f"{880000000000 + index}",
                pin_verifier=verifier,
                allowance_fen=allowance_fen,
                balance_fen=rng.randrange(2_000, 60_000) * 100,
                balance_as_of=now,
            )
            if index % 3 == 0:
                Payee.create(customer=customer, account=payee_body + luhn.calc_check_digit(payee_body),
                             name=rng.choice(SURNAMES) + rng.choice(GIVEN))
    ensure_demo_agents(st)


@bound_station
def ensure_demo_agents(st: Station) -> None:
    """Add the demo agents that are missing (an enrolled station gets customers from the bank, not agents)."""
    for agent_id, name, role, pin in DEMO_AGENTS:
        if Agent.get_or_none(Agent.agent_id == agent_id) is None:
            add_agent(st, agent_id, name, role, pin)
