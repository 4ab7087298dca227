"""verify-journal beyond the chain: strict tokens, what the entries say together, exports and the bank's anchor.

Tampered journals here are re-signed with the station's own key and re-chained (what someone holding the device's
key could do), so the signatures and the chain hold and only the check under test can catch them.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from sync_support import enrolled_station, server_db

from station import agents, business_day, operations, receipts
from station.cli import cli
from station.db import Customer
from station.demo import DEMO_CUSTOMER_PIN
from station.journal import iter_entries
from station.protocol.journal_checks import check_journal_semantics
from station.protocol.tokens import b64url, canonical_json, chain_hash, genesis_prev, unverified_payload
from sync_server.admin import list_stations


@pytest.fixture
def day(open_drawer, agent, supervisor):
    """A closed day: withdrawal, deposit and its reversal, a cash bill, a transfer and its cancellation."""
    st = open_drawer
    customer = Customer.select().where(Customer.card_number.is_null(False)).first()
    auth = agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
    operations.withdraw_cash(st, agent, auth, "500", receipts.new_txn_id())
    deposit = operations.deposit_cash(st, agent, auth, "100", receipts.new_txn_id())
    operations.reverse(st, supervisor, deposit.txn, receipts.new_txn_id(), "wrong amount")
    operations.pay_bill(st, agent, None, "ELEC-SGCC", "9876543210", "88.50", receipts.new_txn_id())
    transfer = operations.transfer(st, agent, auth, "6222000000000000001", "王小明", "200", receipts.new_txn_id(),
                                   fraud_warning_confirmed=True)
    operations.cancel_transfer(st, agent, auth, transfer.txn, receipts.new_txn_id())
    business_day.close_day(st, agent, {"10000": 200}, reason="Fake note", supervisor=supervisor)
    return st


def entries_by_type(st) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for seq, token in iter_entries(st):
        found.setdefault(unverified_payload(token)["type"], []).append(seq)
    return found


def store(st, tokens: list[str]) -> None:
    """Replace the journal with ``tokens`` (seq 1, 2, ...) as a dishonest agent with the SD card could."""
    conn = sqlite3.connect(st.data_dir / "station.db")
    conn.execute("DROP TRIGGER journal_entry_no_update")
    conn.execute("DROP TRIGGER journal_entry_no_delete")
    conn.execute("DELETE FROM journal_entry")
    conn.executemany("INSERT INTO journal_entry (seq, type, txn, token, recorded_at) VALUES (?, ?, ?, ?, ?)",
                     [(seq, "x", None, token, "2026-11-03T00:00:00.000000+00:00")
                      for seq, token in enumerate(tokens, start=1)])
    conn.commit()
    conn.close()


def resign(st, edit) -> None:
    """Let ``edit`` change the payloads (a list, seq order), then re-sign and re-chain all with the station's key."""
    payloads = [unverified_payload(token) for _, token in iter_entries(st)]
    edit(payloads)
    tokens, prev = [], genesis_prev(st.station_id)
    for payload in payloads:
        token = st.signer.sign({**payload, "prev": prev})
        tokens.append(token)
        prev = chain_hash(token)
    store(st, tokens)


def replace_last(st, header: dict, payload_bytes_of) -> int:
    """Swap the last entry for one signed by the station's key with ``header`` over ``payload_bytes_of(payload)``."""
    pairs = list(iter_entries(st))
    payload = {**unverified_payload(pairs[-1][1]), "prev": chain_hash(pairs[-2][1])}
    # Signed by hand: joserfc itself refuses to sign some of these headers.
    signing_input = f"{b64url(canonical_json(header))}.{b64url(payload_bytes_of(payload))}"
    token = f"{signing_input}.{b64url(st.signing_key.private_key.sign(signing_input.encode('ascii')))}"
    store(st, [token for _, token in pairs[:-1]] + [token])
    return len(pairs)


