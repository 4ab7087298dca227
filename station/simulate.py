"""A realistic random day (or days) at a station, through the same functions the UI calls.

Mostly small pension withdrawals, bills and top-ups paid in cash, some transfers and deposits, a few wrong
PINs, refusals and reversals; each business day opens at 07:40 with a counted float and closes at 17:30 with a
count. A virtual clock moves through the day, so the busy-hours pattern and offline limits play out as in life.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

from station import agents, business_day, errors, operations, receipts
from station.context import Station, bound_station
from station.db import Biller, Customer, Payee
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN, DEMO_TIMEZONE, ensure_demo_agents, load_demo_customers
from station.device_state import clock_floor
from station.identity import identity_fields, identity_required
from station.protocol.entry_types import spec_of
from station.protocol.id_card import check_character

OPEN_AT = time(7, 40)
CLOSE_AT = time(17, 30)
FLOAT_COUNTS = {"10000": 250, "5000": 80, "2000": 50, "1000": 40, "500": 20, "100": 50}
#: Relative weight of each hour's customers: the morning pension rush the station's wall chart shows.
HOUR_WEIGHTS = {8: 9, 9: 10, 10: 6, 11: 4, 12: 2, 13: 3, 14: 3, 15: 4, 16: 3, 17: 1}
#: Customers an hour per unit of HOUR_WEIGHTS: about 70 customers on an ordinary day.
CUSTOMERS_PER_WEIGHT = 1.5
OPERATION_WEIGHTS = {
    "withdrawal": 50,
    "bill_cash": 20,
    "topup_cash": 8,
    "deposit": 8,
    "transfer": 6,
    "balance_enquiry": 4,
    "wrong_pin": 2,
    "too_much": 2,
}


def id_number_of(customer: Customer) -> str:
    """A valid (GB 11643) made-up ID card number for a demo customer, the same one each visit; drawn from no random
    source, so adding it left every simulated day as it was."""
    born = date(1940, 1, 1) + timedelta(days=customer.id * 97 % 10_000)
    first17 = f"110105{born:%Y%m%d}{customer.id % 1000:03d}"
    return first17 + check_character(first17)


class StartBeforeJournal(ValueError):
    """A simulation asked to start before the journal's last entry."""


def _clock(st: Station, start: datetime):
    moment = {"now": start}
    st.clock = lambda: moment["now"]
    return moment


def _bill_reference(rng: random.Random, biller: Biller) -> str:
    if biller.kind == "mobile":
        return rng.choice(biller.ref_prefixes) + f"{rng.randrange(10**8):08d}"
    digits = {"electricity": 10, "water": 8, "gas": 11}[biller.kind]
    return f"{rng.randrange(10 ** digits):0{digits}d}"


def simulate(st: Station, transactions: int, *, seed: int = 1, start: datetime | None = None,
             until: datetime | None = None) -> dict:
    """Run about ``transactions`` customer operations; returns counts by outcome (refusals by their code).

    The station's clock follows a virtual clock from ``start`` (default: the journal's last entry, or 07:40 of
    its day) while the simulation runs, and is given back afterwards. A ``start`` before the journal's last entry
    is refused (:class:`StartBeforeJournal`): the station records nothing with a clock behind its journal.
    ``until``: no operation later than this moment (a demo's history never runs ahead of the real clock); the
    simulation stops there, with fewer operations.
    """
    real_clock = st.clock
    try:
        return _simulate(st, transactions, seed, start, until)
    finally:
        st.clock = real_clock


