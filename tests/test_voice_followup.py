"""客户有呼声，银行有回声: customer voice followed up at the bank and the answer back at the station, end to end over
real HTTP, on SQLite and PostgreSQL (``TEST_DATABASE_URL``).

A customer's suggestion recorded at the counter is synced, listed and resolved at the bank (``sync-server voice``),
the note reaches the station with its next sync and the agent sees it (home notice, answers screen); the trail
holds every step and the database refuses to change it; every bad input is a one-line refusal.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import wall_clock
from peewee import DatabaseError
from sync_support import BACKENDS, enrolled_station, open_counter, opened_downlinks, server_db, start_module_bank

from station import operations, receipts
from station.app import create_app
from station.db import Customer, VoiceAnswer
from station.demo import DEMO_AGENTS
from station.feedback import apply_answers, record_feedback
from station.sync import sync_once
from sync_server.cli import cli
from sync_server.db import VoiceEvent, db_proxy
from sync_server.voice import MAX_NOTE_CHARS, station_answers

SUGGESTION = "希望养老金发放日早点开门 Please open earlier on pension day"
PRAISE = "田师傅很耐心"
ANSWER = "已安排发放日7点开门。From next month we open at 7 on pension day."


@pytest.fixture(scope="module", params=BACKENDS)
def bank(request, tmp_path_factory):
    """One bank and its station ST-0001 with the demo agents and the day open; a suggestion, a praise and a
    transfer stopped at the fraud warning recorded and synced. Yields (server, station, agent, seqs)."""
    tmp = tmp_path_factory.mktemp("voice")
    server = start_module_bank(request, tmp, ["ST-0001", "ST-0002"])
    st = enrolled_station(server, tmp, "ST-0001", wall_clock())
    agent, _ = open_counter(st)
    suggestion = record_feedback(st, agent, "suggestion", SUGGESTION, receipts.new_txn_id()).seq
    praise = record_feedback(st, agent, "praise", PRAISE, receipts.new_txn_id()).seq
    with st.bound():
        customer = Customer.get(Customer.account_id == "DM00010000")
    stopped = operations.stop_transfer(st, agent, customer, "6222000011112222", "公安局安全账户", "5000",
                                       receipts.new_txn_id()).seq
    assert sync_once(st).rejected == {}
    yield server, st, agent, {"suggestion": suggestion, "praise": praise, "stopped": stopped}
    st.close()
    server.stop()
    if not db_proxy.obj.is_closed():
        db_proxy.obj.close()


@pytest.fixture
def invoke(bank):
    server = bank[0]

    def call(*args: str):
        result = CliRunner().invoke(cli, [*args, "--database-url", server.database_url])
        server_db()
        return result

    return call


@pytest.fixture
def counter(bank):
    """The station's touchscreen, the demo agent logged in."""
    st = bank[1]
    client = create_app({"STATION": st, "TESTING": True, "WTF_CSRF_ENABLED": False,
                         "SECRET_KEY": "test"}).test_client()
    client.post("/login", data={"agent_id": DEMO_AGENTS[0][0], "pin": DEMO_AGENTS[0][3]})
    return client


def page(client, path: str, lang: str) -> str:
    client.post("/lang", data={"lang": lang, "next": "/"})
    response = client.get(path)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def one_line_refusal(result, words: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit | None)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], result.output