def verify(*args) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["verify-journal", *args, "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, json.loads(result.output)


def verify_station(st, *args) -> tuple[int, dict]:
    st.close()
    return verify("--data-dir", str(st.data_dir), *args)


def reasons(result: dict) -> list[tuple[int, str]]:
    return [(p["seq"], p["reason"]) for p in result["problems"]]


def test_a_whole_honest_day_is_intact(day):
    code, result = verify_station(day)
    assert (code, result["intact"], result["problems"]) == (0, True, [])


@pytest.mark.parametrize(("changes", "reason"), [
    ({"seq": "float"}, "not an integer"),
    ({"seq": "bool"}, "token carries seq True"),
    ({"amount": 1.0}, "not an integer"),
])
def test_numbers_must_be_json_integers(day, changes, reason):
    last = max(seq for seq, _ in iter_entries(day))
    if changes.get("seq") == "float":
        changes = {"seq": float(last)}
    elif changes.get("seq") == "bool":
        changes = {"seq": True}

    def edit(payloads):
        payloads[-1].update(changes)

    if changes.get("seq") is True:  # seq 1 is the only one True equals
        def edit(payloads):
            payloads[0]["seq"] = True
        last = 1
    resign(day, edit)
    code, result = verify_station(day)
    assert code == 1 and result["bad_seq"] == last and reason in result["reason"]


def test_an_amount_given_as_text_is_reported(day):
    withdrawal = entries_by_type(day)["withdrawal"][0]
    resign(day, lambda payloads: payloads[withdrawal - 1].update(amount="50000"))
    code, result = verify_station(day)
    assert code == 1 and (withdrawal, "amount is '50000', not an integer") in reasons(result)


def test_a_payload_that_is_not_canonical_json_is_invalid(day):
    seq = replace_last(day, {"alg": "Ed25519", "kid": day.signer.kid}, lambda p: json.dumps(p).encode())
    code, result = verify_station(day)
    assert (code, result["bad_seq"]) == (1, seq) and "not canonical JSON" in result["reason"]


@pytest.mark.parametrize(("extra", "reason"), [
    ({"typ": "JWT"}, "other than alg and kid: typ"),
    ({"crit": ["exp"], "exp": 1}, "other than alg and kid: crit, exp"),
    ({"b64": False, "crit": ["b64"]}, "other than alg and kid: b64, crit"),
])
def test_header_members_other_than_alg_and_kid_are_refused(day, extra, reason):
    seq = replace_last(day, {"alg": "Ed25519", "kid": day.signer.kid, **extra}, canonical_json)
    code, result = verify_station(day)
    assert (code, result["bad_seq"]) == (1, seq) and reason in result["reason"]


def test_a_txn_used_twice_is_reported(day):
    found = entries_by_type(day)
    withdrawal, deposit = found["withdrawal"][0], found["deposit"][0]

    def edit(payloads):
        payloads[deposit - 1]["txn"] = payloads[withdrawal - 1]["txn"]

    resign(day, edit)
    code, result = verify_station(day)
    assert code == 1
    assert any(seq == deposit and f"already used by seq {withdrawal}" in reason for seq, reason in reasons(result))


def test_references_must_name_the_right_earlier_entry(day):
    found = entries_by_type(day)
    reversal, cancel = found["reversal"][0], found["transfer_cancel"][0]

    def edit(payloads):
        payloads[reversal - 1]["ref_txn"] = payloads[found["withdrawal"][0] - 1]["txn"]
        payloads[cancel - 1]["ref_seq"] = found["withdrawal"][0]

    resign(day, edit)
    code, result = verify_station(day)
    assert code == 1
    found_reasons = reasons(result)
    assert any(seq == reversal and reason.startswith("ref_txn") for seq, reason in found_reasons)
    assert (cancel, f"ref_seq {found['withdrawal'][0]} names no earlier transfer") in found_reasons


def test_a_second_reversal_of_one_operation_is_reported(day):
    reversal = entries_by_type(day)["reversal"][0]

    def edit(payloads):
        twin = {**payloads[reversal - 1], "txn": "5b0d6a2e-0000-4000-8000-000000000001"}
        payloads.insert(reversal, twin)
        for seq, payload in enumerate(payloads, start=1):
            payload["seq"] = seq

    resign(day, edit)
    code, result = verify_station(day)
    assert code == 1
    assert any(seq == reversal + 1 and "already undone" in reason for seq, reason in reasons(result))


def test_day_close_must_match_the_replayed_drawer(day):
    close = entries_by_type(day)["day_close"][0]

    def edit(payloads):
        payloads[close - 1]["expected"] += 10_000  # hide 100 yuan taken from the drawer
        payloads[close - 1]["variance"] -= 10_000

    resign(day, edit)
    code, result = verify_station(day)
    assert code == 1
    assert [seq for seq, reason in reasons(result) if "leave" in reason] == [close]


def test_variance_must_be_amount_minus_expected_and_every_problem_is_listed(day):
    found = entries_by_type(day)
    close, withdrawal = found["day_close"][0], found["withdrawal"][0]

    def edit(payloads):
        payloads[close - 1]["variance"] = 0
        payloads[withdrawal - 1]["amount"] = -1

    resign(day, edit)
    code, result = verify_station(day)
    problems = reasons(result)
    assert code == 1 and len(problems) >= 2
    assert any(seq == close and reason.startswith("variance is 0") for seq, reason in problems)
    assert (withdrawal, "amount is negative (-1)") in problems


def test_check_journal_semantics_never_raises_on_odd_payloads():
    odd = [{"seq": 1, "type": "start"}, {"seq": 2, "type": ["x"], "txn": {"a": 1}},
           {"seq": 3, "type": "reversal", "ref_seq": [1], "amount": None, "txn": "t"},
           {"seq": 4, "type": "day_open", "counts": {"x": "y"}, "amount": 5}, {"seq": 5, "type": "day_close"}]
    found = check_journal_semantics(odd)
    # Seq 1 too: a start entry without its fields is not one.
    assert {problem.seq for problem in found} == {1, 2, 3, 4, 5}


def export(st, tmp_path):
    out = tmp_path / "export"
    st.close()
    assert CliRunner().invoke(cli, ["export-journal", "--data-dir", str(st.data_dir), str(out)]).exit_code == 0
    return out


def test_an_export_verifies_against_a_given_jwks_and_its_lines_are_checked(day, tmp_path):
    out = export(day, tmp_path)
    anchor = tmp_path / "bank.jwks.json"
    anchor.write_text((out / "jwks.json").read_text())
    assert verify("--export", str(out), "--jwks", str(anchor))[0] == 0
    lines = (out / "journal.jsonl").read_text().splitlines()
    second = json.loads(lines[1])
    lines[1] = json.dumps({**second, "type": "deposit"})
    (out / "journal.jsonl").write_text("\n".join(lines) + "\n")
    code, result = verify("--export", str(out), "--jwks", str(anchor))
    assert code == 1 and (2, f"the export line says type 'deposit', the entry {second['type']!r}") in reasons(result)


def test_an_export_needs_an_outside_trust_anchor(day, tmp_path):
    out = export(day, tmp_path)
    result = CliRunner().invoke(cli, ["verify-journal", "--export", str(out)])
    assert result.exit_code == 2 and "--jwks" in result.output


def test_an_export_line_with_a_float_seq_is_refused(day, tmp_path):
    out = export(day, tmp_path)
    lines = (out / "journal.jsonl").read_text().splitlines()
    lines[2] = json.dumps({**json.loads(lines[2]), "seq": 3.0})
    (out / "journal.jsonl").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["verify-journal", "--export", str(out), "--jwks", str(out / "jwks.json")])
    assert result.exit_code == 1 and "line 3" in result.output


