"""Key rotation: a signed key_rotation entry hands the journal over to a new key, at the station and at the bank.

Receipts signed with either key keep verifying (with another JOSE library too); the bank accepts the new key only
from that entry; an entry signed with a key the chain did not hand over to is refused.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws

from station import keys as station_keys
from station.cli import cli
from station.context import Station
from station.db import JournalEntry
from station.journal import audit_journal, export_journal
from station.keys import NEXT_KEY_FILE, RETIRED_DIR, SIGNING_KEY_FILE
from station.protocol.tokens import (
    KeyTrack,
    Signer,
    chain_hash,
    generate_signing_key,
    key_id,
    public_jwk,
    token_kid,
    unverified_payload,
    verify_chain,
)
from station.rotation import rotate_key
from station.sync import SyncError, SyncRefused, sync_once
from sync_server.db import Station as ServerStation
from sync_server.db import StationEvent, StationKey
from sync_server.lifecycle import station_keyset
from tests.sync_support import database_url, enrolled_station, pg_database_url, record_some, server, server_db  # noqa: F401


def jwcrypto_verifies(token: str, jwks: dict) -> dict:
    """Verify ``token`` with jwcrypto against a published JWKS (an independent verifier)."""
    keyset = jwcrypto_jwk.JWKSet.from_json(json.dumps(jwks))
    kid = token_kid(token)
    key = keyset.get_key(kid)
    assert key is not None, f"no key {kid} in the JWKS"
    signed = jwcrypto_jws.JWS()
    signed.deserialize(token)
    signed.allowed_algs = ["Ed25519", "EdDSA"]
    signed.verify(key)
    return json.loads(signed.payload)


def deposit(st) -> None:
    """One deposit at a station that does not sync (its demo customers), the day opened if need be."""
    from station import agents, business_day, operations, receipts
    from station.db import Customer
    from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN

    with st.bound():
        session = agents.login_agent(st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
        if business_day.current_day(st) is None:
            business_day.open_day(st, session, {"10000": 100})
        customer = Customer.select().where(Customer.card_number.is_null(False)).first()
        auth = agents.authenticate_customer(st, session, customer, DEMO_CUSTOMER_PIN)
        operations.deposit_cash(st, session, auth, 10_000, receipts.new_txn_id())


def tokens(st) -> list[tuple[int, str]]:
    with st.bound():
        return [(e.seq, e.token) for e in JournalEntry.select().order_by(JournalEntry.seq)]


def test_rotation_hands_the_journal_over_to_a_new_key(open_drawer, station):
    old_kid = station.signer.kid
    before = len(tokens(station))
    entry = rotate_key(station, "technician")
    new_kid = station.signer.kid
    assert new_kid != old_kid
    payload = unverified_payload(entry.token)
    assert payload["type"] == "key_rotation" and payload["reason"] == "technician"
    assert payload["jwk"]["kid"] == new_kid and "d" not in payload["jwk"]
    assert token_kid(entry.token) == old_kid  # the old key signs the hand-over
    deposit(station)
    after = tokens(station)[before + 1:]
    assert after and all(token_kid(token) == new_kid for _, token in after)
    # The new key is on disk as the signing key; a station that does not sync needs the old private key no more.
    assert key_id(station_keys.load_private_key(station.data_dir / SIGNING_KEY_FILE)) == new_kid
    assert not (station.data_dir / NEXT_KEY_FILE).exists()
    assert not list((station.data_dir / RETIRED_DIR).glob("*.jwk"))
    # The published keys hold both; the journal verifies; old and new receipts verify with jwcrypto.
    jwks = station.public_jwks()
    assert {key["kid"] for key in jwks["keys"]} == {old_kid, new_kid}
    assert audit_journal(station).intact
    for _, token in tokens(station):
        jwcrypto_verifies(token, jwks)


def test_the_chain_accepts_the_new_key_only_from_the_rotation_entry(station):
    rotate_key(station, "technician")
    chain = tokens(station)
    anchors = station.keyset()
    assert verify_chain(chain, anchors, station.station_id) is None
    # An entry after the rotation re-signed with a key the chain never handed over to: refused at that seq.
    intruder = Signer(generate_signing_key())
    forged_payload = {**unverified_payload(chain[-1][1])}
    forged = intruder.sign(forged_payload)
    problem = verify_chain(chain[:-1] + [(chain[-1][0], forged)], anchors, station.station_id)
    assert problem is not None and problem.seq == chain[-1][0]
    # The intruder's key published beside the station's does not help: it is not the key the chain hands over to.
    with_intruder = {"keys": station.public_jwks()["keys"] + [public_jwk(intruder.key)]}
    problem = verify_chain(chain[:-1] + [(chain[-1][0], forged)],
                           KeyTrack(with_intruder["keys"]), station.station_id)
    assert problem is not None and "the station's key at seq" in problem.reason


def test_an_entry_signed_with_the_old_key_after_the_rotation_is_refused(open_drawer, station):
    old_signer = station.signer
    rotate_key(station, "technician")
    # A thief with the old key writes on after the rotation: the chain names the new key there.
    with station.write():
        from station.journal import entry_payload, store_entry

        payload = entry_payload(station, "feedback", station.now(), {"agent": "A01", "category": "praise",
                                                                      "text": "x"})
        station.signer = old_signer
        station.set_setting("signing_kid", old_signer.kid)
        store_entry(station, payload, station.now())
    audit = audit_journal(station)
    assert not audit.intact and audit.problems[0].seq == payload["seq"]
    assert "the station's key at seq" in audit.problems[0].reason


def test_a_rotation_by_another_process_is_followed_by_the_serving_one(open_drawer, station):
    serving = station
    technician = Station(station.data_dir, clock=station.clock)
    try:
        rotate_key(technician, "technician")
        deposit(serving)  # the serving process signs with the key the journal names now
        last_seq, last_token = tokens(serving)[-1]
        assert token_kid(last_token) == technician.signer.kid == serving.signer.kid
        assert audit_journal(serving).intact
    finally:
        technician.close()


def test_a_rotation_interrupted_before_its_commit_is_undone_and_after_it_finished(station):
    data_dir = station.data_dir
    old_kid = station.signer.kid
    # Crash before the commit: next.jwk is on disk, the journal does not name it.
    (data_dir / NEXT_KEY_FILE).write_text(json.dumps(generate_signing_key().as_dict(private=True)))
    reopened = Station(data_dir)
    assert reopened.signer.kid == old_kid and not (data_dir / NEXT_KEY_FILE).exists()
    reopened.close()
    # Crash after the commit, before the renames: the rotation is finished when the station opens.
    signing = (data_dir / SIGNING_KEY_FILE).read_text()
    entry = rotate_key(station, "technician")
    new_private = (data_dir / SIGNING_KEY_FILE).read_text()
    (data_dir / NEXT_KEY_FILE).write_text(new_private)
    (data_dir / SIGNING_KEY_FILE).write_text(signing)
    reopened = Station(data_dir)
    try:
        assert reopened.signer.kid == unverified_payload(entry.token)["jwk"]["kid"]
        assert not (data_dir / NEXT_KEY_FILE).exists()
        assert audit_journal(reopened).intact
    finally:
        reopened.close()


def test_the_cli_rotates_and_says_so(station):
    old_kid = station.signer.kid
    result = CliRunner().invoke(cli, ["rotate-key", "--data-dir", str(station.data_dir)])
    assert result.exit_code == 0, result.output
    assert old_kid in result.output and "seq" in result.output
    bad = CliRunner().invoke(cli, ["rotate-key", "--data-dir", str(station.data_dir), "--reason", "whim"])
    assert bad.exit_code == 2


# -- at the bank ----------------------------------------------------------------------------------------------
def test_the_bank_takes_the_new_key_from_the_rotation_entry(server, tmp_path, clock):  # noqa: F811
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    old_kid = st.signer.kid
    record_some(st, count=2)
    sync_once(st)
    rotation = rotate_key(st, "scheduled")
    retired = st.data_dir / RETIRED_DIR / f"{old_kid}.jwk"
    assert retired.exists()  # a batch of entries before the rotation may still need it
    record_some(st, count=2)
    result = sync_once(st)
    assert result.pending == 0 and not result.rejected
    assert not retired.exists()  # the bank holds the rotation: the old private key is deleted
    server_db()
    station_row = ServerStation.get_by_id("ST-0001")
    assert station_row.kid == st.signer.kid and not station_row.rotate_requested
    rows = {row.kid: row for row in StationKey.select().where(StationKey.station_id == "ST-0001")}
    assert set(rows) == {old_kid, st.signer.kid}
    assert rows[st.signer.kid].from_seq == rotation.seq + 1 and rows[st.signer.kid].source == "rotation"
    assert StationEvent.select().where((StationEvent.station_id == "ST-0001")
                                       & (StationEvent.action == "key_rotated")).count() == 1
    # Every receipt, before and after, verifies with the keys the bank holds (jwcrypto), and so does the chain.
    bank_jwks = {"keys": [key.as_dict(private=False) for key in station_keyset("ST-0001").keys]}
    for _, token in tokens(st):
        jwcrypto_verifies(token, bank_jwks)
    assert verify_chain(tokens(st), station_keyset("ST-0001"), "ST-0001") is None
    # A heartbeat after the rotation (signed with the new key) is accepted too.
    assert sync_once(st).pending == 0


def test_rotation_and_entries_after_it_in_one_batch_and_an_export_that_verifies(server, tmp_path, clock):  # noqa: F811
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, count=1)
    rotate_key(st, "technician")
    record_some(st, count=1)
    rotate_key(st, "technician")
    record_some(st, count=1)
    assert sync_once(st).pending == 0  # one batch: two hand-overs, then entries of the third key
    server_db()
    assert StationKey.select().where(StationKey.station_id == "ST-0001").count() == 3
    export_journal(st, tmp_path / "export")
    exported = json.loads((tmp_path / "export" / "jwks.json").read_text())
    assert len(exported["keys"]) == 3


def test_a_batch_signed_with_a_key_the_chain_never_handed_over_to_is_refused(server, tmp_path, clock):  # noqa: F811
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, count=1)
    # A copy of the device that swapped in its own key without a rotation entry.
    intruder = generate_signing_key()
    (st.data_dir / SIGNING_KEY_FILE).write_text(json.dumps(intruder.as_dict(private=True)))
    # (The station's own start check refuses a journal head its keys do not verify: the intruder's copy skips it.)
    stolen = Station(st.data_dir, clock=clock, check_head=False)
    try:
        record_some(stolen, count=1)
        # The copy cannot sign a batch with the key the journal names: it says so instead of a traceback.
        with pytest.raises(SyncError, match="cannot sign its batch"):
            sync_once(stolen)
        # ...and when it signs the batch with its own key too, the bank refuses the entry it signed.
        stolen.signer_for = lambda seq: Signer(intruder)
        with pytest.raises(SyncRefused) as refused:
            sync_once(stolen)
        assert refused.value.problem.get("seq") == tokens(stolen)[-1][0]
        assert "not one of the station's keys" in str(refused.value)
    finally:
        stolen.close()
    server_db()
    assert ServerStation.get_by_id("ST-0001").acked_seq < tokens(st)[-1][0]


def test_the_bank_asks_and_the_station_rotates_at_the_next_sync(server, tmp_path, clock):  # noqa: F811
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    old_kid = st.signer.kid
    server_db()
    ServerStation.update(rotate_requested=True).where(ServerStation.station_id == "ST-0001").execute()
    sync_once(st)  # the downlink carries the request
    assert st.setting("rotate_requested") is True and st.signer.kid == old_kid
    sync_once(st)  # the rotation entry goes out with this sync
    assert st.signer.kid != old_kid and not st.setting("rotate_requested")
    rotations = [token for _, token in tokens(st) if unverified_payload(token)["type"] == "key_rotation"]
    assert len(rotations) == 1 and unverified_payload(rotations[0])["reason"] == "bank_request"
    row = ServerStation.get_by_id("ST-0001")
    assert row.kid == st.signer.kid and row.rotate_requested is False
    assert chain_hash(tokens(st)[-1][1]) == row.head


# -- a replacement device -------------------------------------------------------------------------------------
def test_a_replacement_device_continues_the_chain_from_the_banks_head(server, tmp_path, clock):  # noqa: F811
    from station.sync import enroll_station
    from sync_server.admin import replace_station

    old = enrolled_station(server, tmp_path, "ST-0001", clock)
    old.update_config("sync", {"attempts": 1})
    record_some(old, count=2)
    sync_once(old)
    rotate_key(old, "technician")
    record_some(old, count=1)
    sync_once(old)
    record_some(old, count=2)
    # One more entry reaches the bank, with the signed claim that the journal goes one further; then the device
    # dies: that last deposit never arrives.
    old.update_config("sync", {"max_entries": 1, "attempts": 1})
    sync_once(old, max_batches=1)
    server_db()
    bank = ServerStation.get_by_id("ST-0001")
    held = tokens(old)[:bank.acked_seq]
    assert bank.acked_seq == tokens(old)[-1][0] - 1
    code = replace_station("ST-0001", by="Li Wei")
    new = enroll_station(tmp_path / "replacement", server.url, code, clock=clock)
    try:
        first = tokens(new)
        assert len(first) == 1 and first[0][0] == bank.acked_seq + 1
        start = unverified_payload(first[0][1])
        assert start["type"] == "start" and start["continues"] == bank.acked_seq
        assert start["prev"] == chain_hash(held[-1][1]) and token_kid(first[0][1]) == new.signer.kid
        assert audit_journal(new).intact
        # The old device back before the new one synced: the seq after the bank's head is the new device's.
        with pytest.raises(SyncRefused, match="replacement device"):
            sync_once(old)
        assert sync_once(new).pending == 0  # the start entry, and the customers in the downlink
        record_some(new, count=2)
        result = sync_once(new)
        assert result.pending == 0 and not result.rejected
        server_db()
        bank = ServerStation.get_by_id("ST-0001")
        assert bank.kid == new.signer.kid and bank.acked_seq == tokens(new)[-1][0]
        # The bank's chain is one chain: the old device's entries, then the new one's, each under its key.
        whole = held + tokens(new)
        assert verify_chain(whole, station_keyset("ST-0001"), "ST-0001") is None
        bank_jwks = {"keys": [key.as_dict(private=False) for key in station_keyset("ST-0001").keys]}
        for _, token in whole:
            jwcrypto_verifies(token, bank_jwks)
        event = StationEvent.get((StationEvent.station_id == "ST-0001") & (StationEvent.action == "device_replaced"))
        assert event.detail["entries_never_received"] == 1  # the old device's last deposit never arrived
        # The old device, should it come back, is refused (its entry at that seq is not the replacement's start),
        # and the station is not flagged for it: the new device syncs on.
        with pytest.raises(SyncRefused, match="replacement device"):
            sync_once(old)
        server_db()
        assert not ServerStation.get_by_id("ST-0001").flagged
        assert sync_once(new).pending == 0
    finally:
        new.close()


def test_a_replacement_code_is_refused_for_a_station_that_never_enrolled_and_is_one_time(server, tmp_path, clock):  # noqa: F811
    from sync_server.admin import AdminError, add_station, replace_station

    server_db()
    add_station("ST-0002", "Pending")
    with pytest.raises(AdminError, match="only an enrolled station"):
        replace_station("ST-0002")
    with pytest.raises(AdminError, match="No station"):
        replace_station("ST-9999")
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    code = replace_station("ST-0001")
    from station.sync import EnrollError, enroll_station

    new = enroll_station(tmp_path / "replacement", server.url, code, clock=clock)
    new.close()
    with pytest.raises(EnrollError, match="already been used"):
        enroll_station(tmp_path / "another", server.url, code, clock=clock)
    assert not (tmp_path / "another" / "config.json").exists()
    st.close()


def test_a_backup_taken_between_a_rotation_and_its_ack_restores_and_syncs(server, tmp_path, clock):  # noqa: F811
    from station.backup import backup_station, restore_backup

    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, count=2)  # not yet at the bank
    old_kid = st.signer.kid
    rotate_key(st, "technician")
    record_some(st, count=1)
    out = tmp_path / "st.tar.gz"
    backup_station(st, out)  # the retired key goes with it: the batch before the rotation still needs it
    st.close()
    restore_backup(out, tmp_path / "new-device")
    restored = Station(tmp_path / "new-device", clock=clock)
    try:
        assert (restored.data_dir / RETIRED_DIR / f"{old_kid}.jwk").exists()
        assert audit_journal(restored).intact
        assert {key["kid"] for key in restored.public_jwks()["keys"]} == {old_kid, restored.signer.kid}
        assert sync_once(restored).pending == 0
        assert not (restored.data_dir / RETIRED_DIR / f"{old_kid}.jwk").exists()
    finally:
        restored.close()


def test_a_replacement_devices_export_verifies_and_imports(server, tmp_path, clock):  # noqa: F811
    from station.journal import audit_export
    from station.sync import enroll_station
    from sync_server.admin import replace_station
    from sync_server.journal_import import import_journal

    old = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(old, count=1)
    sync_once(old)
    server_db()
    new = enroll_station(tmp_path / "replacement", server.url, replace_station("ST-0001"), clock=clock)
    try:
        sync_once(new)
        record_some(new, count=2)  # recorded; the new device dies before it syncs them
        export_journal(new, tmp_path / "export")
        server_db()
        audit = audit_export(tmp_path / "export", station_keyset("ST-0001"), "ST-0001")
        assert audit.intact, audit.as_dict()
        unsent = tokens(new)[-1][0] - ServerStation.get_by_id("ST-0001").acked_seq
        result = import_journal(tmp_path / "export", "ST-0001", by="Wang Fang")
        assert unsent >= 2 and result.entries == unsent
        assert ServerStation.get_by_id("ST-0001").acked_seq == tokens(new)[-1][0]
    finally:
        new.close()


def test_recon_proves_a_rotated_and_replaced_station_clean(server, tmp_path, clock):  # noqa: F811
    from datetime import UTC, datetime, timedelta

    from station.simulate import simulate
    from station.sync import enroll_station
    from sync_server.admin import replace_station
    from sync_server.recon.context import Scope
    from sync_server.recon.run import find_discrepancies

    clock.now = datetime.now(UTC) - timedelta(hours=2)  # the station's clock agrees with the bank's
    old = enrolled_station(server, tmp_path, "ST-0001", clock)
    simulate(old, 15, seed=2, start=clock.now)
    rotate_key(old, "scheduled")
    simulate(old, 10, seed=3)
    sync_once(old)
    server_db()
    new = enroll_station(tmp_path / "replacement", server.url, replace_station("ST-0001"), clock=clock)
    try:
        sync_once(new)
        simulate(new, 10, seed=4)
        sync_once(new)
        findings = find_discrepancies(server_db(), Scope(), datetime.now(UTC))
        assert [(d.kind, d.seq, d.detail) for d in findings.discrepancies if d.kind in (
            "unknown_key", "bad_signature", "broken_chain", "fork", "missing_tail", "seq_gap")] == []
        assert [proof["head_verified"] for proof in findings.stations if proof["entries"]] == [True]
    finally:
        new.close()


def test_status_shows_the_key_and_a_missing_ca_bundle_is_a_clear_sync_error(server, tmp_path, clock):  # noqa: F811
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    before = json.loads(CliRunner().invoke(cli, ["status", "--data-dir", str(st.data_dir), "--json"]).output)
    assert before["signing_kid"] == st.signer.kid and before["signing_keys"] == 1
    assert before["rotate_requested"] is False
    rotate_key(st, "technician")
    after = json.loads(CliRunner().invoke(cli, ["status", "--data-dir", str(st.data_dir), "--json"]).output)
    assert after["signing_kid"] == st.signer.kid != before["signing_kid"] and after["signing_keys"] == 2
    # A CA bundle that is not there: the sync says so (exit 1, no traceback), and nothing leaves the outbox.
    st.update_config("sync", {"ca_bundle": str(tmp_path / "no-such-bundle.pem"), "attempts": 1})
    st.update_config("server", {**st.config["server"], "url": "https://127.0.0.1:9"})  # TLS reads the bundle
    result = CliRunner().invoke(cli, ["sync", "--data-dir", str(st.data_dir)])
    assert result.exit_code == 1 and "ca_bundle" in result.output, result.output
    assert not isinstance(result.exception, OSError)


def test_a_backup_of_a_replaced_device_is_refused(server, tmp_path, clock):  # noqa: F811
    from station.backup import RestoreRefused, backup_station, restore_backup
    from station.sync import enroll_station
    from sync_server.admin import replace_station

    old = enrolled_station(server, tmp_path, "ST-0001", clock)
    out = tmp_path / "old.tar.gz"
    backup_station(old, out)
    old.close()
    server_db()
    new = enroll_station(tmp_path / "replacement", server.url, replace_station("ST-0001"), clock=clock)
    new.close()  # enrolled, not yet synced: the bank's acked seq is still the old device's
    with pytest.raises(RestoreRefused, match="replacement device has been enrolled"):
        restore_backup(out, tmp_path / "restored")
    assert not (tmp_path / "restored").exists()


def test_two_processes_rotating_one_after_the_other_keep_one_chain(station):
    first = Station(station.data_dir, clock=station.clock)
    try:
        rotate_key(first, "technician")
        rotate_key(station, "technician")  # this process still held the key from before the first rotation
        assert audit_journal(station).intact
        chain = tokens(station)
        first_rotation, second_rotation = chain[-2][1], chain[-1][1]
        # The second rotation is signed with the key the first handed over to, and names this process's new key.
        assert token_kid(second_rotation) == unverified_payload(first_rotation)["jwk"]["kid"]
        assert unverified_payload(second_rotation)["jwk"]["kid"] == station.signer.kid
        reopened = Station(station.data_dir)
        try:
            assert reopened.signer.kid == station.signer.kid
            assert not list((reopened.data_dir / RETIRED_DIR).glob("*.jwk"))
        finally:
            reopened.close()
    finally:
        first.close()


@pytest.mark.parametrize("header", [b"[" * 100_000, b'{"alg":"Ed25519"}', b"not json", b'{"kid":7}'])
def test_a_batch_signature_header_that_names_no_key_is_refused_not_a_crash(station, header):
    import struct

    from station.protocol import envelope, key_codecs
    from station.protocol.envelope_errors import EnvelopeError
    from station.protocol.sealing import batch_info, seal
    from station.protocol.tokens import b64url

    server_key = key_codecs.generate_encryption_key()
    detached = f"{b64url(header)}..{b64url(bytes(64))}".encode("ascii")
    body = struct.pack(">I", 2) + b"{}"
    plaintext = envelope.BATCH_MAGIC + struct.pack(">I", len(detached)) + detached + body
    sealed = seal(plaintext, server_key.public_key(), info=batch_info("ST-0001", 1, 1), level=1)
    with pytest.raises(EnvelopeError):
        envelope.open_batch(sealed, station_id="ST-0001", first=1, last=1, server_encryption_key=server_key,
                            station_signing_jwk=public_jwk(station.signing_key))


def test_sync_server_station_replace_prints_the_code_and_writes_the_qr(server, tmp_path, clock):  # noqa: F811
    import zxingcpp
    from PIL import Image

    from station.protocol.enrollment_qr import parse
    from station.sync import enroll_station
    from sync_server.cli import cli as server_cli

    enrolled_station(server, tmp_path, "ST-0001", clock)
    database = ["--database-url", server.database_url]
    bad = CliRunner().invoke(server_cli, ["station", "replace", "ST-0001", "--server-url", "ftp://x", *database])
    assert bad.exit_code == 2 and "--server-url" in bad.output  # refused before a code is spent
    qr = tmp_path / "replace.png"
    result = CliRunner().invoke(server_cli, ["station", "replace", "ST-0001", "--by", "Wang Fang", "--server-url",
                                             server.url, "--qr", str(qr), *database])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    found = zxingcpp.read_barcodes(Image.open(qr), formats=zxingcpp.BarcodeFormat.QRCode)
    ticket = parse(found[0].text)
    assert found[0].text == lines[-2] and ticket.code == lines[-1] and ticket.station_id == "ST-0001"
    new = enroll_station(tmp_path / "replacement", ticket.server, ticket.code, clock=clock)
    try:
        assert new.station_id == "ST-0001" and new.setting("chain_base")["seq"] >= 1
    finally:
        new.close()


@pytest.mark.parametrize("jwk", [{"kty": "OKP", "crv": "Ed25519", "x": "not-a-key"}, {"kty": "RSA"}, "text", None])
def test_a_signed_rotation_naming_no_usable_key_is_rejected_and_the_old_key_signs_on(server, tmp_path, clock,  # noqa: F811
                                                                                    jwk):
    from tests.sync_support import append_forged_entry

    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    old_kid = st.signer.kid
    with st.write():
        forged = append_forged_entry(st, "key_rotation", st.now(), {"jwk": jwk, "reason": "technician"})
    record_some(st, count=1)  # still signed with the old key: the rotation handed over nothing
    result = sync_once(st)
    assert result.pending == 0 and result.rejected == {forged.seq: "malformed_entry"}
    server_db()
    assert ServerStation.get_by_id("ST-0001").kid == old_kid
    assert StationKey.select().where(StationKey.station_id == "ST-0001").count() == 1
    assert audit_journal(st).problems[0].seq == forged.seq  # the station's own check names it too
