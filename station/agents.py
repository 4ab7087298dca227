"""Agents and customer authentication: who may act at the counter, and for which customer.

Step 1 of every operation's check order is the agent session (``check_session``), step 2 the customer's
status and PIN (``authenticate_customer``, then ``authorised_customer`` inside the write). Wrong PINs are
journaled: five in a row (policy ``agent_pin_tries``) lock an agent, three (``customer_pin_tries``) a customer. The
last supervisor who can still log in is never locked: they wait instead, longer after each further wrong PIN,
measured on the boot clock (``start_wait``, ``seconds_left``), so wrong PINs alone can never leave a station with
nobody to unlock the others. A lock (or a wait) is lifted by a supervisor's PIN (``unlock_agent``), the technician
(``technician_unlock``) or the bank's one-time code (``station.bank_unlock``), each journaled with who did it
(``record_unlock``). A PIN is checked with the slow hash outside any lock, then the lock state is read again inside
the write transaction.

Adding an agent (``add_agent``: the first-boot set-up screen, ``station agent add``, the demo data) checks
everything before it writes, then writes the row and its ``agent_added`` entry (never the PIN) in one
transaction: an ID is 1 to 16 of A-Z, 0-9 and dashes (it names the agent in journal entries, on the login
screen and in its address), a name one line of at most 40 printable characters (what the bank's enrollment
sheet allows for the shop's agent), a PIN 4 to 6 digits that is not one digit repeated nor digits in a row.
The set-up screen adds the shop's people in order (``next_setup_role``): the supervisor while there is none,
then an agent while there is none; past that, adding people is a supervisor's business.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from stdnum import luhn

from station import errors
from station.context import Station, bound_station
from station.db import Agent, Customer
from station.device_state import CLOCK_TOLERANCE, refuse_wrong_clock
from station.journal import append_entry
from station.protocol.entry_types import EntryType, one_line
from station.protocol.pins import PIN_RE, check_pin, make_pin_verifier, weak_pin
from station.protocol.times import parse_utc, utc_text
from station.receipts import Receipt, entry_receipt
from station.storage import storage_full

AGENT_SESSION_HOURS = 12
#: The settings that hold the station's record of each UI session (``bind_session``), one key per session.
SESSION_KEY_PREFIX = "agent_session:"
ROLES = ("agent", "supervisor")
#: The first letter of the IDs the set-up screen suggests (S01, A01).
ID_PREFIX = {"supervisor": "S", "agent": "A"}
MAX_AGENT_ID = 16
MAX_AGENT_NAME = 40
_AGENT_ID_RE = re.compile(rf"[A-Z0-9][A-Z0-9-]{{0,{MAX_AGENT_ID - 1}}}")

_CARD_RE = re.compile(r"^\d{16,19}$")
_PASSBOOK_RE = re.compile(r"^\d{8,15}$")


@dataclass(frozen=True)
class AgentSession:
    """A logged-in agent at one station, until ``expires_at``."""

    agent_id: str
    name: str
    role: str
    station_id: str
    started_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class CustomerAuth:
    """Proof that a customer typed the right PIN, for one agent session, for a short while."""

    customer_id: int
    account_id: str
    agent_id: str
    verified_at: datetime


def new_agent_fields(agent_id: str, name: str, role: str) -> tuple[str, str]:
    """The ID and name of a new agent as kept (the ID upper-cased, full-width letters made plain; the name's runs
    of spaces made one), or the refusal of the first that breaks the rules (``InvalidAgentId``,
    ``InvalidAgentName``, ``InvalidAgentRole``)."""
    agent_id = unicodedata.normalize("NFKC", str(agent_id or "")).strip().upper()
    if not _AGENT_ID_RE.fullmatch(agent_id):
        raise errors.InvalidAgentId(limit=MAX_AGENT_ID)
    text = one_line(name, MAX_AGENT_NAME)
    if text is None:
        raise errors.InvalidAgentName(limit=MAX_AGENT_NAME)
    if role not in ROLES:
        raise errors.InvalidAgentRole()
    return agent_id, text


def check_new_pin(pin: str) -> None:
    """Refuse a new agent's PIN that is not 4 to 6 ASCII digits (``AgentPinRule``) or is easy to guess
    (``WeakAgentPin``)."""
    if not PIN_RE.match(pin or ""):
        raise errors.AgentPinRule()
    if weak_pin(pin):
        raise errors.WeakAgentPin()


@bound_station
def add_agent(st: Station, agent_id: str, name: str, role: str, pin: str, *, set_up: bool = False) -> Agent:
    """Register an agent (journaled, without the PIN verifier) and return it; a refusal writes nothing.

    ``set_up``: the first-boot screen's step, which adds only the role ``next_setup_role`` names (checked in the
    same transaction, so two taps cannot add two supervisors): ``PeopleAlreadySetUp`` otherwise."""
    agent_id, name = new_agent_fields(agent_id, name, role)
    check_new_pin(pin)
    verifier = make_pin_verifier(pin)  # the slow hash, before the write lock
    with st.write():
        refuse_wrong_clock(st)
        if set_up and next_setup_role(st) != role:
            raise errors.PeopleAlreadySetUp()
        if Agent.get_or_none(Agent.agent_id == agent_id) is not None:
            raise errors.AgentIdTaken(agent=agent_id)
        agent = Agent.create(agent_id=agent_id, name=name, role=role, pin_verifier=verifier)
        append_entry(st, EntryType.AGENT_ADDED, st.now(), {"agent": agent_id, "role": role})
    return agent


def next_setup_role(st: Station) -> str | None:
    """Whom the set-up screen adds next: ``supervisor`` while the station has none, then ``agent`` while it has
    none; None once both are there (the login screen takes over)."""
    roles = {role for (role,) in st.db.execute_sql("SELECT DISTINCT role FROM agent")}
    return next((role for role in ("supervisor", "agent") if role not in roles), None)


@bound_station
def list_agents(st: Station) -> list[Agent]:
    """Every agent of the station, supervisors first, as the login screen lists them."""
    return list(Agent.select().order_by(Agent.role.desc(), Agent.agent_id))


@bound_station
def suggested_agent_id(st: Station, role: str) -> str:
    """The first free ID of the role's pattern: S01, S02, ... for a supervisor; A01, A02, ... for an agent."""
    taken = {agent_id for (agent_id,) in Agent.select(Agent.agent_id).tuples()}
    return next(candidate for number in range(1, len(taken) + 2)
                if (candidate := f"{ID_PREFIX[role]}{number:02d}") not in taken)


