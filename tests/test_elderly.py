"""Elderly customers, below the browser: the ID card check digit, the ID step of a withdrawal (station and bank),
the amount read aloud, and large print kept for the session."""

from __future__ import annotations

import io
import json
import wave
from datetime import date

import pytest
from sync_support import append_forged_entry, enrolled_station, server_db
from ui_helpers import ID_NUMBER, card_customer, identify, identity_present, login, start, txn_of

from station import agents, errors, operations, receipts, speech
from station.db import JournalEntry, Operation
from station.demo import DEMO_CUSTOMER_PIN
from station.identity import ID_HASH_KEY_FILE, identity_fields
from station.protocol.id_card import IdNumberError, check_character, id_hash, identity_problem, parse_id_number
from station.protocol.policy import DEFAULT_POLICY
from station.protocol.tokens import unverified_payload
from station.sync import sync_once
from sync_server.db import Posting

TODAY = date(2026, 11, 3)


# -- the check digit (GB 11643-1999, ISO 7064 MOD 11-2) ----------------------------------------------------------
@pytest.mark.parametrize("typed, number", [
    ("11010519491231002X", "11010519491231002X"),  # the standard's own example: a remainder of 10 is written X
    ("110101190001011009", "110101190001011009"),  # 1 January 1900, the earliest birth year taken
    ("11010519491231002x", "11010519491231002X"),  # a lowercase x as typed
    ("１１０１０５１９４９１２３１００２Ｘ", "11010519491231002X"),  # full-width, as a Chinese keyboard types
    (" 110105 19491231 002X ", "11010519491231002X"),  # spaces as a card groups it
])
def test_valid_numbers(typed, number):
    assert parse_id_number(typed, today=TODAY) == number


def test_the_check_character_of_the_examples():
    assert check_character("11010519491231002") == "X"
    assert check_character("44052418800101001") == "4"


@pytest.mark.parametrize("number, code", [
    ("110105194912310021", "check_digit"),  # one check character off
    ("11010519491231003X", "check_digit"),  # a sequence digit changed
    ("110105194913210020", "birth_date"),  # month 13 (each with its right check character)
    ("110105194902300020", "birth_date"),  # 30 February
    ("110105189912310023", "birth_date"),  # before 1900
    ("110105202712310022", "birth_date"),  # born after today
    ("11010519491231002", "format"),  # 17 characters
    ("11010519491231002X1", "format"),
    ("1101051949123100XX", "format"),  # X only as the last character
    ("11010519491231002Y", "format"),
    ("", "format"),
    ("١١٠١٠٥١٩٤٩١٢٣١٠٠٢X", "format"),  # Arabic-Indic digits are digits to Python, not on a Chinese card
    ("1" * 200, "format"),
])
def test_invalid_numbers(number, code):
    with pytest.raises(IdNumberError) as refused:
        parse_id_number(number, today=TODAY)
    assert refused.value.code == code


def test_the_hash_is_keyed():
    assert id_hash(b"k" * 32, ID_NUMBER) == id_hash(b"k" * 32, ID_NUMBER)
    assert id_hash(b"k" * 32, ID_NUMBER) != id_hash(b"j" * 32, ID_NUMBER)
    assert len(id_hash(b"k" * 32, ID_NUMBER)) == 64


@pytest.mark.parametrize("payload, reason", [
    ({"amount": 50_000}, None),
    ({"amount": 51_000}, "id_required"),
    ({"amount": 10_000, "proxy": True}, "id_required"),
    ({"amount": 10_000, "proxy": False}, None),
    ({"amount": 100_000, "id_hash": "a" * 64, "id_last4": "002X"}, None),
    ({"amount": 100_000, "id_hash": "a" * 64}, "malformed_entry"),
    ({"amount": 100_000, "id_last4": "002X"}, "malformed_entry"),
    ({"amount": 100_000, "id_hash": "A" * 64, "id_last4": "002X"}, "malformed_entry"),
    ({"amount": 100_000, "id_hash": "a" * 64, "id_last4": "02X"}, "malformed_entry"),
    ({"amount": 100_000, "id_hash": "a" * 64, "id_last4": "X002"}, "malformed_entry"),
    ({"amount": 100_000, "id_hash": ID_NUMBER, "id_last4": "002X"}, "malformed_entry"),
])
def test_the_banks_identity_rule(payload, reason):
    assert identity_problem(DEFAULT_POLICY, payload) == reason


