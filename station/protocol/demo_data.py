"""The demo catalogue both sides load: billers, the demo customers' PIN, and the names demo customers get.

One source, so that a station set up with ``station init --demo`` (billers loaded locally, no bank yet) and a
station enrolled at ``sync-server demo-data`` (billers from the bank's downlink) know the same billers. It lives
in ``station.protocol`` because that is the only part of ``station`` the server may import; it is plain data,
with no Flask or peewee. Everything here is illustrative (names from ../shared/STORIES.md).
"""

from __future__ import annotations

import copy
from datetime import date, timedelta

#: Every demo customer's PIN (README.md says so); their verifiers are cheap (scrypt 2**8), demo only.
DEMO_CUSTOMER_PIN = "123456"
DEMO_PIN_LOG2_N = 8

CHINA_MOBILE = ("134", "135", "136", "137", "138", "139", "147", "150", "151", "152", "157", "158", "159", "178",
                "182", "183", "184", "187", "188", "198")
CHINA_UNICOM = ("130", "131", "132", "145", "155", "156", "166", "175", "176", "185", "186")
CHINA_TELECOM = ("133", "149", "153", "173", "177", "180", "181", "189", "199")
TOP_UPS_FEN = (1_000, 2_000, 3_000, 5_000, 10_000, 20_000)

_DEMO_BILLERS = (
    dict(code="ELEC-SGCC", kind="electricity", name_zh="国网电费", name_en="State Grid electricity",
         ref_pattern=r"\d{10}", ref_prefixes=None, min_fen=100, max_fen=500_000, denominations=None),
    dict(code="WATER-COUNTY", kind="water", name_zh="县自来水费", name_en="County water",
         ref_pattern=r"\d{8}", ref_prefixes=None, min_fen=100, max_fen=200_000, denominations=None),
    dict(code="GAS-COUNTY", kind="gas", name_zh="县燃气费", name_en="County gas",
         ref_pattern=r"\d{10,12}", ref_prefixes=None, min_fen=100, max_fen=300_000, denominations=None),
    dict(code="MOBILE-CMCC", kind="mobile", name_zh="中国移动充值", name_en="China Mobile top-up",
         ref_pattern=r"1\d{10}", ref_prefixes=list(CHINA_MOBILE), min_fen=100, max_fen=200_000,
         denominations=list(TOP_UPS_FEN)),
    dict(code="MOBILE-CUCC", kind="mobile", name_zh="中国联通充值", name_en="China Unicom top-up",
         ref_pattern=r"1\d{10}", ref_prefixes=list(CHINA_UNICOM), min_fen=100, max_fen=200_000,
         denominations=list(TOP_UPS_FEN)),
    dict(code="MOBILE-CTCC", kind="mobile", name_zh="中国电信充值", name_en="China Telecom top-up",
         ref_pattern=r"1\d{10}", ref_prefixes=list(CHINA_TELECOM), min_fen=100, max_fen=200_000,
         denominations=list(TOP_UPS_FEN)),
)

#: Surnames and given names demo customers (and their payees) are drawn from.
SURNAMES = "李王张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN_NAMES = ("秀英", "桂英", "玉兰", "建国", "国强", "德明", "淑珍", "志强", "凤英", "春华", "永福", "金花", "长顺",
               "素芬")


def demo_billers() -> list[dict]:
    """The demo billers, one dict each with every column of a biller (fresh copies: callers may change them)."""
    return copy.deepcopy(list(_DEMO_BILLERS))


def demo_birth_year(index: int) -> int:
    """The birth year of a station's ``index``-th demo customer: a village's mix, about half of them 60 or older
    (the first one is)."""
    return 1938 + (index * 17 + 20) % 60 if index % 2 == 0 else 1960 + (index * 7) % 40


def demo_risk_level(index: int) -> int | None:
    """The risk-assessment level of a station's ``index``-th demo customer: 1 to 5, and about one in four not
    assessed (the third one is not)."""
    return None if index % 4 == 2 else index % 5 + 1


def demo_wmp_products(today: date) -> list[dict]:
    """The demo wealth-management products, open from a week before ``today`` (bank-local) for a month: a cautious
    one, a steady one and an adventurous one, described plainly (no rate, no promise)."""
    window = {"opens_on": (today - timedelta(days=7)).isoformat(),
              "closes_on": (today + timedelta(days=30)).isoformat(), "status": "open"}
    plain = {"description_zh": "主要投资于存款和债券，净值会波动，可能亏损本金。",
             "description_en": "Invests mainly in deposits and bonds; its value moves and the capital can be lost."}
    return [
        {"code": "WM-DEMO-R1", "name_zh": "安心存款类理财", "name_en": "Steady Cash", "risk_level": 1,
         "min_fen": 100_000, "step_fen": 10_000, "quota_fen": 100_000_000, **plain, **window},
        {"code": "WM-DEMO-R2", "name_zh": "稳健债券理财", "name_en": "Steady Bonds", "risk_level": 2,
         "min_fen": 100_000, "step_fen": 10_000, "quota_fen": 50_000_000, **plain, **window},
        {"code": "WM-DEMO-R4", "name_zh": "积极混合理财", "name_en": "Mixed Growth", "risk_level": 4,
         "min_fen": 100_000, "step_fen": 10_000, "quota_fen": 20_000_000,
         "description_zh": "投资于股票和债券，净值波动大，可能亏损较多本金。",
         "description_en": "Invests in shares and bonds; its value moves a lot and much of the capital can be lost.",
         **window},
    ]