@bound_station
def login_agent(st: Station, agent_id: str, pin: str) -> AgentSession:
    """Check an agent's PIN; each failure is journaled. ``agent_pin_tries`` wrong PINs in a row lock an agent, but
    never the last supervisor who can still log in: they wait instead (``AgentWaiting``, ``pin_wait``), longer
    after each further wrong PIN, so wrong PINs alone can never leave a station without anyone to unlock it."""
    agent = Agent.get_or_none(Agent.agent_id == agent_id)
    if agent is None:
        raise errors.AgentUnknown()
    if agent.locked:
        raise errors.AgentLocked()
    refuse_while_waiting(st, agent_id)
    tries = st.policy["agent_pin_tries"]
    refuse_past_unsaved_limit(st, agent_id, agent.failed_pins, tries)
    now = st.now()
    if check_pin(pin, agent.pin_verifier):
        # The slow hash ran outside any lock: parallel guesses may have locked the agent (or set a wait) meanwhile.
        try:
            with st.write():
                agent = Agent.get_by_id(agent_id)
                if agent.locked:
                    raise errors.AgentLocked()
                refuse_while_waiting(st, agent_id)
                if agent.failed_pins:
                    Agent.update(failed_pins=0).where(Agent.agent_id == agent_id).execute()
                    st.delete_setting(_wait_key(agent_id))
        except errors.StorageFull:
            pass  # no room to clear the earlier wrong PINs: they stay counted (a lock comes sooner, never later)
        st.unsaved_failures.pop(agent_id, None)
        return AgentSession(
            agent_id=agent.agent_id,
            name=agent.name,
            role=agent.role,
            station_id=st.station_id,
            started_at=now,
            expires_at=now + timedelta(hours=AGENT_SESSION_HOURS),
        )
    with counted_if_unsaved(st, agent_id) as unsaved, st.write():
        agent = Agent.get_by_id(agent_id)
        failures = agent.failed_pins + unsaved + 1
        body = {"agent": agent_id, "failures": failures, "locked": False}
        last_supervisor = _last_supervisor(agent)
        if failures >= tries and last_supervisor:
            body["wait_seconds"] = start_wait(st, _wait_key(agent_id), failures - tries)
        else:
            body["locked"] = failures >= tries
        Agent.update(failed_pins=failures, locked=body["locked"]).where(Agent.agent_id == agent_id).execute()
        append_entry(st, EntryType.AGENT_PIN_FAILED, now, body)
        if body["locked"]:
            end_agent_sessions(st, agent_id)
    if body["locked"]:
        raise errors.AgentLocked()
    if "wait_seconds" in body:
        raise waiting_error(st, errors.AgentWaiting, body["wait_seconds"])
    if last_supervisor:
        raise errors.WrongSupervisorPin(remaining=tries - failures)
    raise errors.WrongAgentPin(remaining=tries - failures)