def test_a_suggestion_answered_at_the_bank_reaches_the_agent(bank, invoke, counter):
    _, st, _, seqs = bank
    item = f"ST-0001:{seqs['suggestion']}"
    listed = json.loads(invoke("voice", "list", "--station", "ST-0001", "--json").output)
    assert [(row["id"], row["kind"], row["status"]) for row in listed] == [
        (item, "suggestion", "open"), (f"ST-0001:{seqs['praise']}", "praise", "open"),
        (f"ST-0001:{seqs['stopped']}", "scam_stopped", "open")]
    assert listed[0]["words"] == SUGGESTION and listed[0]["agent"] == "A01" and listed[0]["trail"] == []
    # A stopped transfer has no words of the customer: what was about to go, to whom (no PIN; the payee's account,
    # maybe a card number, by its last 4 digits only).
    assert listed[2]["words"] == "stopped a transfer of ¥5,000.00 to 公安局安全账户 (account ending 2222)"
    assert "6222000011112222" not in invoke("voice", "list", "--json").output
    assert "Please open earlier" in invoke("voice", "list", "--kind", "suggestion").output

    assert "voice-answered" not in page(counter, "/home", "en")
    resolved = invoke("voice", "resolve", item, "--note", ANSWER, "--by", "Li Wei")
    assert resolved.exit_code == 0 and resolved.output == f"{item} is resolved (step 1 of its trail).\n"
    one_line_refusal(invoke("voice", "resolve", item, "--note", "again", "--by", "Zhang"),
                     "already resolved (by Li Wei)")
    shown = invoke("voice", "show", item).output
    assert SUGGESTION in shown and f"Answer\t{ANSWER}" in shown and "resolved by Li Wei" in shown

    # Nothing reaches the station before its next sync; then the home screen says so until the agent has read it.
    with st.bound():
        assert VoiceAnswer.select().count() == 0
    sync_once(st)
    home = page(counter, "/home", "en")
    assert 'id="voice-answered">Answered: 1</span>' in home and 'href="/voice/answers"' in home
    assert "银行已答复 1 条" in page(counter, "/home", "zh_CN")
    answers = page(counter, "/voice/answers", "en")
    assert SUGGESTION in answers and ANSWER in answers and "New" in answers and PRAISE not in answers
    assert "银行对客户之声的答复" in page(counter, "/voice/answers", "zh_CN")
    assert "Answers (1)" in page(counter, "/voice/", "en")
    counter.post("/voice/answers/read")
    assert "voice-answered" not in page(counter, "/home", "en") and ANSWER in page(counter, "/voice/answers", "en")

    # Reopened at the bank: the answer is withdrawn at the station; a new answer is news again.
    assert invoke("voice", "reopen", item, "--note", "customer called again", "--by", "Li Wei").exit_code == 0
    one_line_refusal(invoke("voice", "reopen", item, "--note", "x", "--by", "Li Wei"), "open already")
    sync_once(st)
    assert ANSWER not in page(counter, "/voice/answers", "en")
    assert invoke("voice", "note", item, "--note", "asked the branch", "--by", "Zhang").exit_code == 0
    assert invoke("voice", "resolve", item, "--note", "7点开门，已公告", "--by", "Li Wei").exit_code == 0
    sync_once(st)
    assert "Answered: 1" in page(counter, "/home", "en") and "7点开门，已公告" in page(counter, "/voice/answers", "en")
    trail = json.loads(invoke("voice", "show", item, "--json").output)["trail"]
    assert [(s["n"], s["action"], s["by"]) for s in trail] == [
        (1, "resolved", "Li Wei"), (2, "reopened", "Li Wei"), (3, "noted", "Zhang"), (4, "resolved", "Li Wei")]


def test_the_trail_refuses_every_edit(bank, invoke):
    _, _, _, seqs = bank
    item = f"ST-0001:{seqs['praise']}"
    assert invoke("voice", "note", item, "--note", "thanked the agent", "--by", "Li Wei").exit_code == 0
    database = server_db()
    for statement in ("UPDATE voice_event SET note = 'forged'", "DELETE FROM voice_event"):
        with pytest.raises(DatabaseError, match="append-only"), database.atomic():
            database.execute_sql(statement)
    assert VoiceEvent.select().where(VoiceEvent.note == "thanked the agent").count() == 1


def test_two_people_on_one_item_cannot_take_the_same_step(bank, invoke, monkeypatch):
    """Li Wei read the item, Zhang added a note meanwhile: Li Wei's step (the same number) is refused in words."""
    import sync_server.voice as voice

    _, _, _, seqs = bank
    item = f"ST-0001:{seqs['praise']}"
    server_db()
    seen_by_li = voice.voice_item(item)
    assert invoke("voice", "note", item, "--note", "Zhang's note", "--by", "Zhang").exit_code == 0
    monkeypatch.setattr(voice, "voice_item", lambda item_id: seen_by_li)
    one_line_refusal(invoke("voice", "note", item, "--note", "Li's note", "--by", "Li Wei"),
                     "changed by someone else meanwhile")
    monkeypatch.undo()
    assert [s["note"] for s in voice.voice_item(item)["trail"]][-1] == "Zhang's note"


def test_a_stopped_scams_note_stays_at_the_bank(bank, invoke):
    _, _, _, seqs = bank
    item = f"ST-0001:{seqs['stopped']}"
    assert invoke("voice", "resolve", item, "--note", "payee account reported", "--by", "Anti-fraud").exit_code == 0
    assert seqs["stopped"] not in [answer["seq"] for answer in station_answers("ST-0001")]
    assert json.loads(invoke("voice", "show", item, "--json").output)["status"] == "resolved"


