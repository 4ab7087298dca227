"""`station backup` / `station restore` and the bank's signed head (GET /api/v1/stations/ID/head).

A backup taken while the station records is one consistent commit; a restore checks the archive, the database, the
journal and, when the bank can be reached, that the backup is not older than (nor forked from) what the bank holds;
every refusal leaves the target untouched and nothing beside it.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import stat
import subprocess
import sys
import tarfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from sync_support import enrolled_station, forked_devices, record_some, server_db, start_server
from test_agent_unlock import bank_code, wrong_pins
from test_server_ingest import check_against_openapi, problem_type

from station import agents, bank_unlock, errors, operations, receipts
from station.app import create_app
from station.backup import MANIFEST, BackupError, RestoreRefused, backup_station, restore_backup
from station.cli import cli
from station.context import Station
from station.db import Agent, Customer, JournalEntry, Operation
from station.demo import DEMO_CUSTOMER_PIN
from station.journal import audit_journal, journal_head
from station.protocol import heads, key_codecs
from station.protocol.entry_types import spec_of
from station.protocol.tokens import chain_hash, generate_signing_key, public_jwk, unverified_payload, verify_token
from station.provision import init_station
from station.sync import ENCRYPTION_KEY_FILE, SyncRefused, fetch_bank_head, sync_once
from sync_server.db import Entry
from sync_server.db import Station as ServerStation

ROOT = Path(__file__).resolve().parents[1]


# -- helpers --------------------------------------------------------------------------------------------------
def assert_operations_match_entries(st: Station) -> None:
    """Every operation row has its entry (same seq, type, txn, amount) and every operation entry its row."""
    with st.bound():
        ops = list(Operation.select())
        payloads = {row.seq: unverified_payload(row.token) for row in JournalEntry.select()}
    for op in ops:
        payload = payloads[op.seq]
        assert (payload["type"], payload["txn"], payload["amount"]) == (op.type, op.txn, op.amount_fen)
    operation_entries = [seq for seq, p in payloads.items() if spec_of(p["type"]).customer_operation]
    assert sorted(operation_entries) == sorted(op.seq for op in ops)


def leftovers(folder):
    """Hidden temporary folders restore or backup would have left beside their target."""
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


def archive_members(path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def write_archive(path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def file_info(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def rewritten(source, dest, change) -> None:
    """A copy of the archive ``source`` with ``change(members)`` applied to its {name: bytes} (a new manifest
    is only written when ``change`` edits it)."""
    members = archive_members(source)
    change(members)
    write_archive(dest, [file_info(name, data) for name, data in members.items()])


def reseal_manifest(members: dict[str, bytes]) -> None:
    """What a careful forger does: recompute the manifest's hashes after changing a member."""
    import hashlib

    manifest = json.loads(members[MANIFEST])
    for name, data in members.items():
        if name != MANIFEST:
            manifest["members"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    members[MANIFEST] = json.dumps(manifest).encode()


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def backup_of(tmp_path):
    def make(st, name="backup.tar.gz"):
        out = tmp_path / name
        backup_station(st, out)
        return out

    return make


# -- backup ---------------------------------------------------------------------------------------------------
def test_backup_while_recording_is_one_consistent_commit(open_drawer, agent, tmp_path):
    st = open_drawer
    customer = Customer.select().where(Customer.card_number.is_null(False)).first()
    auth = agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
    stop, failures, recorded = threading.Event(), [], []

    def keep_recording():
        try:
            while not stop.is_set():
                if len(recorded) % 3 == 2:
                    operations.withdraw_cash(st, agent, auth, "10", receipts.new_txn_id())
                else:
                    operations.deposit_cash(st, agent, auth, "20", receipts.new_txn_id())
                recorded.append(1)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    initial_head, _ = journal_head(st)
    recorder = threading.Thread(target=keep_recording)
    recorder.start()
    try:
        while len(recorded) < 5 and not failures:
            threading.Event().wait(0.01)
        results = [backup_station(st, tmp_path / f"backup-{n}.tar.gz") for n in range(3)]
        seen = len(recorded)
        while len(recorded) < seen + 5 and not failures:
            threading.Event().wait(0.01)
    finally:
        stop.set()
        recorder.join(timeout=60)
    assert failures == []
    live_head, _ = journal_head(st)
    # The copies were taken while operations went on: after some, before others.
    assert initial_head < results[0].head_seq <= results[-1].head_seq < live_head
    for n, result in enumerate(results):
        restored = restore_backup(result.path, tmp_path / f"restored-{n}")
        assert restored.head_seq == result.head_seq and restored.bank is None
        copy = Station(tmp_path / f"restored-{n}")
        try:
            assert audit_journal(copy).intact
            assert_operations_match_entries(copy)
            with copy.bound():
                original = {op.txn: op.status for op in Operation.select()}
            with st.bound():
                live = {op.txn: op.status for op in Operation.select().where(Operation.seq <= result.head_seq)}
            assert original == live
        finally:
            copy.close()


def test_archive_is_private_from_its_creation_and_not_overwritten(station, tmp_path, monkeypatch):
    out = tmp_path / "backups" / "st.tar.gz"
    out.parent.mkdir()
    real_addfile = tarfile.TarFile.addfile
    checked = []

    def addfile_checking_modes(self, tarinfo, fileobj=None):
        # While the archive is being written, nothing in the backup folder is readable by group or others.
        for path in out.parent.rglob("*"):
            assert mode(path) & 0o077 == 0, path
            checked.append(path)
        return real_addfile(self, tarinfo, fileobj)

    monkeypatch.setattr(tarfile.TarFile, "addfile", addfile_checking_modes)
    old_umask = os.umask(0)  # a careless umask must not matter
    try:
        result = backup_station(station, out)
    finally:
        os.umask(old_umask)
    monkeypatch.undo()
    assert checked and mode(out) == 0o600
    assert leftovers(out.parent) == []
    manifest = json.loads(archive_members(out)[MANIFEST])
    head_seq, head_token = journal_head(station)
    assert manifest["station_id"] == "ST-0001" and manifest["head_seq"] == head_seq == result.head_seq
    assert manifest["head"] == chain_hash(head_token) and manifest["acked_seq"] == 0
    assert set(manifest["members"]) == {"station.db", "config.json", "keys/signing.jwk"}
    assert manifest["format"] == "station-kit-backup" and manifest["version"] == 1
    assert manifest["created_at"] and manifest["software"]

    with pytest.raises(BackupError, match="already exists"):
        backup_station(station, out)
    out.write_bytes(b"an older file")
    os.chmod(out, 0o644)
    backup_station(station, out, force=True)
    assert mode(out) == 0o600 and archive_members(out)[MANIFEST]


def test_backup_command_prints_what_it_backed_up(station, tmp_path):
    out = tmp_path / "st.tar.gz"
    runner = CliRunner()
    result = runner.invoke(cli, ["backup", "--data-dir", str(station.data_dir), str(out)])
    assert result.exit_code == 0, result.output
    head_seq, _ = journal_head(station)
    assert f"Backed up station ST-0001 (journal to seq {head_seq}," in result.output
    assert "kB" in result.output or "bytes" in result.output
    again = runner.invoke(cli, ["backup", "--data-dir", str(station.data_dir), str(out)])
    assert again.exit_code == 1 and "already exists" in again.output and "Traceback" not in again.output
    missing = runner.invoke(cli, ["backup", "--data-dir", str(station.data_dir), str(tmp_path / "no" / "b.tgz")])
    assert missing.exit_code == 1 and "does not exist" in missing.output


# -- restore: archive checks ----------------------------------------------------------------------------------
def test_restore_writes_a_private_folder(station, tmp_path, backup_of):
    out = backup_of(station)
    target = tmp_path / "device"
    result = restore_backup(out, target)
    assert result.station_id == "ST-0001" and result.set_aside is None
    assert mode(target) == 0o700 and mode(target / "keys") == 0o700
    for name in ("station.db", "config.json", "keys/signing.jwk"):
        assert mode(target / name) == 0o600, name
    assert leftovers(tmp_path) == []
    assert (target / "keys/signing.jwk").read_bytes() == (station.data_dir / "keys/signing.jwk").read_bytes()


@pytest.mark.parametrize("kid", ["-b1m-ifaneWOsbX3NJ5suucXwn6BHUGo6O9P1kV4ldo", "_x9Q", "plainKid0"])
def test_retired_keys_of_every_kid_survive_the_round_trip(station, tmp_path, backup_of, kid):
    # A kid is a base64url thumbprint: about one in 32 starts with "-" and one in 32 with "_" (CI met one).
    retired = station.data_dir / "keys" / "retired"
    retired.mkdir(mode=0o700, exist_ok=True)
    (retired / f"{kid}.jwk").write_text("{}")
    out = backup_of(station)
    assert f"keys/retired/{kid}.jwk" in archive_members(out)
    restore_backup(out, tmp_path / "device")
    assert (tmp_path / "device" / "keys" / "retired" / f"{kid}.jwk").read_text() == "{}"


def _traversal(members):
    members["../evil"] = b"outside"


def _absolute(members):
    members["/tmp/evil-backup-member"] = b"outside"


def _changed_config(members):
    members["config.json"] = members["config.json"].replace(b"ST-0001", b"ST-0002")  # same size, other hash


def _longer_config(members):
    members["config.json"] += b" "


def _no_signing_key(members):
    del members["keys/signing.jwk"]


def _unknown_member(members):
    members["notes.txt"] = b"hello"


def _forged_entry(members):
    """An entry appended to the copy, the manifest recomputed: only the journal's signatures can tell."""
    import sqlite3
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "x.db")
        with open(path, "wb") as handle:
            handle.write(members["station.db"])
        conn = sqlite3.connect(path)
        seq = conn.execute("SELECT max(seq) FROM journal_entry").fetchone()[0] + 1
        conn.execute("INSERT INTO journal_entry (seq, type, txn, token, recorded_at) VALUES (?, 'deposit', NULL, "
                     "'eyJhbGciOiJFZDI1NTE5In0.e30.AAAA', '2026-11-02T23:40:00.000Z')", (seq,))
        conn.commit()
        conn.close()
        with open(path, "rb") as handle:
            members["station.db"] = handle.read()
    reseal_manifest(members)