def _last_supervisor(agent: Agent) -> bool:
    """Whether ``agent`` is a supervisor and no other supervisor of the station is unlocked."""
    return agent.role == "supervisor" and not Agent.select().where(
        (Agent.role == "supervisor") & (Agent.agent_id != agent.agent_id) & (Agent.locked == False)  # noqa: E712
    ).exists()


# -- wrong tries that cannot be saved (a full disk) ------------------------------------------------------------
@contextmanager
def counted_if_unsaved(st: Station, key: str) -> Iterator[int]:
    """Around the write that records a wrong PIN (or unlock code) of ``key``: gives the earlier wrong tries that
    could not be saved, to add to the saved count; when this one cannot be saved either (``StorageFull``), it is
    counted in memory (``Station.unsaved_failures``) and the refusal goes on. Without this, a full disk would
    let anyone try PINs for ever: each wrong one refused as "storage full", the right one let in."""
    try:
        yield st.unsaved_failures.get(key, 0)
    except errors.StorageFull:
        st.unsaved_failures[key] = st.unsaved_failures.get(key, 0) + 1
        raise
    st.unsaved_failures.pop(key, None)  # saved now, with the earlier ones


def refuse_past_unsaved_limit(st: Station, key: str, saved: int, limit: int) -> None:
    """``StorageFull`` before a PIN (or code) of ``key`` is checked, when wrong tries that could not be saved
    bring it to the ``limit`` that would lock (or start a wait) while the storage is still full: no lock can be
    written, so no more tries until there is room again (then the next wrong one is saved with them all and locks).
    A restart forgets the unsaved tries (it takes minutes on the device)."""
    unsaved = st.unsaved_failures.get(key, 0)
    if unsaved and saved + unsaved >= limit and storage_full(st):
        raise errors.StorageFull()


# -- waiting after wrong PINs (the last supervisor) or wrong unlock codes -----------------------------------------
#: The first wait, doubled after each further failure up to ``MAX_WAIT_SECONDS``: a person who mistyped waits a
#: minute; a guesser gets about twenty tries a day, each journaled and sent to the bank.
FIRST_WAIT_SECONDS = 60
MAX_WAIT_SECONDS = 4 * 3600


def wait_seconds(extra_failures: int) -> int:
    """How long to wait after the first failure past the limit (0), the next (1), ...: 1, 2, 4 ... minutes, at
    most ``MAX_WAIT_SECONDS``."""
    return min(FIRST_WAIT_SECONDS * 2 ** min(extra_failures, 20), MAX_WAIT_SECONDS)


def _wait_key(agent_id: str) -> str:
    return f"pin_wait:{agent_id}"


def start_wait(st: Station, key: str, extra_failures: int) -> int:
    """Start (or start again) the wait kept as setting ``key``, measured on the boot clock; its length in seconds."""
    seconds = wait_seconds(extra_failures)
    boot, since_boot = st.boot_clock()
    st.set_setting(key, {"boot": boot, "until": since_boot + seconds, "seconds": seconds})
    return seconds