@bound_station
def _simulate(st: Station, transactions: int, seed: int, start: datetime | None, until: datetime | None) -> dict:
    rng = random.Random(seed)
    if not Customer.select().exists():
        load_demo_customers(st)
    ensure_demo_agents(st)
    tz = st.timezone
    # The journal's last entry, or a later contact with the bank: the station refuses a clock behind either.
    head_time = clock_floor(st)
    if start is not None and start < head_time:
        # The station refuses a clock behind its journal (station.device_state): every operation would be refused.
        raise StartBeforeJournal(f"The start {start.isoformat()} is before what the station last recorded "
                                 f"({head_time.isoformat()}): start later, or leave --start out.")
    # Left out, the start is the journal's last entry, or the opening of its day or of the day left open, whichever
    # is latest: a day left open dated after the last entry (an entry recorded since by a clock behind the journal)
    # would otherwise be closed at its own 17:30, past the end of the agent session logged in at the start.
    open_day = business_day.current_day(st)
    open_date = date.fromisoformat(open_day.business_date) if open_day is not None else st.local_date(head_time)
    begin = start or max(head_time, datetime.combine(max(st.local_date(head_time), open_date), OPEN_AT, tz))
    moment = _clock(st, begin.astimezone(tz))
    agent_id, _, _, agent_pin = DEMO_AGENTS[0]
    supervisor_id, _, _, supervisor_pin = DEMO_AGENTS[1]
    outcomes: Counter = Counter()
    customers = list(Customer.select().where(Customer.status == "active"))
    billers = {kind: list(Biller.select().where(Biller.kind == kind)) for kind in ("electricity", "water", "gas",
                                                                                   "mobile")}
    session = agents.login_agent(st, agent_id, agent_pin)
    supervisor = agents.login_agent(st, supervisor_id, supervisor_pin)

    def advance(minutes: float) -> None:
        moment["now"] = moment["now"] + timedelta(minutes=minutes)

    def start_day() -> None:
        nonlocal session, supervisor
        local = moment["now"].astimezone(tz)
        if local.time() >= CLOSE_AT:
            local = datetime.combine(local.date() + timedelta(days=1), OPEN_AT, tz)
        elif local.time() < OPEN_AT:
            local = datetime.combine(local.date(), OPEN_AT, tz)
        moment["now"] = local
        session = agents.login_agent(st, agent_id, agent_pin)
        supervisor = agents.login_agent(st, supervisor_id, supervisor_pin)
        business_day.open_day(st, session, FLOAT_COUNTS)
        outcomes["day_open"] += 1

    def end_day(at: datetime | None = None) -> None:
        business_date = date.fromisoformat(business_day.current_day(st).business_date)
        # Never back before the journal: a day left open with entries after its 17:30 closes after them.
        moment["now"] = at or max(datetime.combine(business_date, CLOSE_AT, tz), clock_floor(st))
        cash = business_day.drawer_cash(st)
        # A count is usually right, sometimes a little short.
        short = rng.choice([0, 0, 0, 0, 1_000, 500])
        counted = max(cash - short, 0)
        counts = {"100": counted // 100, "10": (counted % 100) // 10} if counted % 10 == 0 else {"100": 0}
        business_day.close_day(st, session, counts)
        outcomes["day_close"] += 1

    day = business_day.current_day(st)
    if day is not None and date.fromisoformat(day.business_date) < moment["now"].astimezone(tz).date():
        # A day left open before a later start closes at the start: at its own 17:30 the clock would run back.
        end_day(at=moment["now"])
    if business_day.current_day(st) is None:
        start_day()
    for _ in range(transactions):
        local = moment["now"].astimezone(tz)
        weight = HOUR_WEIGHTS.get(local.hour, 1)
        advance(rng.expovariate(weight * CUSTOMERS_PER_WEIGHT / 60))
        if until is not None and moment["now"] > until:
            break
        if moment["now"].astimezone(tz).time() >= CLOSE_AT:
            end_day()
            start_day()
            advance(rng.uniform(20, 40))
            if until is not None and moment["now"] > until:
                break
        kind = rng.choices(list(OPERATION_WEIGHTS), weights=list(OPERATION_WEIGHTS.values()))[0]
        customer = rng.choice(customers)
        try:
            receipt = _one_operation(st, rng, kind, session, customer, billers)
            if receipt is not None:
                outcomes[receipt.type] += 1
                if spec_of(receipt.type).reversible and rng.random() < 0.01:
                    operations.reverse(st, supervisor, receipt.txn, receipts.new_txn_id(), "agent keyed wrong amount")
                    outcomes["reversal"] += 1
        except errors.StationError as exc:
            outcomes[f"refused:{exc.code}"] += 1
            if isinstance(exc, errors.AgentSessionInvalid):
                session = agents.login_agent(st, agent_id, agent_pin)
    return dict(sorted(outcomes.items()))


def _one_operation(st, rng, kind, session, customer, billers):
    new = receipts.new_txn_id
    if kind in ("bill_cash", "topup_cash"):
        biller = rng.choice(billers["mobile"] if kind == "topup_cash" else
                            billers["electricity"] + billers["water"] + billers["gas"])
        amount = rng.choice(biller.denominations) if biller.denominations else rng.randrange(30, 400) * 100
        return operations.pay_bill(st, session, None, biller.code, _bill_reference(rng, biller), amount, new())
    customer = Customer.get_by_id(customer.id)
    if kind == "wrong_pin":
        agents.authenticate_customer(st, session, customer, "000000")
        return None
    auth = agents.authenticate_customer(st, session, customer, DEMO_CUSTOMER_PIN)
    if kind == "withdrawal":
        amount = rng.choice([100, 200, 200, 300, 500, 500, 600, 800, 1000]) * 100
        identity = identity_fields(st, id_number_of(customer), proxy=False) if identity_required(
            st, amount, False) else None
        return operations.withdraw_cash(st, session, auth, amount, new(), identity=identity)
    if kind == "too_much":
        return operations.withdraw_cash(st, session, auth, 120_000, new())
    if kind == "deposit":
        return operations.deposit_cash(st, session, auth, rng.randrange(1, 50) * 10_000, new())
    if kind == "balance_enquiry":
        return operations.balance_enquiry(st, session, auth, new()).receipt
    payee = Payee.select().where(Payee.customer == customer.id).first()
    amount = rng.choice([200, 500, 1000]) * 100
    if payee is not None:
        return operations.transfer(st, session, auth, payee.account, payee.name, amount, new())
    return operations.transfer(st, session, auth, "6222001234567890123", "王小明", amount, new(),
                               fraud_warning_confirmed=True)


def enroll_demo_station(data_dir, server_url: str, code: str, *, transactions: int = 60, seed: int = 1,
                        now: datetime | None = None):
    """The demo's station (``./run.sh demo``): enrolled with ``code``, then a morning of activity that has already
    happened, never ahead of the real clock (the station refuses to record with a clock behind its journal).

    The morning is today's from 07:40 in the station's time zone when it is past 09:00 there, else yesterday's;
    the device "enrolled" ten minutes before it. Returns the station with the real clock back."""
    from station.sync import enroll_station, sync_once

    now = now or datetime.now(UTC)
    local = now.astimezone(DEMO_TIMEZONE)
    day = local.date() if local.time() >= time(9, 0) else local.date() - timedelta(days=1)
    start = datetime.combine(day, time(7, 40), DEMO_TIMEZONE)
    moment = {"now": start - timedelta(minutes=10)}
    st = enroll_station(data_dir, server_url, code, clock=lambda: moment["now"])
    sync_once(st)  # the customers of the bank's downlink
    simulate(st, transactions, seed=seed, start=start, until=now)
    st.clock = lambda: datetime.now(UTC)
    return st