def _damaged_database(members):
    data = bytearray(members["station.db"])
    page = 4096
    data[page * 2:page * 2 + 64] = b"\xff" * 64  # a b-tree page header turned to garbage
    members["station.db"] = bytes(data)
    reseal_manifest(members)


def _newer_format(members):
    manifest = json.loads(members[MANIFEST])
    manifest["version"] = 2
    members[MANIFEST] = json.dumps(manifest).encode()


@pytest.mark.parametrize(("change", "message"), [
    (_traversal, "points outside the data folder"),
    (_absolute, "points outside the data folder"),
    (_changed_config, "does not match its manifest's SHA-256"),
    (_longer_config, "not the size its manifest says"),
    (_no_signing_key, "differ from its manifest"),
    (_unknown_member, "that no station backup has"),
    (_forged_entry, "journal does not verify"),
    (_damaged_database, "fails its integrity check"),
    (_newer_format, "format version 2"),
])
def test_tampered_archive_is_refused_and_nothing_written(station, tmp_path, backup_of, change, message):
    tampered = tmp_path / "tampered.tar.gz"
    rewritten(backup_of(station), tampered, change)
    target = tmp_path / "device"
    with pytest.raises(RestoreRefused, match=message):
        restore_backup(tampered, target)
    assert not target.exists() and leftovers(tmp_path) == []
    assert not (tmp_path / "evil").exists()


