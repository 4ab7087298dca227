"""What the sync trials share: a station recording a burst of operations, syncing until the bank holds everything
despite the faults, and the checks that the bank then holds exactly the station's journal, applied once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from sync_support import journal, server_db

from station import agents, business_day, operations, receipts
from station.db import Agent, Customer
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN
from station.protocol.tokens import unverified_payload
from station.sync import SyncError, sync_once
from sync_server.checks import check_ledger
from sync_server.db import Entry, Posting

#: The folder of the test helpers (``tests``): on a server process's path, for ``reliability.dying_server``.
TESTS = Path(__file__).parent.parent
#: The demo customers of ST-0001 the burst serves (downlinked at enrollment).
ACCOUNTS = ("DM00010001", "DM00010002", "DM00010003")
DEPOSIT_FEN = 1_000
BILL_FEN = 500
BILLER = "ELEC-SGCC"


class ShopCounter:
    """Records deposits and bill payments at an enrolled station: the agent logged in and the customers
    authenticated once (each costs a scrypt), the day opened."""

    def __init__(self, st):
        self.st = st
        with st.bound():
            if Agent.select().count() == 0:
                for agent_id, name, role, pin in DEMO_AGENTS:
                    agents.add_agent(st, agent_id, name, role, pin)
            self.session = agents.login_agent(st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
            if business_day.current_day(st) is None:
                business_day.open_day(st, self.session, {"10000": 100})
            people = [Customer.get(Customer.account_id == account) for account in ACCOUNTS]
        self.auths = [agents.authenticate_customer(st, self.session, person, DEMO_CUSTOMER_PIN) for person in people]
        self.recorded = 0

    def record(self, count: int) -> None:
        """``count`` more operations: two deposits to one bill payment, the customers in turn."""
        for _ in range(count):
            self.recorded += 1
            if self.recorded % 3:
                auth = self.auths[self.recorded % len(self.auths)]
                operations.deposit_cash(self.st, self.session, auth, DEPOSIT_FEN, receipts.new_txn_id())
            else:
                operations.pay_bill(self.st, self.session, None, BILLER, "1234567890", BILL_FEN,
                                    receipts.new_txn_id())


def retryable_failure(exc: SyncError) -> None:
    """A failed sync must be one worth retrying; one the bank's rate limit refused (``busy``) waits what its
    ``Retry-After`` asked, as the scheduler's next run would (the trials skip the backoff inside a sync, so a long
    trial meets the limits of docs/operations.md, "Rate limits")."""
    assert exc.retryable, f"a fault left the station with a failure it does not retry: {exc!r}"
    if exc.reason == "busy":
        time.sleep(max(1.0, getattr(exc, "retry_after", 0.0)))


def sync_until_converged(st, *, rounds: int = 200, pause: float = 0.0) -> int:
    """Sync until the outbox is empty, whatever fails on the way (every failure must be one worth retrying);
    returns how many syncs failed. The backoff between a sync's attempts is skipped; ``pause`` between syncs."""
    failed = 0
    for _ in range(rounds):
        try:
            if sync_once(st, sleep=lambda seconds: None).pending == 0:
                return failed
        except SyncError as exc:
            retryable_failure(exc)
            failed += 1
        time.sleep(pause)
    raise AssertionError(f"the station did not converge in {rounds} syncs ({failed} failed)")


def assert_bank_holds_the_journal(st) -> int:
    """The bank's entries of the station are its journal byte for byte, each applied once, and the ledger checks
    pass (every entry's postings sum to zero, balances equal their postings); returns the number of entries."""
    own = journal(st)
    server_db()
    held = list(Entry.select(Entry.seq, Entry.token).where(Entry.station_id == st.station_id)
                .order_by(Entry.seq).tuples())
    assert held == own
    assert check_ledger() == []
    # Applied once: the customers' postings of this station are exactly the deposits the journal holds.
    deposits = sum(1 for _, token in own if unverified_payload(token)["type"] == "deposit")
    posted = sum(p.amount_fen for p in Posting.select().where(
        (Posting.station_id == st.station_id) & Posting.account_id.in_(ACCOUNTS)))
    assert posted == -deposits * DEPOSIT_FEN
    return len(own)



def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """The sync server's WSGI ``app`` (``module:name``) in a process of its own on a fixed loopback port, under
    ``kind``: ``gunicorn`` (``workers`` worker processes) or ``waitress`` (one process, as ``sync-server serve
    --dev``). ``env``: added to this process's environment (``DATABASE_URL``, ``SYNC_SERVER_KEYS_DIR``, ...)."""

    def __init__(self, kind: str, env: dict, *, app: str = "sync_server.wsgi:app", workers: int = 1):
        self.kind = kind
        self.app = app
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        pythonpath = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
        self.env = {**os.environ, **env, "PYTHONPATH": pythonpath}
        self.process: subprocess.Popen | None = None
        self.errors = ""
        self.start()

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it answers its health check."""
        if self.kind == "gunicorn":
            command = [sys.executable, "-m", "gunicorn", "--workers", str(self.workers), "--bind",
                       f"127.0.0.1:{self.port}", "--no-control-socket", self.app]
        else:
            command = [sys.executable, "-m", "waitress", "--host=127.0.0.1", f"--port={self.port}", "--threads=4",
                       self.app]
        self.process = subprocess.Popen(command, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited at start: {self.process.stderr.read()}"
            try:
                if requests.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise AssertionError(f"no healthy server at {self.url}")

    def wait_killed(self) -> None:
        """The server process died by SIGKILL: keep what it wrote to stderr."""
        assert self.process.wait(timeout=10) == -9
        self.errors += self.process.stderr.read()
        self.process.stderr.close()

    def stop(self) -> str:
        """Stop the server; everything it wrote to stderr."""
        self.process.terminate()
        _, errors = self.process.communicate(timeout=30)
        self.errors += errors
        return self.errors
