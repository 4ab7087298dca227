"""12315 consumer complaints at the station: the service's refusals, the screens (two steps, the phone masked once
typed), the receipt on screen and on paper (the phone masked, no QR of the token that holds it)."""

from __future__ import annotations

import re

import pytest
from ui_helpers import english, error_of, login, txn_of

from station import complaints, receipts
from station.db import JournalEntry
from station.protocol.complaints import complaint_number, mask_phone, normalise_phone
from station.protocol.entry_types import EntryType, entry_problem, printable
from station.protocol.tokens import unverified_payload


@pytest.mark.parametrize("typed, stored", [
    ("13812345678", "13812345678"),
    ("138 1234 5678", "13812345678"),
    ("１３８１２３４５６７８", "13812345678"),  # full-width digits, NFKC
    ("+8613812345678", "13812345678"),
    ("0571-88889999", "0571-88889999"),
    ("057188889999", "0571-88889999"),
    ("01062345678", "010-62345678"),
    ("020-8765432", "020-8765432"),
    ("12812345678", None),  # 12x is no mainland mobile prefix
    ("1381234567", None),
    ("138123456789", None),
    ("57188889999", None),
    ("0571-0888999", None),  # a local number does not start with 0
    ("", None),
    ("138\x0012345678", None),
    ("abc", None),
    ("1" * 40, None),
])
def test_phone_numbers(typed, stored):
    assert normalise_phone(typed) == stored


def test_masks():
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("0571-88889999") == "0571-****9999"


def record(st, agent, **changes):
    fields = dict(phone="138 1234 5678", business="好又多超市", category="price", details="标价 5 元，结账收 8 元",
                  consent=True, txn=receipts.new_txn_id())
    fields.update(changes)
    return complaints.record_complaint(st, agent, **fields)


def test_a_complaint_is_one_signed_entry_with_its_number(station, agent):
    receipt = record(station, agent)
    entry = JournalEntry.get_by_id(receipt.seq)
    payload = unverified_payload(entry.token)
    assert entry_problem(payload) is None
    assert payload["type"] == EntryType.COMPLAINT_12315
    assert payload["complaint_no"] == complaint_number(station.station_id, station.local_date(entry.recorded_at),
                                                       receipt.seq)
    assert re.fullmatch(rf"{station.station_id}-\d{{8}}-\d{{6}}", payload["complaint_no"])
    assert (payload["phone"], payload["business"], payload["category"], payload["consent"]) == (
        "13812345678", "好又多超市", "price", True)
    assert receipt.details["phone_masked"] == "138****5678"
    assert "13812345678" not in repr(receipt.details)


def test_the_same_form_twice_records_once(station, agent):
    txn = receipts.new_txn_id()
    first = record(station, agent, txn=txn)
    again = record(station, agent, txn=txn)
    assert again.seq == first.seq
    assert JournalEntry.select().where(JournalEntry.type == EntryType.COMPLAINT_12315).count() == 1


@pytest.mark.parametrize("changes, refusal", [
    ({"consent": False}, complaints.ComplaintNoConsent),
    ({"consent": "yes"}, complaints.ComplaintNoConsent),
    ({"phone": "12345"}, complaints.ComplaintBadPhone),
    ({"phone": "138-1234-567"}, complaints.ComplaintBadPhone),
    ({"category": "fraud"}, complaints.ComplaintBadCategory),
    ({"business": ""}, complaints.ComplaintBadBusiness),
    ({"business": "超" * 61}, complaints.ComplaintBadBusiness),
    ({"business": "shop\x1b[2J"}, complaints.ComplaintBadBusiness),
    ({"business": "shop\u202egnp"}, complaints.ComplaintBadBusiness),
    ({"details": "长" * 201}, complaints.ComplaintBadDetails),
    ({"details": "bad\x07bell"}, complaints.ComplaintBadDetails),
    ({"category": "other", "details": "  "}, complaints.ComplaintBadDetails),
])
def test_refusals_record_nothing(station, agent, changes, refusal):
    before = JournalEntry.select().count()
    with pytest.raises(refusal):
        record(station, agent, **changes)
    assert JournalEntry.select().count() == before


def test_line_breaks_become_spaces_and_other_needs_what_happened(station, agent):
    receipt = record(station, agent, category="other", details="第一行\n第二行", business="  王记  饭店 ")
    payload = unverified_payload(JournalEntry.get_by_id(receipt.seq).token)
    assert (payload["details"], payload["business"]) == ("第一行 第二行", "王记 饭店")
    assert "details" not in unverified_payload(JournalEntry.get_by_id(
        record(station, agent, details="").seq).token)