def test_link_members_are_refused(station, tmp_path, backup_of):
    members = archive_members(backup_of(station))
    for kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        link = tarfile.TarInfo("keys/signing.jwk")
        link.type, link.linkname = kind, "/etc/passwd"
        entries = [file_info(n, d) for n, d in members.items() if n != "keys/signing.jwk"] + [(link, None)]
        tampered = tmp_path / f"link-{kind!r}.tar.gz"
        write_archive(tampered, entries)
        with pytest.raises(RestoreRefused, match="is a link"):
            restore_backup(tampered, tmp_path / "device")
        assert not (tmp_path / "device").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.97, -1])
def test_truncated_archive_is_refused(station, tmp_path, backup_of, keep):
    data = backup_of(station).read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: int(len(data) * keep) if keep > 0 else keep])  # -1: only the gzip trailer's last byte
    with pytest.raises(RestoreRefused, match="damaged or cut short|does not match|differ from its manifest"):
        restore_backup(cut, tmp_path / "device")
    assert not (tmp_path / "device").exists() and leftovers(tmp_path) == []


def test_not_an_archive_and_missing_file_are_refused(tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"this is not a backup" * 100)
    with pytest.raises(RestoreRefused, match="not a station backup"):
        restore_backup(junk, tmp_path / "device")
    with pytest.raises(RestoreRefused, match="Cannot read"):
        restore_backup(tmp_path / "absent.tar.gz", tmp_path / "device")
    assert not (tmp_path / "device").exists() and leftovers(tmp_path) == []


