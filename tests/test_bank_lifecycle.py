"""The bank's side of a station's life: a hand-carried journal imported (once, twice, tampered, for the wrong
station), a fork explained and its flag cleared, a revoked station refused while its receipts keep verifying, and
key rotation requests in the downlink. Over real HTTP on loopback, on SQLite and, with ``TEST_DATABASE_URL``,
PostgreSQL."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta

import pytest
import requests
from click.testing import CliRunner
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws
from sync_support import enrolled_station, journal, opened_downlinks, partial_sync, record_some, server_db

from station import agents, business_day, operations, receipts
from station.context import Station
from station.db import Customer
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN
from station.journal import export_journal
from station.protocol.tokens import generate_signing_key, key_id, public_jwk, unverified_payload
from station.provision import init_station
from station.sync import SyncRefused, sync_once
from sync_server.book import ledger_totals
from sync_server.checks import check_ledger
from sync_server.cli import cli as server_cli
from sync_server.db import (
    Account,
    Entry,
    Hold,
    ReconItem,
    ServerSetting,
    StationEvent,
    StationFork,
    StationKey,
    db_proxy,
)
from sync_server.db import Station as BankStation
from sync_server.journal_import import ImportRefused, import_journal
from sync_server.policy import server_policy

PROBLEM = "urn:station-kit:problem:"
ACCOUNT = "DM00010001"


# -- helpers --------------------------------------------------------------------------------------------------
def cli(server, *args, ok=True):
    """``sync-server ARGS --database-url URL``; the test thread's models are bound to the server again after."""
    bound = db_proxy.obj
    try:
        result = CliRunner().invoke(server_cli, [*args, "--database-url", server.database_url],
                                    catch_exceptions=False)
    finally:
        db_proxy.initialize(bound)
    if ok:
        assert result.exit_code == 0, result.output
    return result




def held(station_id: str) -> list[tuple[int, str]]:
    server_db()
    return list(Entry.select(Entry.seq, Entry.token).where(Entry.station_id == station_id).order_by(Entry.seq)
                .tuples())


def bank_station(station_id: str) -> BankStation:
    server_db()
    return BankStation.get_by_id(station_id)


def events(station_id: str, action: str) -> list[StationEvent]:
    server_db()
    return list(StationEvent.select().where((StationEvent.station_id == station_id)
                                            & (StationEvent.action == action)).order_by(StationEvent.id))


def balance(account_id: str) -> int:
    """The account's balance (0 for an account the ledger has not opened yet)."""
    server_db()
    account = Account.get_or_none(Account.account_id == account_id)
    return account.balance_fen if account else 0


def export(st, folder):
    with st.bound():
        export_journal(st, folder)
    return folder


def lines_of(folder) -> list[str]:
    return (folder / "journal.jsonl").read_text(encoding="utf-8").splitlines()


def clone_of(st, folder, clock):
    """A second device with ``st``'s SD card copied; returns (the original reopened, the clone)."""
    st.close()
    shutil.copytree(st.data_dir, folder)
    return Station(st.data_dir, clock=clock), Station(folder, clock=clock)