# -- the station's core -----------------------------------------------------------------------------------------
def test_identity_fields_keep_no_number(station):
    fields = identity_fields(station, ID_NUMBER.lower(), proxy=True)
    assert fields["id_last4"] == "002X" and fields["proxy"] is True and len(fields["id_hash"]) == 64
    assert ID_NUMBER not in json.dumps(fields)
    key_file = station.data_dir / ID_HASH_KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert identity_fields(station, ID_NUMBER, proxy=False) == {k: fields[k] for k in ("id_hash", "id_last4")}
    with pytest.raises(errors.InvalidIdNumber) as refused:
        identity_fields(station, "110105194912310021", proxy=False)
    assert refused.value.message == "This ID card number does not add up: check each digit against the card."


def test_a_large_withdrawal_needs_the_id_card_and_journals_only_its_hash(open_drawer, agent):
    st = open_drawer
    customer = card_customer()
    auth = agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
    with pytest.raises(errors.IdentityRequired) as refused:
        operations.withdraw_cash(st, agent, auth, "510", receipts.new_txn_id())
    assert refused.value.message == ("Above 500.00 yuan, or for a proxy, record the ID card of the person present "
                                     "first.")
    with pytest.raises(errors.IdentityRequired):
        operations.withdraw_cash(st, agent, auth, "100", receipts.new_txn_id(), identity={"proxy": True})
    small = operations.withdraw_cash(st, agent, auth, "200", receipts.new_txn_id())
    assert "id_hash" not in unverified_payload(JournalEntry.get_by_id(small.seq).token)
    large = operations.withdraw_cash(st, agent, auth, "510", receipts.new_txn_id(), identity=identity_present(st))
    payload = unverified_payload(JournalEntry.get_by_id(large.seq).token)
    assert payload["id_last4"] == "002X" and len(payload["id_hash"]) == 64 and "proxy" not in payload
    assert Operation.get_by_id(large.txn).details["id_last4"] == "002X"
    # The number itself is nowhere in the database file.
    st.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    assert ID_NUMBER.encode() not in (st.data_dir / "station.db").read_bytes()


# -- the bank re-checks, on SQLite and PostgreSQL -------------------------------------------------------------------
OWN = "DM00010005"  # home only at ST-0001: its hold there is 1,000 yuan


def forge_withdrawal(st, **body):
    with st.write():
        return append_forged_entry(st, "withdrawal", st.now(), {"agent": "A01", "account": OWN, **body},
                                   txn=receipts.new_txn_id())


def test_the_bank_refuses_a_large_or_proxy_withdrawal_without_the_id_card(server, tmp_path, clock):
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    without = forge_withdrawal(one, amount=60_000)
    proxy = forge_withdrawal(one, amount=10_000, proxy=True)
    half = forge_withdrawal(one, amount=60_000, id_last4="002X")
    assert sync_once(one).rejected == {without.seq: "id_required", proxy.seq: "id_required",
                                       half.seq: "malformed_entry"}
    fields = identity_fields(one, ID_NUMBER, proxy=True)
    honest = forge_withdrawal(one, amount=60_000, **fields)
    small = forge_withdrawal(one, amount=20_000)
    assert sync_once(one).rejected == {}
    server_db()
    assert {row.seq for row in Posting.select().where(Posting.station_id == "ST-0001")} >= {honest.seq, small.seq}


# -- the UI: the ID step, the amount read aloud, large print ----------------------------------------------------------
@pytest.fixture
def teller(ui_client, open_drawer):
    login(ui_client)
    return ui_client