def seconds_left(st: Station, key: str) -> int:
    """Seconds left of the wait kept as setting ``key`` (0: none). Measured on the boot clock, so setting the date
    forward does not shorten it; after a reboot the time the device was off is unknown, so the wait starts over."""
    wait = st.setting(key)
    if not wait:
        return 0
    boot, since_boot = st.boot_clock()
    if wait.get("boot") != boot:
        with st.write():
            st.set_setting(key, {"boot": boot, "until": since_boot + wait["seconds"], "seconds": wait["seconds"]})
        return int(wait["seconds"])
    return max(0, math.ceil(wait["until"] - since_boot))


def pin_wait(st: Station, agent_id: str) -> int:
    """Seconds before ``agent_id`` may type a PIN again (0: now)."""
    return seconds_left(st, _wait_key(agent_id))


def waiting_error(st: Station, error: type[errors.StationError], seconds: int) -> errors.StationError:
    """``error`` saying how long to wait, in minutes, and until when on the station's clock (HH:MM)."""
    until = (st.now() + timedelta(seconds=seconds)).astimezone(st.timezone)
    return error(minutes=math.ceil(seconds / 60), time=until.strftime("%H:%M"))


def refuse_while_waiting(st: Station, agent_id: str) -> None:
    """``AgentWaiting`` while the agent's wait after wrong PINs lasts."""
    if seconds := pin_wait(st, agent_id):
        raise waiting_error(st, errors.AgentWaiting, seconds)


def needs_unlock(st: Station, agent: Agent) -> bool:
    """Whether wrong PINs locked ``agent`` or made them wait."""
    return bool(agent.locked) or agent.failed_pins >= st.policy["agent_pin_tries"]


# -- unlocking ----------------------------------------------------------------------------------------------------
def record_unlock(st: Station, agent_id: str, by: str, **fields) -> Receipt:
    """Unlock ``agent_id`` (locked, or waiting after wrong PINs) and journal who did it; inside the caller's write
    transaction. ``ClockNotSet``/``ClockWrong``, ``AgentUnknown``, ``AgentNotLocked`` (nothing written)."""
    refuse_wrong_clock(st)
    agent = Agent.get_or_none(Agent.agent_id == agent_id)
    if agent is None:
        raise errors.AgentUnknown()
    if not needs_unlock(st, agent):
        raise errors.AgentNotLocked()
    Agent.update(failed_pins=0, locked=False).where(Agent.agent_id == agent_id).execute()
    st.delete_setting(_wait_key(agent_id))
    entry = append_entry(st, EntryType.AGENT_UNLOCKED, st.now(), {"agent": agent_id, "by": by, **fields})
    return entry_receipt(entry)


@bound_station
def unlock_agent(st: Station, supervisor: AgentSession, agent_id: str) -> Receipt:
    """A supervisor unlocks an agent locked (or made to wait) by wrong PINs (journaled)."""
    with st.write():
        check_session(st, supervisor)
        if supervisor.role != "supervisor":
            raise errors.SupervisorRequired()
        return record_unlock(st, agent_id, "supervisor", supervisor=supervisor.agent_id)


@bound_station
def technician_unlock(st: Station, agent_id: str) -> Receipt:
    """The technician, at the device's command line, unlocks an agent (journaled as ``by`` technician)."""
    with st.write():
        return record_unlock(st, agent_id, "technician")


def session_current(st: Station, session: AgentSession) -> bool:
    """True while the session is this station's and the clock reads between its start and its end. A clock earlier
    than the start (by more than ``CLOCK_TOLERANCE``) was set back: the session ends, as at its end, so that
    setting the clock back never stretches a session."""
    now = st.now()
    return session.station_id == st.station_id and session.started_at - CLOCK_TOLERANCE <= now < session.expires_at