# -- the screens -------------------------------------------------------------------------------------------
def test_the_screen_in_two_steps_to_the_receipt(ui_client, station):
    login(ui_client)
    english(ui_client)
    home = ui_client.get("/home").get_data(as_text=True)
    assert 'id="open-complaint"' in home and "/complaint/" in home
    page = ui_client.get("/complaint/").get_data(as_text=True)
    txn = txn_of(page)
    subject = {"txn": txn, "category": "quality", "business": "李家小卖部", "details": "过期牛奶"}
    contact = ui_client.post("/complaint/", data={**subject, "step": "subject"}).get_data(as_text=True)
    assert 'id="phone"' in contact and 'id="consent"' in contact
    # Save without consent: nothing recorded, the screen says why; the phone typed shows masked from now on.
    refused = ui_client.post("/complaint/", data={**subject, "step": "record", "phone": "13912345678"})
    assert refused.status_code == 400
    html = refused.get_data(as_text=True)
    assert "consent" in error_of(html)
    assert "139****5678" in html and 'id="phone-masked"' in html
    assert "13912345678" not in re.sub(r'<input type="hidden" name="phone" value="13912345678">', "", html)
    assert JournalEntry.select().where(JournalEntry.type == EntryType.COMPLAINT_12315).count() == 0
    saved = ui_client.post("/complaint/", data={**subject, "step": "record", "phone": "13912345678",
                                                "consent": "yes"})
    assert saved.status_code == 302
    receipt_page = ui_client.get(saved.headers["Location"]).get_data(as_text=True)
    entry = JournalEntry.select().where(JournalEntry.type == EntryType.COMPLAINT_12315).get()
    number = unverified_payload(entry.token)["complaint_no"]
    assert number in receipt_page and "139****5678" in receipt_page
    assert "13912345678" not in receipt_page and entry.token not in receipt_page
    assert 'id="qr-none"' in receipt_page and "<svg" not in receipt_page.split('id="receipt"')[1]


def test_the_screen_refuses_with_a_message(ui_client, station):
    login(ui_client)
    english(ui_client)
    txn = txn_of(ui_client.get("/complaint/").get_data(as_text=True))
    no_category = ui_client.post("/complaint/", data={"txn": txn, "business": "x", "step": "subject"})
    assert no_category.status_code == 400 and error_of(no_category.get_data(as_text=True))
    bad_phone = ui_client.post("/complaint/", data={"txn": txn, "category": "price", "business": "x",
                                                    "step": "record", "phone": "12345", "consent": "yes"})
    html = bad_phone.get_data(as_text=True)
    assert bad_phone.status_code == 400 and "area code" in error_of(html) and 'id="phone"' in html
    retyped = ui_client.post("/complaint/", data={"txn": txn, "category": "price", "business": "x",
                                                  "step": "retype", "phone": "13912345678"})
    assert 'id="phone"' in retyped.get_data(as_text=True) and "13912345678" not in retyped.get_data(as_text=True)


def test_the_screen_in_chinese(ui_client, station):
    login(ui_client)
    page = ui_client.get("/complaint/").get_data(as_text=True)
    assert "12315投诉" in page and "价格" in page and "虚假宣传" in page


def test_the_paper_receipt_masks_the_phone_and_has_no_qr(station, agent, printed):
    from station import printing

    receipt = record(station, agent, phone="0571-88889999")
    printing.print_receipt(station, complaints.complaint_receipt(JournalEntry.get_by_id(receipt.seq)))
    (_, _, output), = printed
    text = output.decode("gb18030", errors="replace")
    number = receipt.details["complaint_no"]
    assert number in text and "0571-****9999" in text
    assert "88889999" not in text and "投诉编号" in text and "价格 Price" in text
    assert b"\x1dv0" not in output  # GS v 0: no raster image, so no QR code


@pytest.mark.parametrize("data", [
    {"category": ["weather", "price"], "business": "x", "step": "record", "phone": "13812345678", "consent": "yes"},
    {"category": "price", "business": "x" * 100_000, "step": "subject"},
    {"category": "price", "business": "x", "details": "\x00\x1b[2J", "step": "record", "phone": "13812345678",
     "consent": "yes"},
    {"category": "price", "business": "x", "step": "record", "phone": "١٣٨١٢٣٤٥٦٧٨", "consent": "yes"},
    {"category": "price", "business": "x", "step": "record", "phone": "13812345678", "consent": "yes",
     "txn": "not-a-uuid"},
    {"category": "price", "business": "x", "step": "nonsense", "phone": "\u202e13812345678", "consent": "maybe"},
    {"category": "<script>", "business": "<b>x</b>", "step": "edit"},
])
def test_hostile_forms_get_a_message_never_a_500(ui_client, station, data):
    login(ui_client)
    before = JournalEntry.select().count()
    response = ui_client.post("/complaint/", data=data)
    assert response.status_code in (200, 400), response.status_code
    html = response.get_data(as_text=True)
    assert "<script>" not in html and "<b>x</b>" not in html
    assert JournalEntry.select().count() == before


def test_bytes_that_are_not_utf8_are_never_a_500(ui_client, station):
    """Werkzeug keeps a form's bad UTF-8 as printable text (the escapes as typed): recorded as such, never a 500."""
    login(ui_client)
    body = b"category=price&business=%ED%A0%80%FF&step=record&consent=yes&phone=13812345678"
    response = ui_client.post("/complaint/", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 302
    entry = JournalEntry.select().where(JournalEntry.type == EntryType.COMPLAINT_12315).get()
    assert printable(unverified_payload(entry.token)["business"])