@pytest.mark.parametrize("args, expected", [
    (("--kind", "praise"), ["praise"]),
    (("--kind", "complaint"), []),
    (("--station", "ST-0002"), []),
    (("--since", "2099-01-01"), []),
    (("--since", "2000-01-01", "--kind", "suggestion"), ["suggestion"]),
])
def test_list_filters(bank, invoke, args, expected):
    listed = json.loads(invoke("voice", "list", *args, "--json").output)
    assert [row["kind"] for row in listed] == expected


def test_list_filters_by_status(bank, invoke):
    _, _, _, seqs = bank
    invoke("voice", "resolve", f"ST-0001:{seqs['stopped']}", "--note", "done", "--by", "Li Wei")
    resolved = json.loads(invoke("voice", "list", "--status", "resolved", "--json").output)
    opened = json.loads(invoke("voice", "list", "--status", "open", "--json").output)
    assert {row["status"] for row in resolved} == {"resolved"} and {row["status"] for row in opened} <= {"open"}
    assert len(resolved) + len(opened) == 3


@pytest.mark.parametrize("args, words", [
    (("list", "--kind", "rumour"), "No kind 'rumour'"),
    (("list", "--status", "closed"), "choose open or resolved"),
    (("show", "ST-0001"), "is not a voice item id"),
    (("show", "ST-0001:abc"), "is not a voice item id"),
    (("show", "ST-0001:0"), "is not a voice item id"),
    (("show", "ST-0001:-3"), "is not a voice item id"),
    (("show", "ST-0001:１２"), "is not a voice item id"),
    (("show", "ST\x1b[31m:1"), "is not a voice item id"),
    (("show", "ST-0001:" + "9" * 40), "is not a voice item id"),
    (("show", "X" * 5000 + ":1"), "is not a voice item id"),
    (("show", "ST-0001:999999"), "No customer voice item ST-0001:999999"),
    (("show", "ST-0001:1"), "No customer voice item ST-0001:1"),
    (("resolve", "ST-0009:1", "--note", "x", "--by", "Li"), "No customer voice item"),
    (("resolve", "ST-0001:2", "--note", "x" * (MAX_NOTE_CHARS + 1), "--by", "Li"), "at most 200 characters"),
    (("resolve", "ST-0001:2", "--note", "x" * 100_000, "--by", "Li"), "at most 200 characters"),
    (("resolve", "ST-0001:2", "--note", "ok\x1b[2J", "--by", "Li"), "printable characters only"),
    (("resolve", "ST-0001:2", "--note", "line one\nline two", "--by", "Li"), "printable characters only"),
    # The station keeps an answer only as one printable line: a private-use or unassigned character, a bidi
    # override would have it dropped there, the customer never answered.
    (("resolve", "ST-0001:2", "--note", "ok\ue000", "--by", "Li"), "printable characters only"),
    (("resolve", "ST-0001:2", "--note", "ok\U000e0001", "--by", "Li"), "printable characters only"),
    (("resolve", "ST-0001:2", "--note", "ok\u202e", "--by", "Li"), "printable characters only"),
    (("resolve", "ST-0001:2", "--note", "\u3000\u3000", "--by", "Li"), "Give a note (--note)"),
    (("resolve", "ST-0001:2", "--note", "ok\tthere", "--by", "Li"), "printable characters only"),
    (("resolve", "ST-0001:2", "--note", "   ", "--by", "Li"), "Give a note (--note)"),
    (("resolve", "ST-0001:2", "--note", "ok", "--by", "Li\x00"), "printable characters only"),
    (("resolve", "ST-0001:2", "--note", "ok", "--by", ""), "Give your name (--by)"),
])
def test_bad_input_is_a_one_line_refusal(bank, invoke, args, words):
    one_line_refusal(invoke("voice", *args), words)


