"""Downlinks carry only what changed since the downlink the station applied (``sync_server.downlink_versions``).

Over real HTTP against the real server, on SQLite and on PostgreSQL (``TEST_DATABASE_URL``): an unchanged sync
carries no customer; a change comes down alone; an answer lost on the way is sent again; a customer whose hold and
balance came back to the same values still comes down with the new seq; a customer no longer served is removed; a
station that asks (after a restore), a bank whose database went back, and an older station get everything.
"""

from __future__ import annotations

import pytest
import requests
from sync_support import enrolled_station, open_counter, opened_downlinks, server_db

from station import agents, operations, receipts
from station.db import BlockedPayee, Customer, JournalEntry
from station.demo import DEMO_CUSTOMER_PIN
from station.journal import chain_value_before
from station.limits import offline_available
from station.protocol import acks, envelope, key_codecs
from station.protocol.tokens import b64url_decode
from station.sync import ENCRYPTION_KEY_FILE, ServerUnreachable, sync_once
from sync_server.admin import block_payee, demo_customer_rows, import_customers
from sync_server.db import Customer as BankCustomer
from sync_server.db import DownlinkState, HomeStation, ServerSetting

ACCOUNT = "DM00010003"  # home only at ST-0001


class Sizes(requests.Session):
    """Keeps the bytes of every answer to a batch."""

    def __init__(self):
        super().__init__()
        self.answer_bytes: list[int] = []

    def post(self, url, data=None, **kwargs):
        response = super().post(url, data=data, **kwargs)
        if url.endswith("/batches"):
            self.answer_bytes.append(len(response.content))
        return response


@pytest.fixture
def downlinks(monkeypatch) -> list[dict]:
    """The downlinks the station opens from now on, in order."""
    return opened_downlinks(monkeypatch)


def customers_in(downlink: dict) -> list[str]:
    return [customer["account_id"] for customer in downlink.get("customers", [])]


def station_customer(st, account_id: str = ACCOUNT) -> Customer:
    with st.bound():
        return Customer.get(Customer.account_id == account_id)


@pytest.mark.slow
def test_an_unchanged_sync_of_2000_customers_carries_none_and_fits_in_a_kilobyte(server, tmp_path, clock, downlinks):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    server_db()
    rows, payees = demo_customer_rows(["ST-0001"], per_station=2000)
    import_customers(rows, payees)
    sync_once(st)
    assert len(customers_in(downlinks[-1])) == 2000 and "since" in downlinks[-1]  # every one is new
    sizes = Sizes()
    sync_once(st, http=sizes)
    unchanged = downlinks[-1]
    assert unchanged["since"] == st.setting("downlink_version") - 1
    assert not {"customers", "customers_removed", "policy", "billers", "blocked_payees"} & set(unchanged)
    assert sizes.answer_bytes[-1] < 1024
    with st.bound():
        assert Customer.select().where(Customer.allowance_fen > 0).count() == 2000


def test_each_change_at_the_bank_comes_down_alone(server, tmp_path, clock, downlinks):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    sync_once(st)
    server_db()
    BankCustomer.update(status="closed").where(BankCustomer.account_id == ACCOUNT).execute()
    sync_once(st)
    assert customers_in(downlinks[-1]) == [ACCOUNT] and set(downlinks[-1]) & {"policy", "billers"} == set()
    closed = station_customer(st)
    assert (closed.status, closed.allowance_fen) == ("closed", 0)

    block_payee("6222000099998888", "scam")
    sync_once(st)
    assert "customers" not in downlinks[-1] and downlinks[-1]["blocked_payees"] == ["6222000099998888"]
    with st.bound():
        assert [row.account for row in BlockedPayee.select()] == ["6222000099998888"]

    policy = ServerSetting.get_by_id("policy")
    ServerSetting.update(value={**policy.value, "station": {**policy.value.get("station", {}),
                                                            "fraud_warning_fen": 123_400}}).where(
        ServerSetting.key == "policy").execute()
    sync_once(st)
    assert set(downlinks[-1]) == {"v", "acked_seq", "server_time", "since", "policy"}
    assert st.policy["fraud_warning_fen"] == 123_400
    sync_once(st)
    assert set(downlinks[-1]) == {"v", "acked_seq", "server_time", "since"}


