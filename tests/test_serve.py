"""``station serve``: the one entry point that starts the background sync, and only for an enrolled station."""

from __future__ import annotations

import time

from click.testing import CliRunner
from sync_support import enrolled_station

from station import agents, business_day, operations, receipts
from station import cli as station_cli
from station.db import Customer
from station.demo import DEMO_CUSTOMER_PIN, ensure_demo_agents


def serve_without_blocking(monkeypatch):
    served = {}

    def capture(app, host, port):
        served.update(app=app, host=host, port=port)
        # While "serving", the UI's sync-now hook must make the background job reach the bank.
        hook = app.extensions.get("sync_now")
        served["hooked"] = hook is not None
        if hook is not None:
            st = app.extensions["station"]
            before = st.setting("acked_seq", 0)
            hook()
            deadline = time.monotonic() + 20
            while st.setting("acked_seq", 0) == before and time.monotonic() < deadline:
                time.sleep(0.05)
            served["acked"] = st.setting("acked_seq", 0)

    monkeypatch.setattr(station_cli, "serve_app", capture)
    return served


def test_serve_without_enrollment_runs_no_sync(station, monkeypatch):
    served = serve_without_blocking(monkeypatch)
    result = CliRunner().invoke(station_cli.cli, ["serve", "--data-dir", str(station.data_dir)])
    assert result.exit_code == 0, result.output
    assert served["hooked"] is False and served["host"] == "127.0.0.1" and served["port"] == 8080
    assert "Not enrolled" in result.output


def test_serve_syncs_in_the_background_and_on_request(server, tmp_path, clock, monkeypatch):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        ensure_demo_agents(st)
        agent = agents.login_agent(st, "A01", "1357")
        business_day.open_day(st, agent, {"10000": 100})
        customer = Customer.select().where(Customer.card_number.is_null(False)).first()
        auth = agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
        receipt = operations.withdraw_cash(st, agent, auth, "200", receipts.new_txn_id())
        st.close()
        served = serve_without_blocking(monkeypatch)
        result = CliRunner().invoke(station_cli.cli, ["serve", "--data-dir", str(st.data_dir)])
        assert result.exit_code == 0, result.output
        assert "in the background" in result.output
        assert served["hooked"] is True
        assert served["acked"] >= receipt.seq