def test_answers_go_down_once_in_the_deltas(bank, invoke, monkeypatch):
    """``voice_answers`` is one item of the downlink versions: sent when it changed, not with every sync."""
    _, st, _, seqs = bank
    item = f"ST-0001:{seqs['praise']}"
    downlinks = opened_downlinks(monkeypatch)
    sync_once(st)
    sync_once(st)
    assert invoke("voice", "resolve", item, "--note", "已转告网点，谢谢表扬", "--by", "Li Wei").exit_code == 0
    sync_once(st)
    sync_once(st)
    carried = ["voice_answers" in downlink for downlink in downlinks]
    assert all("since" in downlink for downlink in downlinks)
    assert carried[-3:] == [False, True, False]
    answer = next(a for a in downlinks[-2]["voice_answers"] if a["seq"] == seqs["praise"])
    assert answer["status"] == "resolved" and answer["note"] == "已转告网点，谢谢表扬"
    with st.bound():
        assert VoiceAnswer.get_by_id(seqs["praise"]).note == "已转告网点，谢谢表扬"


def test_the_station_shows_only_answers_it_can_show(bank):
    """The downlink is the bank's, signed; still, an item that is not a printable answer to a feedback of this
    journal is skipped, never shown or stored."""
    _, st, _, seqs = bank
    good = {"seq": seqs["praise"], "status": "resolved", "note": "谢谢", "at": "2026-12-01T08:00:00.000Z"}
    with st.bound(), st.db.atomic():
        before = {(a.seq, a.note) for a in VoiceAnswer.select()}
        apply_answers([
            "not an item", None, {"seq": "3"}, {"seq": True, "status": "resolved", "note": "x", "at": good["at"]},
            {**good, "seq": seqs["stopped"]},  # not a feedback
            {**good, "seq": 10**9},  # not in the journal
            {**good, "note": "\x1b[31mred"}, {**good, "note": "x" * 201}, {**good, "note": 5},
            {**good, "at": "yesterday"}, {**good, "status": "maybe"},
        ])
        apply_answers({"seq": 1})
        assert {(a.seq, a.note) for a in VoiceAnswer.select()} == before
        apply_answers([good])
        assert VoiceAnswer.get_by_id(seqs["praise"]).note == "谢谢"
        apply_answers([{"seq": seqs["praise"], "status": "open"}])
        assert VoiceAnswer.get_or_none(VoiceAnswer.seq == seqs["praise"]) is None


def test_an_answer_with_markup_reaches_the_screen_as_text(bank, invoke, counter):
    """The bank's note is what a person typed: markup in it is shown, never run, on the station's answers screen."""
    _, st, agent, _ = bank
    seq = record_feedback(st, agent, "complaint", "<i>等太久</i>", receipts.new_txn_id()).seq
    assert sync_once(st).rejected == {}
    item = f"ST-0001:{seq}"
    note = '<script>alert("x")</script><img src=x onerror=alert(1)> & 谢谢'
    assert invoke("voice", "resolve", item, "--note", note, "--by", "<b>Li</b>").exit_code == 0
    sync_once(st)
    with st.bound():
        assert VoiceAnswer.get_by_id(seq).note == note
    for lang in ("en", "zh_CN"):
        shown = page(counter, "/voice/answers", lang)
        assert "<script>" not in shown and "<img" not in shown and "<i>" not in shown and "&lt;i&gt;等太久" in shown
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt; &amp; 谢谢" in shown
    assert invoke("voice", "reopen", item, "--note", "undo", "--by", "Li").exit_code == 0
    sync_once(st)


def test_items_that_stay_at_the_bank_do_not_crowd_the_answers_out(bank, invoke, monkeypatch):
    """Only the items answered at the station count towards ``MAX_ANSWERS_SENT``: a stopped scam followed up last
    leaves the customers' latest answer in the downlink."""
    from sync_server import voice

    _, _, _, seqs = bank
    feedback = f"ST-0001:{seqs['suggestion']}"
    if json.loads(invoke("voice", "show", feedback, "--json").output)["status"] != "resolved":
        assert invoke("voice", "resolve", feedback, "--note", ANSWER, "--by", "Zhang").exit_code == 0
    stopped = f"ST-0001:{seqs['stopped']}"
    step = "reopen" if json.loads(invoke("voice", "show", stopped, "--json").output)["status"] == "resolved" \
        else "resolve"
    assert invoke("voice", step, stopped, "--note", "followed up with the police", "--by", "Anti-fraud"
                  ).exit_code == 0
    monkeypatch.setattr(voice, "MAX_ANSWERS_SENT", 1)
    answers = station_answers("ST-0001")
    assert len(answers) == 1 and answers[0]["seq"] != seqs["stopped"]  # the feedback followed up last
