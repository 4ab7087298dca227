"""Shared fixtures: a fresh station on a temporary data folder with a controllable clock."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import flask
import jinja2
import pytest

from station import agents, business_day
from station.context import Station
from station.demo import DEMO_AGENTS, load_demo_customers
from station.protocol import pins
from station.provision import init_station
from sync_server import bank_users

# The suite makes agents, logs them in and logs bank users in thousands of times: at the product's scrypt costs
# (PINs 2**14, passwords 2**15, tens of milliseconds each) that was a sixth of its CPU. Verifiers and hashes the
# tests make cost 2**8; each names its own cost, so checking them runs the same code. The product's costs are
# checked in a fresh interpreter (tests/test_secret_costs.py).
pins.DEFAULT_LOG2_N = 8
bank_users.PASSWORD_METHOD = "scrypt:256:8:1"

# Each test's app would compile every template again: compiled once, kept in jinja2's own file cache (under the
# temporary folder, per user; each load is checked against the template's checksum by jinja2).
flask.Flask.jinja_options = {**flask.Flask.jinja_options, "bytecode_cache": jinja2.FileSystemBytecodeCache()}


class FakeClock:
    """A clock the test moves by hand (the station never trusts wall time anyway)."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


def wall_clock() -> FakeClock:
    """A clock at the real time, whole seconds (the bank's checks compare with its own), which the test may move."""
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def clock():
    # 07:40 in Beijing on pension day.
    return FakeClock(datetime(2026, 11, 2, 23, 40, tzinfo=UTC))


@pytest.fixture(scope="session")
def station_templates(tmp_path_factory):
    """Data folders of freshly made stations, built once per test process (xdist worker) and copied per test.

    Making a station costs a signing key, the migrations and two agents' scrypt verifiers (about a quarter of a
    second); copying the closed folder costs a few milliseconds. The copy is byte for byte what ``init_station``
    and ``load_demo_customers`` would have written at that moment, except that stations with the same id (and
    customers, and start time) in one test process share their signing key and their agents' salts.
    """
    root = tmp_path_factory.mktemp("station-templates")
    built: dict[tuple, Path] = {}

    def template(station_id: str, customers: int, clock: FakeClock) -> Path:
        key = (station_id, customers, clock.now)
        if key not in built:
            folder = root / f"{len(built)}-{station_id}"
            st = init_station(folder, station_id, clock=FakeClock(clock.now))
            load_demo_customers(st, count=customers)
            st.close()
            built[key] = folder
        return built[key]

    return template


@pytest.fixture
def make_station(tmp_path, clock, station_templates):
    """Build a station with demo customers: ``make_station(station_id, customers)``; closed after the test."""
    made = []

    def make(station_id: str = "ST-0001", customers: int = 20):
        if isinstance(clock, FakeClock):
            if (tmp_path / station_id / "config.json").exists():
                raise FileExistsError(f"{tmp_path / station_id} already holds a station")
            shutil.copytree(station_templates(station_id, customers, clock), tmp_path / station_id,
                            dirs_exist_ok=True)
            st = Station(tmp_path / station_id, clock=clock)
        else:  # a test's own clock: the station is made from scratch
            st = init_station(tmp_path / station_id, station_id, clock=clock)
            load_demo_customers(st, count=customers)
        made.append(st)
        return st

    yield make
    for st in made:
        st.close()


@pytest.fixture
def station(make_station):
    """The test's station, bound in the test's own thread so the test can query the models directly."""
    st = make_station()
    with st.bound():
        yield st


@pytest.fixture
def agent(station):
    agent_id, _, _, pin = DEMO_AGENTS[0]
    return agents.login_agent(station, agent_id, pin)


@pytest.fixture
def supervisor(station):
    agent_id, _, _, pin = DEMO_AGENTS[1]
    return agents.login_agent(station, agent_id, pin)


@pytest.fixture
def open_drawer(station, agent):
    """The day opened with 30,000 yuan in hundreds."""
    business_day.open_day(station, agent, {"10000": 300})
    return station


@pytest.fixture
def ui_app(station):
    """The touchscreen app on the test station (CSRF off here; tests/test_ui_security.py turns it on)."""
    from station.app import create_app

    return create_app({"STATION": station, "TESTING": True, "WTF_CSRF_ENABLED": False, "SECRET_KEY": "test"})


@pytest.fixture
def ui_client(ui_app):
    return ui_app.test_client()


@pytest.fixture
def printed(station, monkeypatch):
    """Receipts print through the real ``station.printing`` to python-escpos's Dummy printer.

    Returns the list of ``(seq, duplicate, bytes)`` jobs, in order.
    """
    from station import printing

    station.config["printer"] = {"kind": "dummy"}
    jobs = []
    real = printing.print_receipt

    def print_and_keep(st, receipt, *, duplicate=False):
        job = real(st, receipt, duplicate=duplicate)
        jobs.append((receipt.seq, duplicate, job.output))
        return job

    monkeypatch.setattr(printing, "print_receipt", print_and_keep)
    return jobs


# The sync server fixtures (server over SQLite and, with TEST_DATABASE_URL, PostgreSQL): tests/sync_support.py;
# recon's clean history, built once per test process and copied per test: tests/recon_support.py.
from recon_support import history_templates  # noqa: E402, F401
from sync_support import bank_templates, database_url, pg_database_url, server, slow_bank  # noqa: E402, F401

# Debian's Chromium for the browser tests, once per module: tests/ui_browser_support.py.
from ui_browser_support import browser  # noqa: E402, F401