def withdraw(st, amount: int):
    with st.bound():
        agent = agents.login_agent(st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
        customer = Customer.get(Customer.account_id == ACCOUNT)
        auth = agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
        return operations.withdraw_cash(st, agent, auth, amount, receipts.new_txn_id())


# -- journal import ---------------------------------------------------------------------------------------------
def test_an_export_brings_exactly_the_entries_the_bank_never_got(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 3)
    partial = partial_sync(st)
    record_some(st, 4, amount=20_000)
    head = len(journal(st))
    last_sync_before = bank_station("ST-0001").last_sync_at
    before = balance(ACCOUNT)
    deposits_missing = sum(unverified_payload(token)["amount"] for seq, token in journal(st)
                           if seq > partial and unverified_payload(token)["type"] == "deposit")
    assert deposits_missing >= 4 * 20_000

    result = import_journal(export(st, tmp_path / "export"), "ST-0001", by="Wang Fang", chunk=2)

    assert (result.first, result.last, result.entries, result.rejected, result.held_to) == (
        partial + 1, head, head - partial, 0, head)
    assert result.message == (f"Imported seq {partial + 1}..{head} of station ST-0001 ({head - partial} entries). "
                              f"The bank now holds seq 1..{head}.")
    assert held("ST-0001") == journal(st)
    station = bank_station("ST-0001")
    assert (station.acked_seq, station.synced_seq, station.flagged) == (head, head, False)
    assert station.last_sync_at == last_sync_before  # an import is no contact with the device
    server_db()
    assert not Entry.select().where((Entry.station_id == "ST-0001") & (Entry.outcome == "rejected")).exists()
    assert balance(ACCOUNT) == before + deposits_missing
    with st.bound():
        assert balance("cash:ST-0001") == business_day.drawer_cash(st)  # the drawer the journal implies
    assert check_ledger() == [] and sum(ledger_totals().values()) == 0
    [event] = events("ST-0001", "journal_imported")
    assert (event.by, event.detail) == ("Wang Fang", {"first": partial + 1, "last": head, "entries": head - partial})

    # The device syncs afterwards: everything is a duplicate, nothing counted twice.
    synced = sync_once(st)
    assert (synced.acked_seq, synced.pending, synced.rejected) == (head, 0, {})
    assert balance(ACCOUNT) == before + deposits_missing and check_ledger() == []


def test_importing_the_same_export_twice_changes_nothing_the_second_time(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 3)
    folder = export(st, tmp_path / "export")
    first = cli(server, "journal", "import", str(folder), "--station", "ST-0001", "--by", "Wang Fang")
    head = len(journal(st))
    assert f"Imported seq 2..{head} of station ST-0001" in first.output
    counts = (len(held("ST-0001")), balance(ACCOUNT), len(events("ST-0001", "journal_imported")))
    again = cli(server, "journal", "import", str(folder), "--station", "ST-0001", "--by", "Wang Fang")
    assert again.output == f"Nothing new: the bank already holds seq 1..{head} of station ST-0001.\n"
    assert (len(held("ST-0001")), balance(ACCOUNT), len(events("ST-0001", "journal_imported"))) == counts == (
        head, counts[1], 1)


def _tampered(folder, change: str, seq: int) -> None:
    """Change the export in ``folder`` the way ``change`` says, at line ``seq``."""
    lines = lines_of(folder)
    index = seq - 1
    if change == "a byte changed in a jws":
        item = json.loads(lines[index])
        header, payload, signature = item["jws"].split(".")
        middle = len(payload) // 2
        payload = payload[:middle] + ("A" if payload[middle] != "A" else "B") + payload[middle + 1:]
        item["jws"] = f"{header}.{payload}.{signature}"
        lines[index] = json.dumps(item)
    elif change == "a line removed":
        del lines[index]
    elif change == "two lines swapped":
        lines[index], lines[index + 1] = lines[index + 1], lines[index]
    elif change == "a type label changed":
        item = json.loads(lines[index])
        item["type"] = "withdrawal" if item["type"] != "withdrawal" else "deposit"
        lines[index] = json.dumps(item)
    (folder / "journal.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("change", ["a byte changed in a jws", "a line removed", "two lines swapped",
                                    "a type label changed"])
def test_a_tampered_export_is_refused_at_the_first_bad_seq_and_nothing_is_applied(server, tmp_path, clock, change):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 2)
    partial = partial_sync(st)
    record_some(st, 4)
    folder = export(st, tmp_path / "export")
    bad = partial + 2
    _tampered(folder, change, bad)
    before = (held("ST-0001"), balance(ACCOUNT))
    with pytest.raises(ImportRefused) as refused:
        import_journal(folder, "ST-0001", by="Wang Fang")
    assert refused.value.seq == bad
    assert f"The export does not verify at seq {bad}:" in str(refused.value)
    assert str(refused.value).endswith("Nothing was imported.")
    assert (held("ST-0001"), balance(ACCOUNT)) == before
    assert events("ST-0001", "journal_imported") == [] and not bank_station("ST-0001").flagged
    result = cli(server, "journal", "import", str(folder), "--station", "ST-0001", ok=False)
    assert result.exit_code == 1 and f"at seq {bad}" in result.output


def test_an_export_is_verified_with_the_keys_the_bank_holds_never_its_own_jwks(server, tmp_path, clock):
    """A thief's device with its own key writes a journal under ST-0001's id; its export carries its own jwks.json,
    which the bank ignores: the first entry does not verify with ST-0001's enrolled key."""
    enrolled_station(server, tmp_path, "ST-0001", clock)
    thief = init_station(tmp_path / "thief", "ST-0001", clock=clock)
    folder = export(thief, tmp_path / "thief-export")
    assert json.loads((folder / "jwks.json").read_text())["keys"][0]["kid"] == thief.signer.kid
    with pytest.raises(ImportRefused) as refused:
        import_journal(folder, "ST-0001", by="Wang Fang")
    # Refused at the start entry, whatever words the chain check uses for a key the bank never enrolled.
    assert refused.value.seq == 1 and str(refused.value).startswith("The export does not verify at seq 1: ")
    assert len(held("ST-0001")) == 1
    thief.close()


