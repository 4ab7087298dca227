"""The journal: append-only, gapless, chained, signed; verifiable offline with another JOSE library."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws

from station import agents, business_day, errors, operations, receipts
from station.cli import cli
from station.context import Station
from station.db import BusinessDay, Customer, DatabaseDamaged, JournalEntry, Operation
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN, load_demo_customers
from station.journal import audit_journal
from station.protocol.tokens import chain_hash, genesis_prev, unverified_payload
from station.provision import init_station
from station.simulate import simulate


@pytest.fixture
def busy_station(open_drawer, agent):
    st = open_drawer
    customer = Customer.select().where(Customer.card_number.is_null(False)).first()
    auth = agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
    operations.withdraw_cash(st, agent, auth, "500", receipts.new_txn_id())
    operations.pay_bill(st, agent, None, "ELEC-SGCC", "9876543210", "88.50", receipts.new_txn_id())
    operations.transfer(st, agent, auth, "6222000000000000001", "王小明", "200", receipts.new_txn_id(),
                        fraud_warning_confirmed=True)
    return st


def raw(st: Station) -> sqlite3.Connection:
    return sqlite3.connect(st.data_dir / "station.db")


def test_entries_are_gapless_chained_and_start_with_a_start_entry(busy_station):
    st = busy_station
    rows = list(JournalEntry.select().order_by(JournalEntry.seq))
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    payloads = [unverified_payload(r.token) for r in rows]
    assert payloads[0]["type"] == "start"
    assert payloads[0]["prev"] == genesis_prev("ST-0001")
    for before, after, payload in zip(rows, rows[1:], payloads[1:], strict=False):
        assert payload["prev"] == chain_hash(before.token)
        assert payload["seq"] == after.seq
    assert (audit_journal(st).entries, audit_journal(st).problems) == (len(rows), [])


def test_no_card_number_or_pin_in_any_token(busy_station):
    cards = [c.card_number for c in Customer.select() if c.card_number]
    for row in JournalEntry.select():
        payload = json.dumps(unverified_payload(row.token))
        assert not any(card in payload for card in cards)
        assert DEMO_CUSTOMER_PIN not in payload


def test_receipt_header_and_payload(busy_station):
    withdrawal = Operation.get(Operation.type == "withdrawal")
    token = JournalEntry.get_by_id(withdrawal.seq).token
    header = json.loads(jwcrypto_jws.base64url_decode(token.split(".")[0]))
    assert header == {"alg": "Ed25519", "kid": busy_station.signer.kid}
    payload = unverified_payload(token)
    customer = Customer.get_by_id(withdrawal.customer_id)
    assert payload["account"] == customer.account_id
    assert payload["amount"] == 50_000 and payload["type"] == "withdrawal" and payload["txn"] == withdrawal.txn
    assert payload["ts"].endswith("Z") and payload["v"] == 1 and payload["station"] == "ST-0001"


@pytest.mark.parametrize("statement", [
    "UPDATE journal_entry SET token = 'x' WHERE seq = 2",
    "DELETE FROM journal_entry WHERE seq = 3",
])
def test_triggers_refuse_update_and_delete(busy_station, statement):
    conn = raw(busy_station)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute(statement)
    conn.close()


def tamper(st: Station, sql: str, *params) -> None:
    """What a dishonest agent with the SD card could do: drop the guard triggers, then edit."""
    conn = raw(st)
    conn.execute("DROP TRIGGER journal_entry_no_update")
    conn.execute("DROP TRIGGER journal_entry_no_delete")
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def forged_token(st: Station, seq: int, **changes) -> str:
    token = JournalEntry.get_by_id(seq).token
    header, _, signature = token.split(".")
    payload = {**unverified_payload(token), **changes}
    body = jwcrypto_jws.base64url_encode(json.dumps(payload, separators=(",", ":")).encode())
    return f"{header}.{body}.{signature}"


def run_verify(st: Station) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["verify-journal", "--data-dir", str(st.data_dir), "--json"])
    return result.exit_code, json.loads(result.output)


def test_verify_cli_reports_intact(busy_station):
    code, result = run_verify(busy_station)
    assert code == 0 and result["intact"] and result["entries"] == 7


def test_edited_amount_is_caught(busy_station):
    st = busy_station
    seq = Operation.get(Operation.type == "withdrawal").seq
    tamper(st, "UPDATE journal_entry SET token = ? WHERE seq = ?", forged_token(st, seq, amount=5_000), seq)
    code, result = run_verify(st)
    assert code == 1
    assert result["bad_seq"] == seq and "signature" in result["reason"]


def test_deleted_entry_is_caught(busy_station):
    tamper(busy_station, "DELETE FROM journal_entry WHERE seq = 5")
    code, result = run_verify(busy_station)
    assert (code, result["bad_seq"]) == (1, 5)
    assert "gap" in result["reason"]


def test_reordered_entries_are_caught(busy_station):
    st = busy_station
    a, b = (JournalEntry.get_by_id(s).token for s in (5, 6))
    tamper(st, "UPDATE journal_entry SET token = CASE seq WHEN 5 THEN ? ELSE ? END WHERE seq IN (5, 6)", b, a)
    code, result = run_verify(st)
    assert (code, result["bad_seq"]) == (1, 5)


def test_entry_signed_by_another_key_is_caught(busy_station, tmp_path):
    st = busy_station
    genuine = unverified_payload(JournalEntry.get_by_id(6).token)
    thief = init_station(tmp_path / "other", "ST-0001")
    forged = thief.signer.sign(genuine)
    tamper(st, "UPDATE journal_entry SET token = ? WHERE seq = 6", forged)
    code, result = run_verify(st)
    assert (code, result["bad_seq"]) == (1, 6)


def test_export_verifies_with_an_independent_jose_library(busy_station, tmp_path):
    """jwcrypto (not joserfc, which the station uses) checks every exported entry and the chain."""
    out = tmp_path / "export"
    result = CliRunner().invoke(cli, ["export-journal", "--data-dir", str(busy_station.data_dir), str(out)])
    assert result.exit_code == 0, result.output
    keys = jwcrypto_jwk.JWKSet.from_json((out / "jwks.json").read_text())
    prev = None
    lines = (out / "journal.jsonl").read_text().splitlines()
    assert len(lines) == 7
    for expected_seq, line in enumerate(lines, start=1):
        entry = json.loads(line)
        verifier = jwcrypto_jws.JWS()
        verifier.deserialize(entry["jws"])
        kid = json.loads(jwcrypto_jws.base64url_decode(entry["jws"].split(".")[0]))["kid"]
        verifier.verify(keys.get_key(kid), alg="Ed25519")
        payload = json.loads(verifier.payload)
        assert payload["seq"] == entry["seq"] == expected_seq
        assert payload["prev"] == (prev or genesis_prev("ST-0001"))
        prev = chain_hash(entry["jws"])


def test_keys_and_config_are_private(station):
    for name in ("keys/signing.jwk", "config.json"):
        assert stat.S_IMODE(os.stat(station.data_dir / name).st_mode) == 0o600


def test_init_refuses_to_overwrite(station):
    result = CliRunner().invoke(cli, ["init", "--data-dir", str(station.data_dir), "--station-id", "ST-9"])
    assert result.exit_code == 1 and "refusing to overwrite" in result.output


def test_uninitialised_data_dir_gets_a_clear_message(tmp_path):
    result = CliRunner().invoke(cli, ["verify-journal", "--data-dir", str(tmp_path / "none")])
    assert result.exit_code == 1 and "station init" in result.output


def test_damaged_database_is_refused_with_a_recovery_hint(station):
    path = station.data_dir / "station.db"
    station.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    # Scribble over the second and later pages (table b-trees), keeping the header readable.
    for offset in range(page_size, len(data), page_size):
        data[offset:offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(DatabaseDamaged, match="recover"):
        Station(station.data_dir)


def test_simulate_then_verify_and_summary(tmp_path, clock):
    runner = CliRunner()
    folder = str(tmp_path / "sim")
    # `station init --demo`, a day before the fixed start below (the station refuses a clock behind its journal).
    clock.advance(days=-1)
    load_demo_customers(init_station(folder, "ST-0002", clock=clock))
    # A fixed start: without one the hour of the run picks the mix, and so whether a withdrawal gets reversed.
    result = runner.invoke(cli, ["simulate", "--data-dir", folder, "--transactions", "150", "--seed", "4",
                                 "--start", "2026-11-02T07:40"])
    assert result.exit_code == 0, result.output
    outcomes = json.loads(result.output)
    assert outcomes["withdrawal"] > 30 and outcomes["day_open"] >= 1
    assert any(key.startswith("refused:") for key in outcomes)
    code, verified = run_verify(Station(folder))
    assert code == 0 and verified["intact"]
    summary = json.loads(runner.invoke(cli, ["summary", "--data-dir", folder]).output)
    # A reversed withdrawal is still one the simulation recorded: count it under every status.
    withdrawals = summary["operations"]["withdrawal"]
    assert sum(status["count"] for status in withdrawals.values()) == outcomes["withdrawal"]
    reversed_ops = sum(by_status.get("reversed", {}).get("count", 0) for by_status in summary["operations"].values())
    assert reversed_ops == outcomes.get("reversal", 0)


def test_simulate_refuses_a_start_before_the_journal(station):
    result = CliRunner().invoke(cli, ["simulate", "--data-dir", str(station.data_dir), "-n", "5",
                                      "--start", "2026-11-01T07:40"])
    assert result.exit_code == 1 and "before the journal's last entry" in result.output
    assert "Traceback" not in result.output


def test_simulate_from_a_given_local_start(station):
    result = CliRunner().invoke(cli, ["simulate", "--data-dir", str(station.data_dir), "-n", "5",
                                      "--start", "2026-11-05T07:40"])
    assert result.exit_code == 0, result.output
    opened = JournalEntry.get(JournalEntry.type == "day_open")
    assert opened.recorded_at.astimezone(station.timezone).isoformat().startswith("2026-11-05T07:40")


def test_simulate_after_a_day_left_open_keeps_the_clock_moving_forward(open_drawer):
    # The day opened on 3 November is still open when the simulation starts on the 5th.
    st = open_drawer
    start = datetime(2026, 11, 5, 7, 40, tzinfo=st.timezone)
    simulate(st, 120, seed=2, start=start)
    stamps = [entry.recorded_at for entry in JournalEntry.select().order_by(JournalEntry.seq)]
    assert stamps == sorted(stamps)
    assert BusinessDay.get(BusinessDay.business_date == "2026-11-03").closed_at == start
    assert audit_journal(st).problems == []



def test_simulate_again_after_an_entry_behind_a_day_opened_ahead(station, clock):
    # The first run closes its day at 17:30 and opens the next one; an entry is then recorded by the station's own
    # clock, still on the first day. A second run starts at the day left open, not at that entry: closing that day
    # at its own 17:30 would be past the end of an agent session logged in on the first day.
    clock.now = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)  # 16:00 in Beijing
    simulate(station, 40, seed=3, start=clock.now)
    assert business_day.current_day(station).business_date == "2026-11-04"
    with pytest.raises(errors.StationError):
        agents.login_agent(station, DEMO_AGENTS[0][0], "000000")  # journaled (agent_pin_failed) at 16:00 on the 3rd
    behind = JournalEntry.select().order_by(JournalEntry.seq.desc()).first()
    assert behind.recorded_at == clock.now
    simulate(station, 10, seed=4)
    after = JournalEntry.select().where(JournalEntry.seq > behind.seq).order_by(JournalEntry.seq).first()
    assert after.recorded_at.astimezone(station.timezone) >= datetime(2026, 11, 4, 7, 40, tzinfo=station.timezone)
