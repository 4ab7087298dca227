"""Receipts and bills that answer the customer's question: today's list and its search, the words a bill
reference is refused with, every demo biller payable, and what the paper says of a top-up, a balance and a
reversal."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from babel.support import Translations
from escpos.printer import Dummy
from ui_helpers import CUSTOMER_PIN, card_customer, login, passbook_only_customer

from station import business_day, errors, operations, printing, receipts
from station.agents import authenticate_customer, login_agent
from station.db import Biller
from station.demo import DEMO_AGENTS
from station.feedback import record_feedback
from station.printing import TRANSLATIONS
from station.protocol.demo_data import demo_billers
from station.receipt_layout import render_receipt
from sync_server.admin import ImportFailed, import_billers, load_demo_data, parse_billers_csv
from sync_server.db import Biller as BankBiller
from sync_server.db import connect_url, db_proxy, migrate_database

#: A reference each demo biller accepts and one it refuses, with the refusal's words (en, zh). A biller added to
#: the demo data fails test_every_demo_biller_* until it is given its row here.
DEMO_REFERENCES = {
    "ELEC-SGCC": ("1234567890", "123456789", "The account number is 10 digits.", "户号是 10 位数字。"),
    "WATER-COUNTY": ("12345678", "1234567", "The account number is 8 digits.", "户号是 8 位数字。"),
    "GAS-COUNTY": ("55512345678", "555123", "The account number is 10-12 digits.", "户号是 10-12 位数字。"),
    "MOBILE-CMCC": ("13812345678", "1381234567", "A phone number is 11 digits, starting with 1.",
                    "手机号是 11 位数字，以 1 开头。"),
    "MOBILE-CUCC": ("13012345678", "23012345678", "A phone number is 11 digits, starting with 1.",
                    "手机号是 11 位数字，以 1 开头。"),
    "MOBILE-CTCC": ("18912345678", "189123456789", "A phone number is 11 digits, starting with 1.",
                    "手机号是 11 位数字，以 1 开头。"),
}
CHINESE = Translations.load(str(TRANSLATIONS), ["zh_Hans_CN"])


def in_chinese(err: errors.StationError) -> str:
    return CHINESE.gettext(err.template) % err.params if err.params else CHINESE.gettext(err.template)


def check_demo_billers(billers) -> None:
    assert sorted(b.code for b in billers) == sorted(DEMO_REFERENCES)
    for biller in billers:
        valid, invalid, english, chinese = DEMO_REFERENCES[biller.code]
        assert operations.validate_bill_reference(biller, valid) == valid, biller.code
        with pytest.raises(errors.InvalidBillReference) as refused:
            operations.validate_bill_reference(biller, invalid)
        assert (refused.value.message, in_chinese(refused.value)) == (english, chinese), biller.code


def test_every_demo_biller_on_a_demo_station_takes_a_valid_reference_and_says_what_it_expects(station):
    check_demo_billers(list(Biller.select()))


def test_every_demo_biller_at_the_bank_takes_a_valid_reference_and_says_what_it_expects(tmp_path):
    database = connect_url(f"sqlite:///{tmp_path / 'bank.db'}")
    db_proxy.initialize(database)
    with database:
        migrate_database(database)
        load_demo_data([])
        check_demo_billers(list(BankBiller.select()))


def test_the_bank_refuses_a_broken_reference_pattern_on_every_path(tmp_path):
    """The release-1 demo data stored the gas biller's pattern cut at its comma: no gas bill could be paid."""
    broken = {**demo_billers()[2], "ref_pattern": r"\d{10"}
    # Python compiles it (a '{' starting no repeat count is a plain character), matching only the text "1{10".
    with pytest.raises(ImportFailed, match=r"GAS-COUNTY: ref_pattern has a '\{' or '\}' that is not a repeat"):
        import_billers([broken])  # the demo data's path: no CSV
    csv_text = ("code,kind,name_zh,name_en,ref_pattern\nGAS-X,gas,燃气,Gas,\nGAS-Y,gas,燃气,Gas,[0-9\n"
                'GAS-Z,gas,燃气,Gas,"\\d{10"\nGAS-OK,gas,燃气,Gas,"[{]\\d{10,12}"\n')
    with pytest.raises(ImportFailed) as failed:
        parse_billers_csv(csv_text)
    assert [str(e) for e in failed.value.errors] == [
        "line 2: ref_pattern is empty", "line 3: ref_pattern is not a valid regular expression",
        "line 4: ref_pattern has a '{' or '}' that is not a repeat count such as {10} or {10,12}"]


