"""A full disk: SQLITE_FULL and ENOSPC become "storage full" (a refusal on the screen, one line in the log), never a
500 or "cannot rollback"; the operation in progress leaves nothing half-written; new operations are refused while
reprints, the receipts list and sync go on; the station recovers when space is back, without a restart."""

from __future__ import annotations

import errno
import logging
import re
import sqlite3

import pytest
from peewee import OperationalError, fn
from storage_support import deposit_until_full, lift_database_limit, limit_database
from sync_support import enrolled_station, record_some
from ui_helpers import card_customer, english, login

from station import agents, business_day, errors, operations, printer, printing, receipts, storage, sync
from station.db import Agent, Customer, JournalEntry, Operation, PrintedReceipt, StationDatabase
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN
from station.device_state import DeviceState, device_state, refuse_new_operations
from station.journal import audit_journal
from station.storage import is_storage_full

STORAGE_FULL_ZH = "存储空间已满"
STORAGE_FULL_EN = "Storage is full"


def full_error() -> OperationalError:
    """What peewee raises for SQLITE_FULL: its OperationalError around sqlite3's."""
    try:
        raise sqlite3.OperationalError("database or disk is full")
    except sqlite3.OperationalError as exc:
        try:
            raise OperationalError(*exc.args) from exc
        except OperationalError as wrapped:
            return wrapped


@pytest.mark.parametrize(("exc", "full"), [
    (full_error(), True),
    (OSError(errno.ENOSPC, "No space left on device"), True),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
    (errors.StorageFull(), False),
    (OSError(errno.EIO, "Input/output error"), False),
    (OperationalError("database is locked"), False),
    (sqlite3.OperationalError("cannot rollback - no transaction is active"), False),
])
def test_what_counts_as_storage_full(exc, full):
    assert is_storage_full(exc) is full


def test_a_caught_full_error_keeps_its_cause():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise errors.StorageFull() from exc
    except errors.StorageFull as refusal:
        assert is_storage_full(refusal)


def test_a_transaction_sqlite_rolled_back_itself_keeps_its_error(tmp_path):
    # peewee's plain SqliteDatabase answers "cannot rollback - no transaction is active" here (issue 13).
    database = StationDatabase(str(tmp_path / "t.db"), pragmas={"journal_mode": "wal"})
    database.execute_sql("CREATE TABLE t (x TEXT)")
    pages = database.execute_sql("PRAGMA page_count").fetchone()[0]
    database.execute_sql(f"PRAGMA max_page_count = {pages}")
    for nested in (False, True):
        with pytest.raises(OperationalError) as raised:
            with database.atomic():
                database.execute_sql("INSERT INTO t VALUES ('kept?')")
                if nested:
                    with database.atomic():
                        database.execute_sql("INSERT INTO t VALUES (?)", ("x" * 50_000,))
                else:
                    database.execute_sql("INSERT INTO t VALUES (?)", ("x" * 50_000,))
        assert "database or disk is full" in str(raised.value)
        assert is_storage_full(raised.value)
        assert database.execute_sql("SELECT count(*) FROM t").fetchone()[0] == 0
    database.close()


def test_a_full_database_refuses_the_operation_whole_and_recovers(open_drawer, agent, caplog):
    st = open_drawer
    auth = agents.authenticate_customer(st, agent, card_customer(), DEMO_CUSTOMER_PIN)
    head_before = JournalEntry.select().count()
    limit_database(st)
    with caplog.at_level(logging.INFO, logger="station.storage"):
        handed_out = deposit_until_full(st, agent, auth)
        assert device_state(st) is DeviceState.STORAGE_FULL
        # Refused before any write from now on, in the core and for every kind of new operation.
        with pytest.raises(errors.StorageFull):
            refuse_new_operations(st)
        with pytest.raises(errors.StorageFull):
            business_day.close_day(st, agent, {"10000": 300})
    assert [r.levelname for r in caplog.records if "storage full" in r.message] == ["ERROR"]
    # Nothing half-written: every entry verifies, every operation row has its entry, the drawer adds up.
    assert audit_journal(st).problems == []
    entries = JournalEntry.select().count()
    assert entries == head_before + len(handed_out)
    assert {op.seq for op in Operation.select()} == {r.seq for r in handed_out}
    assert business_day.drawer_cash(st) == 30_000_00 + 1000 * len(handed_out)
    for receipt in handed_out:
        assert JournalEntry.get_by_id(receipt.seq).token == receipt.token

    lift_database_limit(st)
    with caplog.at_level(logging.INFO, logger="station.storage"):
        assert device_state(st) is DeviceState.READY
    assert any("storage space is back" in r.message for r in caplog.records)
    business_day.close_day(st, agent, {"10000": 300, "1000": len(handed_out)})
    assert audit_journal(st).problems == []