def test_the_id_step_only_when_needed(teller):
    customer = card_customer()
    start(teller, "withdrawal")
    identify(teller, "withdrawal", customer)
    assert teller.post("/op/withdrawal/amount", data={"amount": "500"}).location.endswith("/confirm")
    assert teller.post("/op/withdrawal/amount", data={"amount": "600"}).location.endswith("/identity")
    assert teller.get("/op/withdrawal/confirm").location.endswith("/identity")
    page = teller.post("/op/withdrawal/identity", data={"id_number": "110105194912310021"}).get_data(as_text=True)
    assert "这个身份证号码对不上" in page
    assert teller.post("/op/withdrawal/identity", data={"id_number": ID_NUMBER}).location.endswith("/confirm")
    with teller.session_transaction() as cookie:
        assert cookie["op"]["id_last4"] == "002X" and ID_NUMBER not in json.dumps(cookie)
    assert "****002X" in teller.get("/op/withdrawal/confirm").get_data(as_text=True)
    # A changed amount needs the card again; a proxy needs it whatever the amount.
    teller.post("/op/withdrawal/amount", data={"amount": "700"})
    with teller.session_transaction() as cookie:
        assert "id_hash" not in cookie["op"]
    teller.post("/op/withdrawal/proxy")
    with teller.session_transaction() as cookie:
        assert cookie["op"]["proxy"] is True and "amount" not in cookie["op"]
    assert teller.post("/op/withdrawal/amount", data={"amount": "100"}).location.endswith("/identity")
    teller.post("/op/withdrawal/identity", data={"id_number": ID_NUMBER})
    teller.post("/op/withdrawal/confirm")
    page = teller.get("/op/withdrawal/pin").get_data(as_text=True)
    teller.post("/op/withdrawal/pin", data={"pin": DEMO_CUSTOMER_PIN, "txn": txn_of(page)})
    payload = unverified_payload(JournalEntry.get_by_id(Operation.get().seq).token)
    assert payload["proxy"] is True and payload["id_last4"] == "002X" and payload["amount"] == 10_000


def test_another_id_card_after_the_confirmation_is_confirmed_again(teller):
    """The back button (or a second tab) to the ID step once the customer confirmed: a different card voids the
    confirmation, so the PIN never records a card the confirm screen did not show; the same card keeps it."""
    other = "110105198001010032"  # another valid number (its check character computed: 2)
    start(teller, "withdrawal")
    identify(teller, "withdrawal", card_customer())
    teller.post("/op/withdrawal/amount", data={"amount": "600"})
    teller.post("/op/withdrawal/identity", data={"id_number": ID_NUMBER})
    assert teller.post("/op/withdrawal/confirm").location.endswith("/pin")
    assert teller.post("/op/withdrawal/identity", data={"id_number": ID_NUMBER}).location.endswith("/pin")
    assert teller.post("/op/withdrawal/identity", data={"id_number": other}).location.endswith("/confirm")
    assert teller.get("/op/withdrawal/pin").location.endswith("/confirm")
    assert "****0032" in teller.get("/op/withdrawal/confirm").get_data(as_text=True)
    teller.post("/op/withdrawal/confirm")
    page = teller.get("/op/withdrawal/pin").get_data(as_text=True)
    teller.post("/op/withdrawal/pin", data={"pin": DEMO_CUSTOMER_PIN, "txn": txn_of(page)})
    assert unverified_payload(JournalEntry.get_by_id(Operation.get().seq).token)["id_last4"] == "0032"