@pytest.mark.parametrize(("pattern", "kind", "english"), [
    (r"\d{10}", "electricity", "The account number is 10 digits."),
    (r"[0-9]{6,8}", "water", "The account number is 6-8 digits."),
    (r"1\d{10}", "mobile", "A phone number is 11 digits, starting with 1."),
    (r"\d{11}", "mobile", "A phone number is 11 digits."),
    (r"[A-Z]{2}\d{8}", "gas", "That is not a valid account number for this company: check the number on the bill."),
    (r"1[3-9]\d{9}", "mobile", "That is not a valid phone number: check it with the customer."),
])
def test_a_refused_reference_says_what_the_pattern_expects(pattern, kind, english):
    biller = SimpleNamespace(ref_pattern=pattern, kind=kind, ref_prefixes=None)
    with pytest.raises(errors.InvalidBillReference) as refused:
        operations.validate_bill_reference(biller, "not-a-number")
    assert refused.value.message == english


def test_a_broken_pattern_that_reached_the_station_is_a_refusal_not_a_crash():
    biller = SimpleNamespace(ref_pattern=r"[0-9", kind="gas", ref_prefixes=None)
    with pytest.raises(errors.BillerRulesBroken):
        operations.validate_bill_reference(biller, "1234567890")


def test_todays_list_holds_operations_and_day_entries_newest_first_and_finds_by_tail_or_amount(
        station, agent, supervisor, clock):
    business_day.open_day(station, agent, {"10000": 300})
    operations.pay_bill(station, agent, None, "ELEC-SGCC", "1234567890", "300", receipts.new_txn_id())
    yesterday = receipts.todays_receipts(station)
    # The drawer's variance is beside the point here: the close carries a reason and a supervisor's approval.
    business_day.close_day(station, agent, {"10000": 300}, reason="Miscount", supervisor=supervisor)
    clock.advance(days=1)
    agent = login_agent(station, *DEMO_AGENTS[0][::3])
    day_open = business_day.open_day(station, agent, {"10000": 300})
    card, passbook = card_customer(0), passbook_only_customer()
    auth = authenticate_customer(station, agent, card, CUSTOMER_PIN)
    withdrawal = operations.withdraw_cash(station, agent, auth, "300", receipts.new_txn_id())
    passbook_auth = authenticate_customer(station, agent, passbook, CUSTOMER_PIN)
    deposit = operations.deposit_cash(station, agent, passbook_auth, "1000", receipts.new_txn_id())
    bill = operations.pay_bill(station, agent, None, "MOBILE-CMCC", "13812345678", "50", receipts.new_txn_id())
    voice = record_feedback(station, agent, "praise", "服务很好")

    rows = receipts.todays_receipts(station)
    assert [r.seq for r in rows] == [voice.seq, bill.seq, deposit.seq, withdrawal.seq, day_open.seq]
    assert len(yesterday) == 2 and max(r.seq for r in yesterday) < day_open.seq  # yesterday's are not today's
    by_seq = {r.seq: r for r in rows}
    assert (by_seq[withdrawal.seq].customer_name, by_seq[withdrawal.seq].customer_masked) == (
        card.name, receipts.mask_number(card.card_number))
    assert by_seq[deposit.seq].customer_masked == receipts.mask_number(passbook.passbook_number, "passbook")
    assert by_seq[bill.seq].customer_name is None and by_seq[day_open.seq].status is None
    assert by_seq[day_open.seq].amount_fen == 3_000_000

    def found(query):
        return [r.seq for r in receipts.todays_receipts(station, query)]

    assert found(card.card_number[-4:]) == [withdrawal.seq]
    assert found(passbook.passbook_number[-4:]) == [deposit.seq]
    assert found(" ".join(card.card_number[-4:]).translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})) == [
        withdrawal.seq]  # full-width digits with spaces, as a scanner or a keyboard might type them
    assert found("300") == [withdrawal.seq]  # 3 digits: an amount only
    assert found("1000.00") == [deposit.seq]
    assert found("30000") == [day_open.seq]
    assert found("4.25") == found("abc") == found("9" * 19) == []


def _paper(st, receipt) -> str:
    printer = Dummy(profile="POS-5890")
    render_receipt(printer, printing.receipt_sheet(st, receipt), copy="customer")
    return printer.output.decode("gb18030", errors="replace")