def test_deleting_the_newest_entries_is_caught_only_against_the_banks_head(server, tmp_path, clock):
    """The bank publishes the trust anchor (/jwks) and the outside head (station list --json)."""
    from sync_support import record_some

    from station.sync import sync_once

    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 2)
    sync_once(st)
    server_db()
    listed = {row["station_id"]: row for row in list_stations()}["ST-0001"]
    assert listed["signing_jwk"]["kid"] == st.signer.kid
    anchor = tmp_path / "bank.jwks.json"
    anchor.write_text(requests.get(f"{server.url}/api/v1/stations/ST-0001/jwks", timeout=10).text)
    bank = ["--acked-seq", str(listed["acked_seq"]), "--head", listed["head"]]
    out = export(st, tmp_path)
    assert verify("--export", str(out), "--jwks", str(anchor), *bank)[0] == 0

    lines = (out / "journal.jsonl").read_text().splitlines()
    (out / "journal.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    assert verify("--export", str(out), "--jwks", str(anchor))[0] == 0  # alone, a shorter journal looks whole
    code, result = verify("--export", str(out), "--jwks", str(anchor), *bank)
    assert code == 1 and "entries are missing" in result["reason"]


def test_the_documented_genesis_example_is_right():
    doc = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text(encoding="utf-8")
    assert "```\ngenesis|ST-0001\n```" in doc and f"`{genesis_prev('ST-0001')}`" in doc
    assert genesis_prev("ST-0001") == b64url(hashlib.sha256(b"genesis|ST-0001").digest())


def edit_rows(st, sql: str) -> None:
    """Change business rows behind the station's back (a dishonest agent with the SD card, or a flipped bit)."""
    st.close()
    conn = sqlite3.connect(st.data_dir / "station.db")
    conn.execute(sql)
    conn.commit()
    conn.close()


@pytest.mark.parametrize(("sql", "entry", "reason"), [
    ("UPDATE operation SET amount_fen = amount_fen + 100 WHERE type = 'withdrawal'", "withdrawal",
     "operation row: amount_fen is 50100, the entry says 50000"),
    ("UPDATE operation SET debit_fen = 0 WHERE type = 'withdrawal'", "withdrawal",
     "operation row: debit_fen is 0, the entry says 50000"),
    ("UPDATE operation SET status = 'reversed' WHERE type = 'withdrawal'", "withdrawal",
     "status is reversed, the journal says standing (nothing undid it)"),
    ("UPDATE operation SET status = 'recorded' WHERE type = 'deposit'", "deposit",
     "status is standing, the journal says reversed"),
    ("UPDATE operation SET details = json_set(details, '$.ref', '1111111111') WHERE type = 'bill_payment'",
     "bill_payment", "operation row: details hold ref='1111111111', the entry says '9876543210'"),
    ("DELETE FROM operation WHERE type = 'withdrawal'", "withdrawal", "has no operation row"),
    ("UPDATE business_day SET cash_fen = cash_fen + 1", "day_close",
     "business_day 1: cash_fen is 2958851, the entry says 2958850"),
    ("UPDATE business_day SET counted_fen = 0", "day_close", "counted_fen is 0, the entry says 2000000"),
])
def test_rows_that_no_longer_say_what_their_entry_says_are_reported_by_its_seq(day, sql, entry, reason):
    seq = entries_by_type(day)[entry][0]
    edit_rows(day, sql)
    code, result = verify_station(day)
    assert code == 1 and result["intact"] is False
    assert any(problem_seq == seq and reason in text for problem_seq, text in reasons(result)), reasons(result)


def test_the_text_output_says_broken_at_the_first_problems_seq(day):
    seq = entries_by_type(day)["withdrawal"][0]
    edit_rows(day, "UPDATE operation SET fee_fen = 7 WHERE type = 'withdrawal'")
    result = CliRunner().invoke(cli, ["verify-journal", "--data-dir", str(day.data_dir)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Journal of ST-0001 BROKEN at seq {seq}: operation row: fee_fen is 7")