def test_imports_for_an_unknown_pending_or_wrong_station_are_refused(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 1)
    other = enrolled_station(server, tmp_path, "ST-0002", clock)
    folder = export(st, tmp_path / "export")
    cases = [("ST-0404", "The bank knows no station ST-0404."),
             ("ST-0002", "This export is the journal of station ST-0001, not ST-0002.")]
    server_db()
    from sync_server.admin import add_station

    add_station("ST-0009", "Not installed yet")
    cases.append(("ST-0009", "Station ST-0009 has not enrolled: the bank holds no key to verify its journal."))
    for station_id, message in cases:
        with pytest.raises(ImportRefused) as refused:
            import_journal(folder, station_id, by="Wang Fang")
        assert str(refused.value).startswith(message)
    assert len(held("ST-0002")) == len(journal(other)) and len(held("ST-0001")) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli(server, "journal", "import", str(empty), "--station", "ST-0001", ok=False)
    assert result.exit_code == 1 and "The export cannot be read" in result.output
    (empty / "journal.jsonl").write_text("", encoding="utf-8")
    assert "The export holds no entries" in cli(server, "journal", "import", str(empty), "--station", "ST-0001",
                                                 ok=False).output
    other.close()


def test_an_export_that_differs_from_what_the_bank_holds_is_a_fork(server, tmp_path, clock):
    """The SD card was copied; both devices recorded; the original synced. The copy's export differs from what the
    bank holds: refused, the station flagged, both contents kept."""
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    st, copy = clone_of(st, tmp_path / "copy", clock)
    record_some(st, 2)
    sync_once(st)
    record_some(copy, 2, amount=20_000)
    fork_seq = next(seq for (seq, mine), (_, theirs) in zip(journal(st), journal(copy), strict=False)
                    if mine != theirs)
    with pytest.raises(ImportRefused) as refused:
        import_journal(export(copy, tmp_path / "export"), "ST-0001", by="Wang Fang")
    assert refused.value.seq == fork_seq
    assert f"The export differs from what the bank holds at seq {fork_seq}." in str(refused.value)
    station = bank_station("ST-0001")
    assert station.flagged and station.flag_reason.startswith(f"fork at seq {fork_seq}: ")
    [fork] = StationFork.select().where(StationFork.station_id == "ST-0001")
    assert (fork.seq, fork.held_token, fork.offered_token) == (
        fork_seq, dict(journal(st))[fork_seq], dict(journal(copy))[fork_seq])
    assert held("ST-0001") == journal(st)
    # Flagged: no import until an operator has looked.
    with pytest.raises(ImportRefused, match="is flagged"):
        import_journal(export(st, tmp_path / "original"), "ST-0001", by="Wang Fang")
    copy.close()