def test_an_answer_lost_on_the_way_is_sent_again(server, tmp_path, clock, downlinks):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    sync_once(st)
    applied = st.setting("downlink_version")
    server_db()
    BankCustomer.update(status="closed").where(BankCustomer.account_id == ACCOUNT).execute()

    class AnswerLost(requests.Session):
        def post(self, url, data=None, **kwargs):
            super().post(url, data=data, **kwargs)  # the bank applies it and answers; the answer never arrives
            raise requests.ConnectionError("reset on the way back")

    with pytest.raises(ServerUnreachable):
        sync_once(st, http=AnswerLost(), attempts=1)
    assert st.setting("downlink_version") == applied and station_customer(st).status == "active"
    sync_once(st)
    assert downlinks[-1]["since"] == applied and customers_in(downlinks[-1]) == [ACCOUNT]
    assert station_customer(st).status == "closed"


def test_a_customer_whose_hold_and_balance_came_back_still_comes_down_with_the_new_seq(server, tmp_path, clock,
                                                                                      downlinks):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    agent, _ = open_counter(st)
    sync_once(st)
    with st.bound():
        auth = agents.authenticate_customer(st, agent, station_customer(st), DEMO_CUSTOMER_PIN)
        operations.withdraw_cash(st, agent, auth, 30_000, receipts.new_txn_id())
        operations.deposit_cash(st, agent, auth, 30_000, receipts.new_txn_id())
        assert offline_available(st, station_customer(st)) == 70_000
    sync_once(st)
    assert customers_in(downlinks[-1]) == [ACCOUNT]
    customer = station_customer(st)
    assert customer.allowance_seq == st.setting("acked_seq")
    with st.bound():
        assert offline_available(st, customer) == 100_000
    sync_once(st)
    assert "customers" not in downlinks[-1]


def test_a_customer_no_longer_served_here_is_removed(server, tmp_path, clock, downlinks):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    server_db()
    HomeStation.delete().where((HomeStation.account_id == ACCOUNT) & (HomeStation.station_id == "ST-0001")).execute()
    sync_once(st)
    assert downlinks[-1]["customers_removed"] == [ACCOUNT] and "customers" not in downlinks[-1]
    assert station_customer(st).allowance_fen == 0
    with st.bound():
        assert Customer.select().where(Customer.allowance_fen > 0).count() == 19
    sync_once(st)
    assert "customers_removed" not in downlinks[-1]


def test_a_station_that_asks_and_a_bank_whose_database_went_back_get_everything(server, tmp_path, clock, downlinks):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    st.delete_setting("downlink_version")  # as `station restore` does
    sync_once(st)
    assert "since" not in downlinks[-1] and len(customers_in(downlinks[-1])) == 20
    assert {"policy", "billers", "blocked_payees"} <= set(downlinks[-1])
    applied = st.setting("downlink_version")

    server_db()
    DownlinkState.update(version=1).where(DownlinkState.station_id == "ST-0001").execute()
    BankCustomer.update(status="closed").where(BankCustomer.account_id == ACCOUNT).execute()
    sync_once(st)
    # The station names a version the bank never made: everything, under a version newer than the station's.
    assert "since" not in downlinks[-1] and len(customers_in(downlinks[-1])) == 20
    assert st.setting("downlink_version") == applied + 1 and station_customer(st).status == "closed"


def test_an_older_station_gets_every_downlink_in_full(server, tmp_path, clock):
    """A batch without ``downlink_applied`` (a station of the release before): all customers, no ``since``."""
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        acked = st.setting("acked_seq")
        token = JournalEntry.get_by_id(acked).token
        prev = chain_value_before(st, acked)
    server_key = key_codecs.encryption_public_from_jwk(st.config["server"]["encryption_jwk"])
    station_key = key_codecs.encryption_private_from_text((st.data_dir / ENCRYPTION_KEY_FILE).read_text())
    for _ in range(2):
        sealed = envelope.seal_batch([(acked, token)], station_id="ST-0001", prev=prev, signer=st.signer_for(acked + 1),
                                     server_encryption_key=server_key)
        response = requests.post(f"{server.url}/api/v1/stations/ST-0001/batches", data=sealed.body,
                                 headers=sealed.headers, timeout=30)
        ack = acks.open_ack(response.json(), server_signing_jwk=st.config["server"]["signing_jwk"],
                            station_id="ST-0001", station_encryption_key=station_key)
        assert "since" not in ack.downlink and len(customers_in(ack.downlink)) == 20
        assert ack.request == acks.request_digest(sealed.body)
        assert len(b64url_decode(response.json()["downlink"])) > 1024