def test_the_paper_names_the_company_a_top_up_s_phone_a_balance_s_time_and_a_reversal_s_cash(
            station, agent, supervisor, clock):
    business_day.open_day(station, agent, {"10000": 300})
    top_up = operations.pay_bill(station, agent, None, "MOBILE-CMCC", "13812345678", "50", receipts.new_txn_id())
    paper = _paper(station, top_up)
    assert "收款单位 Paid to:\n  中国移动充值 China Mobile\n  top-up" in paper
    assert "手机号 Phone no.: 13812345678" in paper and "户号" not in paper

    customer = card_customer(0)
    auth = authenticate_customer(station, agent, customer, CUSTOMER_PIN)
    withdrawal = operations.withdraw_cash(station, agent, auth, "500", receipts.new_txn_id())
    reversal = operations.reverse(station, supervisor, withdrawal.txn, receipts.new_txn_id(), "Wrong amount")
    paper = _paper(station, reversal)
    for line in (f"原流水号 Original seq: {withdrawal.seq}", "原业务 Original: 取款 Withdrawal",
                 "原因 Reason:\n  金额错了 Wrong amount", "收回现金 Taken back: 500.00 元"):
        assert line in paper, line

    # The drawer's variance is beside the point here: the close carries a reason and a supervisor's approval.
    business_day.close_day(station, agent, {"10000": 300}, reason="Miscount", supervisor=supervisor)
    clock.advance(days=1)
    agent = login_agent(station, *DEMO_AGENTS[0][::3])
    business_day.open_day(station, agent, {"10000": 300})
    auth = authenticate_customer(station, agent, customer, CUSTOMER_PIN)
    enquiry = operations.balance_enquiry(station, agent, auth, receipts.new_txn_id()).receipt
    paper = _paper(station, enquiry)
    assert "业务 Type: 余额 Balance" in paper and "查询" not in paper
    # The snapshot (the demo loader's, yesterday) prints with its date: "as of 07:40" alone would read as today.
    assert "截至 As of:" in paper and "2026-11-03 07:40" in paper


def test_a_biller_name_from_the_bank_reaches_the_paper_as_text_only(station, agent):
    """The bank's downlink names the company; a control character in it must not become a printer command."""
    Biller.update(name_zh="国网\x1b@\x1dV电费", name_en="Grid\x07").where(Biller.code == "ELEC-SGCC").execute()
    business_day.open_day(station, agent, {"10000": 300})
    bill = operations.pay_bill(station, agent, None, "ELEC-SGCC", "1234567890", "20", receipts.new_txn_id())
    paper = _paper(station, bill)
    assert "收款单位 Paid to:\n  国网?@?V电费 Grid?\n" in paper
    fields = paper.split("收款单位")[1].split("流水号 Seq")[0]
    assert not any(ord(char) < 0x20 and char != "\n" for char in fields), fields


def test_a_balance_from_an_earlier_day_says_its_date_on_screen(station, agent, clock, ui_client):
    customer = card_customer(0)  # the demo loader's snapshot: 2026-11-03 07:40 in Beijing
    clock.advance(days=1)
    agent = login_agent(station, *DEMO_AGENTS[0][::3])
    business_day.open_day(station, agent, {"10000": 300})
    auth = authenticate_customer(station, agent, customer, CUSTOMER_PIN)
    enquiry = operations.balance_enquiry(station, agent, auth, receipts.new_txn_id()).receipt
    login(ui_client)
    page = ui_client.get(f"/receipts/{enquiry.seq}").get_data(as_text=True)
    assert "<h1>余额" in page and "截至 2026-11-03 07:40" in page


def test_any_journal_only_type_with_a_label_is_listed_with_its_customer(station, agent, monkeypatch):
    """The list reads journal-only types from the registry: a new one (like a transfer the customer stopped) needs
    no change here. A wrong PIN's entry, which names the account, stands in for one."""
    business_day.open_day(station, agent, {"10000": 300})
    customer = card_customer(2)
    with pytest.raises(errors.StationError):
        authenticate_customer(station, agent, customer, "000000")
    assert [r.type for r in receipts.todays_receipts(station)] == ["day_open"]
    monkeypatch.setattr(receipts, "JOURNAL_ONLY_TYPES", (*receipts.JOURNAL_ONLY_TYPES, "customer_pin_failed"))
    failed = receipts.todays_receipts(station, customer.card_number[-4:])
    assert [(r.type, r.customer_name, r.customer_masked, r.status) for r in failed] == [
        ("customer_pin_failed", customer.name, receipts.mask_number(customer.card_number), None)]