# -- forks: show and clear-flag -------------------------------------------------------------------------------
def test_a_refused_fork_is_shown_side_by_side_and_cleared_with_an_audit_record(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 1)
    sync_once(st)
    st, clone = clone_of(st, tmp_path / "clone", clock)
    record_some(st, 2)
    sync_once(st)
    record_some(clone, 1, amount=20_000)
    with pytest.raises(SyncRefused) as refused:
        sync_once(clone)
    assert refused.value.problem["type"] == PROBLEM + "fork"
    fork_seq = refused.value.problem["seq"]
    [row] = StationFork.select().where(StationFork.station_id == "ST-0001")
    assert (row.seq, row.held_token, row.offered_token) == (
        fork_seq, dict(journal(st))[fork_seq], dict(journal(clone))[fork_seq])

    shown = json.loads(cli(server, "station", "show", "ST-0001", "--json").output)
    assert (shown["status"], shown["flagged"], shown["acked_seq"]) == ("active", True, len(journal(st)))
    assert [(k["from_seq"], k["source"]) for k in shown["keys"]] == [(1, "enrollment")]
    assert shown["tail"]["seq"] == len(journal(st)) and shown["last_sync_at"]
    fork = shown["fork"]
    assert (fork["seq"], fork["reason"]) == (fork_seq, f"entry {fork_seq} differs from the one the bank holds")
    assert {"amount", "txn"} <= set(fork["differing"]) and "seq" not in fork["differing"]
    amount = next(f for f in fork["fields"] if f["field"] == "amount")
    assert (amount["held"], amount["offered"], amount["differs"]) == (10_000, 20_000, True)
    text = cli(server, "station", "show", "ST-0001").output
    assert f"Fork at seq {fork_seq}" in text and "FLAGGED: fork at seq" in text
    [amount_line] = [line for line in text.splitlines() if line.split()[:2] == ["≠", "amount"]]
    assert amount_line.split()[2:] == ["10000", "20000"]

    record_some(st, 1)
    with pytest.raises(SyncRefused) as refused:
        sync_once(st)
    assert refused.value.problem["type"] == PROBLEM + "station-flagged"
    assert cli(server, "station", "clear-flag", "ST-0001", "--by", "Wang Fang", ok=False).exit_code == 2
    for reason, message in (("  ", "Give the reason"), ("checked\x07", "printable characters only")):
        result = cli(server, "station", "clear-flag", "ST-0001", "--reason", reason, "--by", "Wang Fang", ok=False)
        assert result.exit_code == 1 and message in result.output
    assert bank_station("ST-0001").flagged and events("ST-0001", "flag_cleared") == []
    cleared = cli(server, "station", "clear-flag", "ST-0001", "--reason", "clone seized; the original is honest",
                  "--by", "Wang Fang")
    assert f"cleared (it was: fork at seq {fork_seq}" in cleared.output
    [event] = events("ST-0001", "flag_cleared")
    assert (event.by, event.reason) == ("Wang Fang", "clone seized; the original is honest")
    assert event.detail["flag_reason"].startswith(f"fork at seq {fork_seq}")

    synced = sync_once(st)  # the honest station is accepted again
    assert (synced.acked_seq, synced.pending) == (len(journal(st)), 0)
    assert held("ST-0001") == journal(st)
    assert "not flagged" in cli(server, "station", "clear-flag", "ST-0001", "--reason", "again", "--by", "W",
                                ok=False).output
    # The clone still holds the other history: refused and flagged again.
    with pytest.raises(SyncRefused) as refused:
        sync_once(clone)
    assert refused.value.problem["type"] == PROBLEM + "fork" and bank_station("ST-0001").flagged
    shown = json.loads(cli(server, "station", "show", "ST-0001", "--json").output)
    assert [e["action"] for e in shown["events"]] == ["flag_cleared"]
    clone.close()


def test_show_for_an_unknown_station_is_a_clear_error(server):
    result = cli(server, "station", "show", "ST-0404", ok=False)
    assert result.exit_code == 1 and "The bank knows no station ST-0404." in result.output


# -- revoke -----------------------------------------------------------------------------------------------------
def test_a_revoked_station_is_refused_its_old_receipts_verify_and_its_journal_can_still_be_imported(
        server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 2)
    sync_once(st)
    receipt = journal(st)[-1][1]
    # A later key of the station (a rotation records one like it): published beside the first.
    later = generate_signing_key()
    server_db()
    StationKey.create(station_id="ST-0001", kid=key_id(later), jwk=public_jwk(later), from_seq=100,
                      source="rotation", created_at="2026-11-03T00:00:00.000Z")
    assert cli(server, "station", "revoke", "ST-0001", "--by", "Wang Fang", ok=False).exit_code == 2
    cli(server, "station", "revoke", "ST-0001", "--reason", "device stolen, police report 2026-117", "--by",
        "Wang Fang")
    [event] = events("ST-0001", "revoked")
    assert (event.by, event.reason, event.detail["acked_seq"]) == (
        "Wang Fang", "device stolen, police report 2026-117", len(journal(st)))
    assert "already revoked" in cli(server, "station", "revoke", "ST-0001", "--reason", "x", "--by", "y",
                                    ok=False).output
    server_db()
    assert not Hold.select().where((Hold.station_id == "ST-0001") & (Hold.amount_fen > 0)).exists()

    # Its receipts verify with the keys the bank publishes, checked with jwcrypto (not the kit's joserfc).
    published = requests.get(f"{server.url}/api/v1/stations/ST-0001/jwks", timeout=10).json()
    assert [key["kid"] for key in published["keys"]] == [st.signer.kid, key_id(later)]
    keys = jwcrypto_jwk.JWKSet.from_json(json.dumps(published))
    verifier = jwcrypto_jws.JWS()
    verifier.deserialize(receipt)
    verifier.verify(keys.get_key(st.signer.kid), alg="Ed25519")
    assert json.loads(verifier.payload) == unverified_payload(receipt)

    # What it recorded meanwhile is refused with a reason the agent understands.
    record_some(st, 1, amount=30_000)
    withdraw(st, 10_000)
    with pytest.raises(SyncRefused) as refused:
        sync_once(st)
    problem = refused.value.problem
    assert problem["type"] == PROBLEM + "station-revoked" and refused.value.status == 403
    assert problem["revoked_at"] == bank_station("ST-0001").revoked_at
    assert "The bank has revoked station ST-0001" in problem["detail"] and "call the bank" in problem["detail"]

    # The device is found: its journal is imported; the deposit settles, the withdrawal against the hold that
    # revoking released is rejected and becomes a reconciliation item.
    before = balance(ACCOUNT)
    head = len(journal(st))
    result = import_journal(export(st, tmp_path / "export"), "ST-0001", by="Wang Fang")
    assert (result.first, result.last, result.rejected) == (head - 1, head, 1)
    assert "1 rejected by the bank's rules" in result.message
    assert held("ST-0001") == journal(st)
    server_db()
    assert Entry.get_by_id(("ST-0001", head)).reason == "not_authorized"
    assert ReconItem.get((ReconItem.station_id == "ST-0001") & (ReconItem.seq == head)).kind == (
        "rejected_offline_debit")
    assert balance(ACCOUNT) == before + 30_000 and check_ledger() == []
    assert not Hold.select().where((Hold.station_id == "ST-0001") & (Hold.amount_fen > 0)).exists()
    assert bank_station("ST-0001").status == "revoked"