def check_session(st: Station, session: AgentSession | None) -> None:
    """Refuse an ended, foreign or locked-out agent session (step 1 of every operation)."""
    if session is None or not session_current(st, session):
        raise errors.AgentSessionInvalid()
    row = st.db.execute_sql("SELECT locked FROM agent WHERE agent_id = ?", (session.agent_id,)).fetchone()
    if row is None or row[0]:
        raise errors.AgentSessionInvalid()


# -- sessions bound to the station ----------------------------------------------------------------------------
def bind_session(st: Station, session: AgentSession) -> str:
    """Record ``session`` at the station and return its id, which the UI's cookie carries: a cookie is honoured only
    while its record is here (``session_bound``), so logging out, an idle logout or a lockout (``unbind_session``,
    ``end_agent_sessions``) ends it for every copy of the cookie. Records of sessions past their end are cleared
    here (one whose clock was set back ends at its next request: ``session_current``)."""
    sid = secrets.token_urlsafe(24)
    now = st.now()
    record = {"agent_id": session.agent_id, "started_at": utc_text(session.started_at),
              "expires_at": utc_text(session.expires_at)}
    try:
        with st.write():
            for key, bound in _bound_sessions(st):
                if now >= bound["expires_at"]:
                    st.delete_setting(key)
            st.set_setting(SESSION_KEY_PREFIX + sid, record)
    except errors.StorageFull:
        # No room to save it (``station.storage``): this process keeps it in memory, so the agent can still log in
        # to look at and reprint receipts and to sync; a restart forgets it (the agent logs in again).
        st.unsaved_sessions[SESSION_KEY_PREFIX + sid] = record
    return sid


def session_bound(st: Station, sid: str | None, agent_id: str) -> bool:
    """True while the station holds the record of session ``sid`` for ``agent_id`` (``bind_session``)."""
    if not (isinstance(sid, str) and sid):
        return False
    if SESSION_KEY_PREFIX + sid in st.ended_sessions:
        return False
    record = st.setting(SESSION_KEY_PREFIX + sid) or st.unsaved_sessions.get(SESSION_KEY_PREFIX + sid)
    return isinstance(record, dict) and record.get("agent_id") == agent_id


def unbind_session(st: Station, sid: str | None) -> None:
    """Forget the record of session ``sid``: every copy of its cookie stops working. With no room to delete the
    record, this process keeps the session ended in memory (``Station.ended_sessions``): a full disk must not keep
    a logged-out session, or a copy of its cookie, alive."""
    if isinstance(sid, str) and sid:
        st.unsaved_sessions.pop(SESSION_KEY_PREFIX + sid, None)
        try:
            with st.write():
                st.delete_setting(SESSION_KEY_PREFIX + sid)
        except errors.StorageFull:
            st.ended_sessions.add(SESSION_KEY_PREFIX + sid)


def end_agent_sessions(st: Station, agent_id: str) -> None:
    """Forget every session of ``agent_id`` (a lockout; a PIN change). Runs in the caller's write, if any."""
    for key, record in list(st.unsaved_sessions.items()):
        if record["agent_id"] == agent_id:
            del st.unsaved_sessions[key]
    for key, record in _bound_sessions(st):
        if record["agent_id"] == agent_id:
            st.delete_setting(key)


def end_all_agent_sessions(st: Station) -> None:
    """Forget every agent's session (a clock correction: each was started by a clock that was wrong, and is
    measured by it). Runs in the caller's write, if any; another process's sessions end at their next request,
    their records gone (``session_bound``)."""
    st.unsaved_sessions.clear()
    for key, _ in _bound_sessions(st):
        st.delete_setting(key)


def _bound_sessions(st: Station) -> list[tuple[str, dict]]:
    rows = st.db.execute_sql("SELECT key, value FROM setting WHERE key LIKE ?", (SESSION_KEY_PREFIX + "%",))
    sessions = []
    for key, value in rows.fetchall():
        record = json.loads(value)
        record["started_at"], record["expires_at"] = parse_utc(record["started_at"]), parse_utc(record["expires_at"])
        sessions.append((key, record))
    return sessions


