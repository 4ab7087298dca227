"""Shared fixtures: a fresh station on a temporary data folder with a controllable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from station import services
from station.context import init_station
from station.demo import DEMO_AGENTS, load_demo_customers


class FakeClock:
    """A clock the test moves by hand (the station never trusts wall time anyway)."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock():
    # 07:40 in Beijing on pension day.
    return FakeClock(datetime(2026, 11, 2, 23, 40, tzinfo=UTC))


@pytest.fixture
def station(tmp_path, clock):
    st = init_station(tmp_path / "station", "ST-0001", clock=clock)
    load_demo_customers(st, count=20)
    yield st
    st.close()


@pytest.fixture
def agent(station):
    agent_id, _, _, pin = DEMO_AGENTS[0]
    return services.login_agent(station, agent_id, pin)


@pytest.fixture
def supervisor(station):
    agent_id, _, _, pin = DEMO_AGENTS[1]
    return services.login_agent(station, agent_id, pin)


@pytest.fixture
def open_drawer(station, agent):
    """The day opened with 30,000 yuan in hundreds."""
    services.open_day(station, agent, {"10000": 300})
    return station


# The sync server fixtures (server over SQLite and, with TEST_DATABASE_URL, PostgreSQL): tests/sync_support.py.
from sync_support import database_url, pg_database_url, server  # noqa: E402, F401