def test_replace_keeps_the_old_folder_aside(station, tmp_path, backup_of, clock):
    out = backup_of(station)
    target = tmp_path / "device"
    old = init_station(target, "ST-0009", clock=clock)
    with pytest.raises(RestoreRefused, match="already holds a station: refusing to overwrite it. Add --replace"):
        restore_backup(out, target)
    with pytest.raises(RestoreRefused, match="is running"):
        restore_backup(out, target, replace=True)  # its database is open here
    old.close()
    assert json.loads((target / "config.json").read_text())["station_id"] == "ST-0009"
    assert leftovers(tmp_path) == []
    result = restore_backup(out, target, replace=True)
    assert result.set_aside is not None and result.set_aside.name.startswith("device.replaced-")
    assert json.loads((result.set_aside / "config.json").read_text())["station_id"] == "ST-0009"
    assert (result.set_aside / "station.db").exists()
    assert json.loads((target / "config.json").read_text())["station_id"] == "ST-0001"
    # A second replace keeps both older folders.
    second = restore_backup(out, target, replace=True)
    assert second.set_aside != result.set_aside and result.set_aside.exists() and second.set_aside.exists()


def test_restore_into_an_empty_folder_keeps_its_owner(station, tmp_path, backup_of):
    out = backup_of(station)
    empty = tmp_path / "empty"
    empty.mkdir()
    # As root (a technician's sudo on a device), the folder install.sh gave the station user stays the station's.
    owner = (4242, 4243) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    os.chown(empty, *owner)
    assert restore_backup(out, empty).set_aside is None
    assert (empty / "config.json").exists()
    for path in [empty, *empty.rglob("*")]:
        assert (path.stat().st_uid, path.stat().st_gid) == owner, path
    assert mode(empty) == 0o700


def test_restore_refusals_about_the_target(station, tmp_path, backup_of):
    out = backup_of(station)
    with pytest.raises(RestoreRefused, match="does not exist"):
        restore_backup(out, tmp_path / "no" / "such" / "device")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(RestoreRefused, match="already holds files"):
        restore_backup(out, busy)


# -- restore against the bank ---------------------------------------------------------------------------------
def test_round_trip_serves_and_syncs_without_a_fork(server, tmp_path, clock):
    # restore_backup asks the bank for its head by the real clock and notes that contact: a station clock behind
    # it would read as set back (station.device_state.clock_floor).
    clock.now = datetime.now(UTC)
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 3)
    sync_once(st)
    record_some(st, 2)  # recorded, not yet at the bank
    out = tmp_path / "st.tar.gz"
    backup_station(st, out)
    backup_head, _ = journal_head(st)
    assert st.setting("downlink_version") is not None  # the backup holds it; the restored station asks afresh
    st.close()  # the device dies

    result = restore_backup(out, tmp_path / "new-device")
    assert result.bank.acked_seq == backup_head - 2 and result.bank.status == "active"
    restored = Station(tmp_path / "new-device", clock=clock)
    try:
        assert restored.setting("downlink_version") is None
        client = create_app({"STATION": restored, "TESTING": True}).test_client()
        health = client.get("/health")
        assert health.status_code == 200
        assert health.get_json() == {"station": "ST-0001", "head_seq": backup_head, "state": "ready"}
        assert audit_journal(restored).intact
        record_some(restored, 2)
        synced = sync_once(restored)
        assert synced.pending == 0
        head_seq, head_token = journal_head(restored)
        server_db()
        bank = ServerStation.get_by_id("ST-0001")
        assert not bank.flagged and bank.acked_seq == head_seq == backup_head + 2
        assert bank.head == chain_hash(head_token)
        assert Entry.select().where(Entry.station_id == "ST-0001").count() == head_seq
    finally:
        restored.close()