def test_a_station_the_bank_never_enrolled_has_no_published_keys(server):
    response = requests.get(f"{server.url}/api/v1/stations/ST-0001/jwks", timeout=10)
    assert response.status_code == 404 and response.json()["type"] == PROBLEM + "unknown-station"


# -- key age and rotation requests ----------------------------------------------------------------------------
def test_rotation_requests_and_the_maximum_key_age_reach_the_downlink(server, tmp_path, clock, monkeypatch):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    other = enrolled_station(server, tmp_path, "ST-0002", clock)
    seen = opened_downlinks(monkeypatch)
    assert cli(server, "station", "rotate-key").output == "No station is due to rotate its key.\n"
    sync_once(st)
    assert "rotate_key" not in seen[-1]

    # An operator asks ST-0001 to rotate.
    assert "ST-0404" in cli(server, "station", "rotate-key", "ST-0001", "ST-0404", ok=False).output
    assert not bank_station("ST-0001").rotate_requested
    asked = cli(server, "station", "rotate-key", "ST-0001", "--by", "Wang Fang")
    assert "Asked to rotate their keys with their next sync: ST-0001." in asked.output
    assert bank_station("ST-0001").rotate_requested
    assert [(e.by, e.action) for e in events("ST-0001", "rotation_requested")] == [("Wang Fang", "rotation_requested")]
    sync_once(st)
    assert seen[-1]["rotate_key"] is True
    sync_once(other)
    assert "rotate_key" not in seen[-1]

    # A maximum key age: ST-0002's key, recorded 40 days ago, is past 30 days.
    server_db()
    old = (datetime.now(UTC) - timedelta(days=40)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    StationKey.update(created_at=old).where(StationKey.station_id == "ST-0002").execute()
    sync_once(other)
    assert "rotate_key" not in seen[-1]  # the default maximum is a year
    before = server_policy()
    assert "Maximum key age set to 30 days." in cli(server, "station", "rotate-key", "--max-age-days", "30").output
    server_db()
    assert ServerSetting.get_by_id("policy").value["max_key_age_days"] == 30
    assert {k: v for k, v in server_policy().items() if k != "max_key_age_days"} == {
        k: v for k, v in before.items() if k != "max_key_age_days"}
    sync_once(other)
    assert seen[-1]["rotate_key"] is True
    listed = json.loads(cli(server, "station", "rotate-key", "--json").output)
    assert [(row["station_id"], row["why"], row["key_age_days"]) for row in listed] == [
        ("ST-0001", ["asked"], 0), ("ST-0002", ["too old"], 40)]
    text = cli(server, "station", "rotate-key").output
    assert "ST-0002\tkey " in text and "(40 days)\ttoo old" in text
    assert json.loads(cli(server, "station", "show", "ST-0002", "--json").output)["rotation_due"] is True

    assert "Keys no longer age out" in cli(server, "station", "rotate-key", "--max-age-days", "0").output
    sync_once(other)
    assert "rotate_key" not in seen[-1]
    assert cli(server, "station", "rotate-key", "--max-age-days", "-1", ok=False).exit_code == 2
    # A revoked station does not sync: it cannot be asked.
    cli(server, "station", "revoke", "ST-0002", "--reason", "retired", "--by", "Wang Fang")
    assert "is revoked" in cli(server, "station", "rotate-key", "ST-0002", ok=False).output
    other.close()