def test_an_id_check_lowered_before_the_pin_asks_for_the_card_not_a_dead_end(teller, open_drawer):
    """The bank's id_check_fen came down (a sync) between the amount step, which skipped the ID card, and the PIN:
    the PIN screen sends the agent to the ID step, then the confirmation again, instead of refusing for ever."""
    start(teller, "withdrawal")
    identify(teller, "withdrawal", card_customer())
    assert teller.post("/op/withdrawal/amount", data={"amount": "400"}).location.endswith("/confirm")
    teller.post("/op/withdrawal/confirm")
    open_drawer.set_setting("policy", {"id_check_fen": 30_000})
    page = teller.get("/op/withdrawal/pin").get_data(as_text=True)
    answer = teller.post("/op/withdrawal/pin", data={"pin": DEMO_CUSTOMER_PIN, "txn": txn_of(page)})
    assert answer.status_code == 302 and answer.location.endswith("/op/withdrawal/identity")
    assert teller.post("/op/withdrawal/identity", data={"id_number": ID_NUMBER}).location.endswith("/confirm")
    teller.post("/op/withdrawal/confirm")
    page = teller.get("/op/withdrawal/pin").get_data(as_text=True)
    assert teller.post("/op/withdrawal/pin", data={"pin": DEMO_CUSTOMER_PIN, "txn": txn_of(page)}).status_code == 302
    assert unverified_payload(JournalEntry.get_by_id(Operation.get().seq).token)["id_last4"] == "002X"


def test_the_amount_is_read_aloud_as_a_wav(teller):
    assert teller.get("/op/speech.wav").status_code == 409
    start(teller, "withdrawal")
    assert teller.get("/op/speech.wav").status_code == 409  # no amount yet
    identify(teller, "withdrawal", card_customer())
    teller.post("/op/withdrawal/amount", data={"amount": "1000"})
    answer = teller.get("/op/speech.wav")
    assert answer.status_code == 200 and answer.mimetype == "audio/wav"
    body = answer.get_data()
    assert body[:4] == b"RIFF" and body[8:12] == b"WAVE" and len(body) > 20_000
    with wave.open(io.BytesIO(body)) as sound:
        assert sound.getnframes() / sound.getframerate() > 1.0  # "取款，一千元整" takes a few seconds
    assert speech.amount_speech("withdrawal", 100_000) == "取款，一千元整"


def test_without_espeak_there_is_no_speech_button_and_no_500(teller, monkeypatch):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    start(teller, "withdrawal")
    identify(teller, "withdrawal", card_customer())
    teller.post("/op/withdrawal/amount", data={"amount": "100"})
    assert 'id="speak"' not in teller.get("/op/withdrawal/confirm").get_data(as_text=True)
    assert teller.get("/op/speech.wav").status_code == 404


def test_a_failing_synthesis_is_a_503(teller, monkeypatch):
    monkeypatch.setattr(speech, "ESPEAK", "/bin/false")
    speech.speech_wav.cache_clear()
    start(teller, "deposit")
    identify(teller, "deposit", card_customer())
    teller.post("/op/deposit/amount", data={"amount": "123.45"})
    assert teller.get("/op/speech.wav").status_code == 503
    speech.speech_wav.cache_clear()


@pytest.mark.parametrize("fen, words", [
    (100_000, "一千元整"), (105_050, "一千零五十元五角"), (1_205, "十二元零五分"), (50, "五角"), (5, "五分"),
    (2_000_000, "二万元整"), (10_001, "一百元零一分"), (10_010, "一百元一角"),
])
def test_amount_words(fen, words):
    assert speech.amount_words(fen) == words


def test_large_print_lasts_the_session_and_ends_at_logout(teller):
    assert 'class="large"' not in teller.get("/home").get_data(as_text=True)
    assert teller.post("/large-print", data={"next": "/receipts/"}).location == "/receipts/"
    assert '<body class="large">' in teller.get("/home").get_data(as_text=True)
    assert '<body class="large">' in teller.get("/sync").get_data(as_text=True)
    assert teller.post("/large-print", data={"next": "/\\evil.example/"}).location == "/"  # a browser's "//"
    assert '<body class="large">' not in teller.get("/home").get_data(as_text=True)
    teller.post("/large-print", data={"next": "/home"})
    teller.post("/logout")
    login(teller)
    assert '<body class="large">' not in teller.get("/home").get_data(as_text=True)