def _assert_refused_with_advice(refused, target, tmp_path):
    message = str(refused.value)
    assert "Nothing was restored" in message
    assert "station export-journal" in message and "sync-server journal import OUT --station ST-0001" in message
    assert "sync-server station replace ST-0001" in message and "station enroll --server" in message
    assert not target.exists() and leftovers(tmp_path) == []


def test_stale_backup_is_refused_with_what_to_do(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 2)
    sync_once(st)
    out = tmp_path / "st.tar.gz"
    backup_station(st, out)
    backup_head, _ = journal_head(st)
    record_some(st, 2)  # the old device went on and synced after the backup
    sync_once(st)
    bank_head, _ = journal_head(st)
    target = tmp_path / "new-device"
    with pytest.raises(RestoreRefused) as refused:
        restore_backup(out, target)
    assert f"ends at seq {backup_head}, but the bank holds its journal up to seq {bank_head}" in str(refused.value)
    _assert_refused_with_advice(refused, target, tmp_path)

    result = CliRunner().invoke(cli, ["restore", "--data-dir", str(target), str(out)])
    assert result.exit_code == 1 and "would write new, different entries" in result.output
    assert "Traceback" not in result.output and not target.exists()


def test_backup_behind_the_stations_signed_tail_is_refused(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 4)  # not synced
    out = tmp_path / "st.tar.gz"
    backup_station(st, out)
    backup_head, _ = journal_head(st)
    record_some(st, 3)
    st.config["sync"] = {"max_entries": 2}
    sync_once(st, max_batches=1)  # the bank gets two entries, and the claim that the journal reaches further
    tail_head, _ = journal_head(st)
    server_db()
    assert ServerStation.get_by_id("ST-0001").acked_seq <= backup_head < tail_head
    target = tmp_path / "new-device"
    with pytest.raises(RestoreRefused) as refused:
        restore_backup(out, target)
    assert f"the station told the bank its journal had reached seq {tail_head}" in str(refused.value)
    _assert_refused_with_advice(refused, target, tmp_path)


def test_forked_backup_is_refused(server, tmp_path, clock):
    """A copy of the device that recorded other entries than the ones the bank received: its entry at the bank's
    acked seq is signed by the station's key, chained and intact, and still not the bank's."""
    st, clone = forked_devices(server, tmp_path, clock)
    bank_acked, _ = journal_head(st)
    assert journal_head(clone)[0] >= bank_acked
    out = tmp_path / "clone.tar.gz"
    backup_station(clone, out)
    target = tmp_path / "new-device"
    with pytest.raises(RestoreRefused) as refused:
        restore_backup(out, target)
    assert f"its entry at seq {bank_acked} is not the one the bank holds" in str(refused.value)
    _assert_refused_with_advice(refused, target, tmp_path)
    clone.close()
    st.close()


def test_unreachable_bank_refuses_unless_without_bank(server, tmp_path, clock):
    bank = start_server(server.database_url, server.keys_dir)  # the same bank, on a port that will close
    try:
        st = enrolled_station(bank, tmp_path, "ST-0002", clock)
        record_some(st, 2)
        out = tmp_path / "st.tar.gz"
        backup_station(st, out)
        st.close()
    finally:
        bank.stop()
    target = tmp_path / "new-device"
    with pytest.raises(RestoreRefused, match="cannot get the bank's head of station ST-0002") as refused:
        restore_backup(out, target)
    assert "--without-bank" in str(refused.value) and "fork" in str(refused.value)
    assert not target.exists() and leftovers(tmp_path) == []
    result = CliRunner().invoke(cli, ["restore", "--data-dir", str(target), str(out), "--without-bank"])
    assert result.exit_code == 0, result.output
    assert "Not checked with the bank (--without-bank)" in result.output
    restored = Station(target)
    try:
        assert audit_journal(restored).intact
    finally:
        restored.close()