def test_too_little_free_space_refuses_before_any_write(open_drawer, agent, monkeypatch):
    st = open_drawer
    monkeypatch.setattr(storage, "free_bytes", lambda st: storage.RESERVE_BYTES - 1)
    assert device_state(st) is DeviceState.STORAGE_FULL
    entries = JournalEntry.select().count()
    with pytest.raises(errors.StorageFull):
        business_day.close_day(st, agent, {"10000": 300})
    assert JournalEntry.select().count() == entries
    monkeypatch.setattr(storage, "free_bytes", lambda st: storage.RESERVE_BYTES)
    assert device_state(st) is DeviceState.READY


# -- the screens ------------------------------------------------------------------------------------------
def test_the_screens_while_storage_is_full(ui_client, open_drawer, agent, printed, monkeypatch):
    st = open_drawer
    auth = agents.authenticate_customer(st, agent, card_customer(), DEMO_CUSTOMER_PIN)
    login(ui_client)
    limit_database(st)
    recorded = deposit_until_full(st, agent, auth)
    earlier = recorded[0].seq

    html = ui_client.get("/home").get_data(as_text=True)
    assert 'id="storage-full"' in html and STORAGE_FULL_ZH in html and "请联系技术员" in html
    assert '<meta http-equiv="refresh" content="10">' in html
    assert 'id="tile-withdrawal"' not in html and 'id="tile-receipts"' in html and 'id="tile-sync"' in html
    refused = ui_client.post("/op/withdrawal/start")
    assert refused.status_code == 507 and STORAGE_FULL_ZH in refused.get_data(as_text=True)
    assert ui_client.get("/health").json["state"] == "storage_full"
    # Receipts already recorded: listed, shown, printed and reprinted.
    assert f'id="open-{earlier}"' in ui_client.get("/receipts/").get_data(as_text=True)
    assert ui_client.get(f"/receipts/{earlier}").status_code == 200
    assert ui_client.post(f"/receipts/{earlier}/print").location == f"/receipts/{earlier}"
    assert printed[-1][:2] == (earlier, False)

    # A first print whose "printed" mark finds no room: the paper came out, and the next copy still says DUPLICATE.
    second = recorded[1].seq

    def no_room(*args, **kwargs):
        raise full_error()

    monkeypatch.setattr(PrintedReceipt, "insert", no_room)
    assert ui_client.post(f"/receipts/{second}/print").location == f"/receipts/{second}"
    assert ui_client.post(f"/receipts/{second}/print").location == f"/receipts/{second}"
    assert [job[:2] for job in printed[-2:]] == [(second, False), (second, True)]
    monkeypatch.undo()

    english(ui_client)
    html = ui_client.get("/home").get_data(as_text=True)
    assert "Storage is full: no new operations. Receipts and sync still work. Call the technician." in html
    refused = ui_client.post("/op/deposit/start")
    assert refused.status_code == 507 and "Storage is full: nothing was recorded" in refused.get_data(as_text=True)

    lift_database_limit(st)
    html = ui_client.get("/home").get_data(as_text=True)
    assert 'id="storage-full"' not in html and not re.search(r'id="tile-withdrawal"\s+disabled', html)
    assert ui_client.post("/op/withdrawal/start").status_code == 302