@bound_station
def identify_customer(st: Station, number: str, kind: str = "card") -> Customer:
    """Find a customer by bank card number (Luhn-checked) or passbook number, refusing a locked or closed one.

    Every flow that identifies a customer (withdrawal, deposit, transfer, balance enquiry, a bill paid from the
    account) stops here, before an amount is typed: a locked customer (``CustomerLocked``) or a closed account
    (``CustomerNotActive``) is told so at the first step, not after the customer has said what they want.

    A deposit is refused too. A closed account takes no money at all. A locked one would at a branch teller, who
    checks the customer's ID card instead of the PIN (a PIN lock blocks only what the PIN authorises); here the
    customer's PIN is the only proof that the cash goes into their own account and not a stranger's (an offline
    deposit cannot be pulled back once the day is closed), and a locked customer's PIN can no longer be checked.
    So the agent sends the customer to the branch, where the lock is lifted and the deposit taken."""
    number = re.sub(r"\s+", "", str(number or ""))
    if kind == "card":
        if not _CARD_RE.match(number) or not luhn.is_valid(number):
            raise errors.InvalidCardNumber()
        customer = Customer.get_or_none(Customer.card_number == number)
    elif kind == "passbook":
        if not _PASSBOOK_RE.match(number):
            raise errors.InvalidPassbookNumber()
        customer = Customer.get_or_none(Customer.passbook_number == number)
    else:
        raise ValueError(f"unknown identifier kind {kind!r}")
    if customer is None:
        raise errors.CustomerNotFound()
    refuse_inactive(customer)
    return customer


def refuse_inactive(customer: Customer) -> None:
    """Refuse a locked or closed customer."""
    if customer.status == "locked":
        raise errors.CustomerLocked()
    if customer.status != "active":
        raise errors.CustomerNotActive()


@bound_station
def authenticate_customer(st: Station, session: AgentSession, customer: Customer, pin: str) -> CustomerAuth:
    """Check the customer's PIN. Three wrong PINs lock the customer; each failure is journaled."""
    check_session(st, session)
    customer = Customer.get_by_id(customer.id)
    refuse_inactive(customer)
    tries = st.policy["customer_pin_tries"]
    key = f"customer:{customer.id}"
    refuse_past_unsaved_limit(st, key, customer.pin_failures, tries)
    now = st.now()
    if check_pin(pin, customer.pin_verifier):
        # The slow hash ran outside any lock: parallel guesses may have locked the customer meanwhile.
        with st.write():
            customer = Customer.get_by_id(customer.id)
            refuse_inactive(customer)
            if customer.pin_failures:
                Customer.update(pin_failures=0).where(Customer.id == customer.id).execute()
        st.unsaved_failures.pop(key, None)
        return CustomerAuth(customer.id, customer.account_id, session.agent_id, now)
    with counted_if_unsaved(st, key) as unsaved, st.write():
        customer = Customer.get_by_id(customer.id)
        failures = customer.pin_failures + unsaved + 1
        locked = failures >= tries
        Customer.update(pin_failures=failures, status="locked" if locked else customer.status).where(
            Customer.id == customer.id
        ).execute()
        append_entry(
            st,
            EntryType.CUSTOMER_PIN_FAILED,
            now,
            {"account": customer.account_id, "agent": session.agent_id, "failures": failures, "locked": locked},
        )
    if locked:
        raise errors.CustomerLocked()
    raise errors.WrongCustomerPin(remaining=tries - failures)


def authorised_customer(st: Station, session: AgentSession, auth: CustomerAuth | None) -> Customer:
    """The customer a recent PIN check authorises for this agent, read again (step 2 inside the write)."""
    if auth is None or auth.agent_id != session.agent_id:
        raise errors.CustomerPinRequired()
    # A clock set back since the PIN check ends it, as its end does: nothing measured in time may stretch.
    if not -CLOCK_TOLERANCE <= st.now() - auth.verified_at <= timedelta(seconds=st.policy["customer_auth_seconds"]):
        raise errors.CustomerPinRequired()
    customer = next(iter(Customer.raw("SELECT * FROM customer WHERE id = ?", auth.customer_id)), None)
    if customer is None:
        raise errors.CustomerNotFound()
    refuse_inactive(customer)
    return customer