# -- the bank's signed head -----------------------------------------------------------------------------------
def test_head_endpoint_is_signed_and_echoes_the_nonce(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 2)
    sync_once(st)
    nonce = heads.new_nonce()
    response = requests.get(f"{server.url}/api/v1/stations/ST-0001/head", params={"nonce": nonce}, timeout=10)
    assert response.status_code == 200
    check_against_openapi(response, "/api/v1/stations/{station_id}/head", "get")
    token = response.json()["signed_head"]
    payload = verify_token(token, server.app.extensions["server_keys"].signer.key)
    head_seq, head_token = journal_head(st)
    assert payload["nonce"] == nonce and payload["station"] == "ST-0001" and payload["typ"] == "station-head"
    assert payload["acked_seq"] == head_seq and payload["head"] == chain_hash(head_token)
    assert payload["status"] == "active" and payload["tail"] == {"seq": head_seq, "head": chain_hash(head_token)}
    pinned = st.config["server"]["signing_jwk"]
    opened = heads.open_signed_head(token, server_signing_jwk=pinned, station_id="ST-0001", nonce=nonce)
    assert (opened.acked_seq, opened.head, opened.tail_seq) == (head_seq, chain_hash(head_token), head_seq)
    assert fetch_bank_head(st).acked_seq == head_seq

    with pytest.raises(heads.BadHeadAnswer, match="another request"):
        heads.open_signed_head(token, server_signing_jwk=pinned, station_id="ST-0001", nonce=heads.new_nonce())
    with pytest.raises(heads.BadHeadAnswer, match="not ST-0002"):
        heads.open_signed_head(token, server_signing_jwk=pinned, station_id="ST-0002", nonce=nonce)
    other_key = public_jwk(generate_signing_key())
    with pytest.raises(heads.BadHeadAnswer, match="does not verify"):
        heads.open_signed_head(token, server_signing_jwk=other_key, station_id="ST-0001", nonce=nonce)

    # An old answer replayed on the way to the station is refused by the client.
    class Replaying:
        def get(self, url, **kwargs):
            return response

    with pytest.raises(SyncRefused, match="another request") as refused:
        fetch_bank_head(st, http=Replaying())
    assert refused.value.status == 502
    st.close()


def test_head_endpoint_refusals(server):
    nonce = heads.new_nonce()
    unknown = requests.get(f"{server.url}/api/v1/stations/ST-9999/head", params={"nonce": nonce}, timeout=10)
    assert unknown.status_code == 404 and problem_type(unknown) == "unknown-station"
    check_against_openapi(unknown, "/api/v1/stations/{station_id}/head", "get")
    for params in ({}, {"nonce": "short"}, {"nonce": "x" * 129}, {"nonce": "not/base64url/at/all!!"}):
        bad = requests.get(f"{server.url}/api/v1/stations/ST-0001/head", params=params, timeout=10)
        assert bad.status_code == 400 and problem_type(bad) == "malformed-request", params
        check_against_openapi(bad, "/api/v1/stations/{station_id}/head", "get")
    # A station the bank knows but that never enrolled: nothing held yet.
    pending = requests.get(f"{server.url}/api/v1/stations/ST-0002/head", params={"nonce": nonce}, timeout=10)
    payload = unverified_payload(pending.json()["signed_head"])
    assert (payload["status"], payload["acked_seq"], payload["head"], payload["tail"]) == ("pending", 0, None, None)