def test_a_write_outside_an_operation_that_finds_no_room_is_not_a_500(ui_client, open_drawer, monkeypatch):
    login(ui_client)

    def no_room(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    # The day screen reads the drawer; make any view fail the way a full disk would, outside the core.
    monkeypatch.setattr("station.ui.home.half_done_summary", no_room)
    answer = ui_client.get("/home")
    assert answer.status_code == 507 and STORAGE_FULL_ZH in answer.get_data(as_text=True)
    assert open_drawer.storage_full_since is not None


def test_a_spool_file_on_a_full_disk_is_storage_full_not_paper_out(open_drawer, agent, monkeypatch, caplog):
    st = open_drawer
    auth = agents.authenticate_customer(st, agent, card_customer(), DEMO_CUSTOMER_PIN)
    receipt = operations.deposit_cash(st, agent, auth, "100", receipts.new_txn_id())
    st.config["printer"] = {"kind": "file", "path": "spool.bin"}

    class FullDisk(printer._AppendingFile):
        def _raw(self, msg):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(printer, "_AppendingFile", FullDisk)
    with caplog.at_level(logging.INFO, logger="station"), pytest.raises(printer.PrinterStorageFull):
        printing.print_receipt(st, receipt)
    assert any("storage full" in r.message for r in caplog.records)
    assert st.storage_full_since is not None
    # The next check finds the room the test's disk has: the state ends by itself.
    assert device_state(st) is DeviceState.READY and st.storage_full_since is None


# -- sync ---------------------------------------------------------------------------------------------------
def test_sync_goes_on_while_full_and_an_ack_without_room_is_asked_again(server, tmp_path, clock, monkeypatch):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, count=3)
    session = agents.login_agent(st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
    with st.bound():
        limit_database(st, extra_pages=4)
        customer = Customer.get(Customer.account_id == "DM00010001")
        auth = agents.authenticate_customer(st, session, customer, DEMO_CUSTOMER_PIN)
        recorded = deposit_until_full(st, session, auth)
        assert recorded
        head = JournalEntry.select(fn.MAX(JournalEntry.seq)).scalar()
        assert device_state(st) is DeviceState.STORAGE_FULL

        # The bank's ack rewrites settings and statuses in place: it fits, and the whole journal is acknowledged.
        result = sync.sync_once(st)
        assert result.acked_seq == st.setting("acked_seq") >= recorded[-1].seq
        assert Operation.get(Operation.seq == recorded[-1].seq).status == "settled"

        # An ack that needs room it does not find (a large downlink): rolled back whole, said, asked again.
        real = sync.apply_downlink
        acked = st.setting("acked_seq")

        def large_downlink(st, *args):
            real(st, *args)
            st.set_setting("bulky", "x" * 200_000)

        monkeypatch.setattr(sync, "apply_downlink", large_downlink)
        clock.advance(minutes=5)
        with pytest.raises(sync.StorageFullSync) as failed:
            sync.sync_once(st)
        assert failed.value.reason == "storage_full" and failed.value.retryable
        assert st.setting("acked_seq") == acked and st.setting("last_sync_at") != sync.utc_text(clock())
        assert st.setting("bulky") is None
        monkeypatch.undo()

        lift_database_limit(st)
        assert sync.sync_once(st).acked_seq == acked
        assert st.setting("last_sync_at") == sync.utc_text(clock())
        assert device_state(st) is DeviceState.READY
        assert head == acked
    st.close()


def test_a_backup_to_a_full_disk_says_so_and_leaves_nothing(station, tmp_path, monkeypatch):
    from station import backup

    out_dir = tmp_path / "usb"
    out_dir.mkdir()

    def no_room(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(backup.tarfile, "open", no_room)
    with pytest.raises(backup.BackupError, match="No space left on device"):
        backup.backup_station(station, out_dir / "station.tar.gz")
    assert list(out_dir.iterdir()) == []


def test_station_status_and_the_sync_screen_say_it(station, ui_app, monkeypatch):
    from click.testing import CliRunner

    from station import cli
    from station.ui.common import sync_failure_message

    monkeypatch.setattr(storage, "free_bytes", lambda st: 0)
    runner = CliRunner()
    result = runner.invoke(cli.cli, ["status", "--data-dir", str(station.data_dir), "--json"])
    assert result.exit_code == 0, result.output
    assert '"device_state": "storage_full"' in result.output
    text = runner.invoke(cli.cli, ["status", "--data-dir", str(station.data_dir)]).output
    assert "STORAGE FULL: no new operations until space is freed" in text
    assert "storage_full" in sync.SYNC_FAILURE_REASONS and "storage_full" in cli.REASON_WORDS
    with ui_app.test_request_context():
        assert sync_failure_message("storage_full") == "同步失败：本设备存储空间已满。记录都保存在本机。请联系技术员。"


def test_the_link_state_stays_in_memory_when_it_cannot_be_saved(station, monkeypatch):
    from station import link

    def no_room(key, value):
        raise full_error()

    monkeypatch.setattr(station, "set_setting", no_room)
    link.note_failure(station, "probe", "timeout", "ReadTimeout")
    link.note_success(station, "probe", 40)
    status = link.link_status(station)
    assert (status["last_failure_reason"], status["last_success_at"]) == ("timeout", sync.utc_text(station.now()))
    assert station.setting(link.LINK_SETTING) is None
    assert station.storage_full_since is not None


def test_a_key_rotation_the_bank_asked_for_waits_for_room(server, tmp_path, clock, monkeypatch):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, count=2)
    with st.bound():
        st.set_setting("rotate_requested", True)
        kid = st.signer.kid
        monkeypatch.setattr(storage, "free_bytes", lambda st: 0)
        result = sync.sync_once(st)
        assert result.pending == 0 and st.signer.kid == kid and st.setting("rotate_requested") is True
        assert not JournalEntry.select().where(JournalEntry.type == "key_rotation").exists()
        monkeypatch.undo()
        sync.sync_once(st)
        assert st.signer.kid != kid and st.setting("rotate_requested") is False
        assert JournalEntry.select().where(JournalEntry.type == "key_rotation").count() == 1
    st.close()


def test_an_agent_logs_in_to_reprint_when_the_session_cannot_be_saved(ui_client, open_drawer, agent, printed,
                                                                       monkeypatch):
    st = open_drawer
    auth = agents.authenticate_customer(st, agent, card_customer(), DEMO_CUSTOMER_PIN)
    receipt = operations.deposit_cash(st, agent, auth, "100", receipts.new_txn_id())
    real = st.set_setting

    def no_room_for_sessions(key, value):
        if key.startswith(agents.SESSION_KEY_PREFIX):
            raise full_error()
        real(key, value)

    monkeypatch.setattr(st, "set_setting", no_room_for_sessions)
    assert login(ui_client).location == "/home"
    assert len(st.unsaved_sessions) == 1
    assert ui_client.post(f"/receipts/{receipt.seq}/print").location == f"/receipts/{receipt.seq}"
    assert printed[-1][0] == receipt.seq
    # Logging out ends it like any other session.
    ui_client.post("/logout")
    assert st.unsaved_sessions == {} and ui_client.get("/home").location.startswith("/login")


def test_wrong_pins_that_cannot_be_saved_still_count(open_drawer, agent):
    """A full disk must not turn the PIN pad into an unlimited guessing game: wrong tries that cannot be journaled
    are counted in memory, and at the limit no PIN is checked (not even the right one) until there is room; then
    the next wrong one is saved with them all and locks."""
    st = open_drawer
    customer = card_customer()
    auth = agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
    limit_database(st)
    deposit_until_full(st, agent, auth)
    refusals = []
    for _ in range(6):
        with pytest.raises((errors.WrongCustomerPin, errors.StorageFull)) as raised:
            agents.authenticate_customer(st, agent, customer, "000000")
        refusals.append(type(raised.value))
    assert errors.StorageFull in refusals
    with pytest.raises(errors.StorageFull):
        agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
    for _ in range(8):
        with pytest.raises((errors.WrongAgentPin, errors.StorageFull)):
            agents.login_agent(st, "A01", "0000")
    with pytest.raises(errors.StorageFull):
        agents.login_agent(st, "A01", DEMO_AGENTS[0][3])

    lift_database_limit(st)
    with pytest.raises(errors.CustomerLocked):
        agents.authenticate_customer(st, agent, customer, "000000")
    assert Customer.get_by_id(customer.id).status == "locked"
    with pytest.raises(errors.AgentLocked):
        agents.login_agent(st, "A01", "0000")
    assert Agent.get_by_id("A01").locked
    assert st.unsaved_failures == {}


def test_logging_out_on_a_full_disk_still_ends_the_session(ui_app, ui_client, open_drawer, monkeypatch):
    """The station cannot delete its record of the session: logging out still ends it, for this browser and for any
    copy of its cookie (the record is set aside in memory), and the login screen shows, not an error."""
    st = open_drawer
    login(ui_client)
    copied = ui_client.get_cookie("session").value

    def no_room(key):
        raise full_error()

    monkeypatch.setattr(st, "delete_setting", no_room)
    assert ui_client.post("/logout").location == "/login"
    assert ui_client.get("/home").location == "/login"
    thief = ui_app.test_client()
    thief.set_cookie("session", copied)
    assert thief.get("/home").location == "/login"
    assert thief.post("/op/withdrawal/start").location == "/login"


def test_the_right_pin_logs_in_when_the_wrong_ones_before_cannot_be_cleared(ui_client, open_drawer, monkeypatch):
    """An agent who mistyped once and then typed the right PIN on a full disk still logs in (to reprint and sync):
    the earlier wrong PIN stays counted (they lock sooner, never later), it is not a refusal."""
    st = open_drawer
    with pytest.raises(errors.WrongAgentPin):
        agents.login_agent(st, "A01", "0000")

    def no_room(key):
        raise full_error()

    monkeypatch.setattr(st, "delete_setting", no_room)
    assert agents.login_agent(st, "A01", DEMO_AGENTS[0][3]).agent_id == "A01"
    assert Agent.get_by_id("A01").failed_pins == 1