def test_unknown_station_at_the_bank_is_refused(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    out = tmp_path / "st.tar.gz"
    backup_station(st, out)
    st.close()

    class AnotherStationsBank:
        """The bank's real answer for a station it does not know (the backup names a station of another bank)."""

        def get(self, url, **kwargs):
            return requests.get(url.replace("ST-0001", "ST-9999"), **kwargs)

    with pytest.raises(RestoreRefused, match="knows no station ST-9999"):
        restore_backup(out, tmp_path / "device", http=AnotherStationsBank())
    assert not (tmp_path / "device").exists() and leftovers(tmp_path) == []

    class OlderBank:
        """A bank whose server has no head check yet: its real 404 for an unknown path."""

        def get(self, url, **kwargs):
            return requests.get(url.replace("/head", "/no-head-here"), **kwargs)

    class NotABank:
        """Something else on the bank's address, answering JSON that is no problem document."""

        def get(self, url, **kwargs):
            answer = requests.Response()
            answer.status_code, answer.reason, answer._content = 404, "Not Found", b"[1, 2]"
            return answer

    for http in (OlderBank(), NotABank()):
        with pytest.raises(RestoreRefused, match="cannot get the bank's head of station ST-0001.*--without-bank"):
            restore_backup(out, tmp_path / "device", http=http)
        assert not (tmp_path / "device").exists() and leftovers(tmp_path) == []


# -- the daily backup unit ------------------------------------------------------------------------------------
def _unit_command(unit_text: str, key: str) -> str:
    """The shell command of ``key`` (``ExecStart``...) as systemd hands it to /bin/sh: ``$$`` and ``%%`` unescaped."""
    line = next(line for line in unit_text.splitlines() if line.startswith(f"{key}="))
    argv = shlex.split(line.split("=", 1)[1])
    assert argv[:2] == ["/bin/sh", "-c"], argv
    return argv[2].replace("$$", "$").replace("%%", "%")


def test_daily_backup_unit_backs_up_and_rotates(station, tmp_path):
    units = ROOT / "provisioning" / "systemd"
    service = (units / "station-backup.service").read_text(encoding="utf-8")
    timer = (units / "station-backup.timer").read_text(encoding="utf-8")
    assert "OnCalendar=*-*-* 03:30:00" in timer and "Persistent=true" in timer
    assert "User=station" in service and "UMask=0077" in service
    station_cmd = tmp_path / "station-cmd"
    station_cmd.write_text(f'#!/bin/sh\nexec {sys.executable} -c "import sys; from station.cli import cli; '
                           f'sys.exit(cli())" "$@"\n')
    station_cmd.chmod(0o700)
    backups = tmp_path / "backups"
    backups.mkdir()
    old = backups / "station-20200101T033000Z.tar.gz"
    old.write_bytes(b"an old archive")
    keep = backups / "notes.txt"
    keep.write_text("not an archive of this unit")
    month_ago = time.time() - 30 * 86400
    os.utime(old, (month_ago, month_ago))
    os.utime(keep, (month_ago, month_ago))
    env = {**os.environ, "BACKUP_DIR": str(backups), "KEEP_DAYS": "14", "PYTHONPATH": str(ROOT),
           "STATION_DATA_DIR": str(station.data_dir)}
    start = _unit_command(service, "ExecStart").replace("/opt/station-kit/venv/bin/station", str(station_cmd))
    done = subprocess.run(["/bin/sh", "-c", start], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Backed up station ST-0001" in done.stdout
    made = sorted(backups.glob("station-2*.tar.gz"))
    assert len(made) == 2 and mode(made[-1]) == 0o600
    rotate = _unit_command(service, "ExecStartPost")
    assert subprocess.run(["/bin/sh", "-c", rotate], env=env, timeout=60).returncode == 0
    assert sorted(backups.iterdir()) == sorted([made[-1], keep])
    assert restore_backup(made[-1], tmp_path / "device").station_id == "ST-0001"


def test_a_restore_over_the_station_keeps_the_last_unlock_code_it_used(station, tmp_path, backup_of, clock):
    """A code the bank read out over the phone and typed after the backup was taken must not unlock again once the
    backup is restored over the station (its database still reads: its counter is kept)."""
    server = key_codecs.generate_encryption_key()
    (station.data_dir / ENCRYPTION_KEY_FILE).write_text(
        key_codecs.encryption_private_to_text(key_codecs.generate_encryption_key()))
    station.update_config("server", {"encryption_jwk": key_codecs.encryption_public_jwk(server)})
    wrong_pins(station, "A01", 5)
    out = backup_of(station)
    code = bank_code(station, server, "A01", 1)
    bank_unlock.unlock_with_code(station, "A01", code)
    target = station.data_dir
    station.close()
    restore_backup(out, target, replace=True, without_bank=True)
    restored = Station(target, clock=clock)
    try:
        with restored.bound():
            assert Agent.get_by_id("A01").locked  # as the backup had it
            with pytest.raises(errors.UnlockCodeWrong):
                bank_unlock.unlock_with_code(restored, "A01", code)
            assert bank_unlock.unlock_with_code(restored, "A01", bank_code(restored, server, "A01", 2))
    finally:
        restored.close()
