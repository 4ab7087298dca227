"""The pinyin keyboard's candidates: the index over pypinyin's data (built once for the module) and its endpoint."""

from __future__ import annotations

import pytest
from ui_helpers import english, login

from station import ime
from station.ime import Candidate, CandidateIndex


@pytest.fixture(scope="module")
def index():
    return ime.candidate_index()


def test_built_once_per_process(index):
    thread = ime.warm_up()
    thread.join()
    assert ime.candidate_index() is index


def texts(index, letters, field="text", count=None):
    return [c.text for c in index.candidates(letters, field)[1][:count]]


def test_wang_starts_with_the_surname_in_a_name_field(index):
    assert texts(index, "wang", "name", 1) == ["王"]
    assert "王" in texts(index, "wang", "text", 5)


def test_whole_words_from_the_phrase_dictionaries(index):
    syllables, found = index.candidates("yanglaojin", "text")
    assert syllables == ("yang", "lao", "jin")
    assert found[0] == Candidate("养老金", 10)
    # Shorter words and the first syllable's characters follow, each using up only its own letters.
    assert Candidate("养老", 7) in found and Candidate("养", 4) in found


def test_a_given_name_whole_or_character_by_character(index):
    assert texts(index, "xiuying", "name", 1) == ["秀英"]
    found = index.candidates("xiuying", "name")[1]
    assert Candidate("秀", 3) in found[:6]
    assert texts(index, "ying", "name", 3).count("英") == 1


def test_partial_pinyin_narrows(index):
    w, wa, wang = (set(texts(index, letters)) for letters in ("w", "wa", "wang"))
    assert wang < wa < w
    assert "王" in wa and "瓦" in wa and "我" not in wa
    assert texts(index, "yanglaoj", "text", 1) == ["养老金"]
    assert index.candidates("xi'an", "text")[0] == ("xi", "an")
    assert texts(index, "xi'an", "text", 1) == ["西安"]


def test_only_standard_simplified_characters(index):
    offered = "".join(texts(index, "yanglaojin")) + "".join(texts(index, "ma"))
    assert "養" not in offered and "媽" not in offered and "妈" in offered


@pytest.mark.parametrize("letters", ["v", "'", "''", "vvv'wang", "ii"])
def test_no_pinyin_no_candidates(index, letters):
    assert index.page(letters, "text", 0) == ime.Page((), (), 0, False)


def test_a_slip_of_the_finger_is_left_out(index):
    assert index.candidates("wangq", "text")[0] == ("wang", "q")
    syllables, found = index.candidates("wangv", "name")
    assert syllables == ("wang",) and found[0] == Candidate("王", 4)


def small_index():
    """An index over a handful of made-up counts: the paging and the order, independent of the real data."""
    chars = {"王": ["wang"], "网": ["wang"], "望": ["wang"], "忘": ["wang"], "往": ["wang"], "汪": ["wang"],
             "亡": ["wang"], "旺": ["wang"], "英": ["ying"], "秀": ["xiu"]}
    words = {"网友": ["wang", "you"], "网络": ["wang", "luo"], "网站": ["wang", "zhan"], "望见": ["wang", "jian"],
             "秀英": ["xiu", "ying"]}
    for char, reading in (("友", "you"), ("络", "luo"), ("站", "zhan"), ("见", "jian")):
        chars[char] = [reading]
    return CandidateIndex(set(chars), chars, words, surnames=["汪", "王"], given_names=["秀英"])


def test_pages_fit_the_bar():
    small = small_index()
    pages = [small.page("wang", "text", n) for n in range(3)]
    assert [len(p.candidates) for p in pages] == [5, 3, 0]
    assert [p.more for p in pages] == [True, False, False]
    assert pages[0].candidates[0].text == "网"  # in the most words
    assert small.candidates("wang", "name")[1][:2] == [Candidate("汪", 4), Candidate("王", 4)]
    words = small.page("wangyou", "text", 0).candidates
    assert words[0] == Candidate("网友", 7)
    assert sum(len(c.text) for c in words[1:]) <= ime.PAGE_CHARS


# -- the endpoint --------------------------------------------------------------------------------------------
def test_the_endpoint_pages_candidates(ui_client, index):
    login(ui_client)
    answer = ui_client.get("/ime/candidates?py=wang&field=name&page=0")
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["candidates"][0] == {"text": "王", "used": 4}
    assert body["syllables"] == ["wang"] and body["page"] == 0 and body["more"] is True
    following = ui_client.get("/ime/candidates?py=wang&field=name&page=1").get_json()
    assert {c["text"] for c in following["candidates"]}.isdisjoint(c["text"] for c in body["candidates"])
    assert ui_client.get("/ime/candidates?py=yanglaojin").get_json()["candidates"][0]["text"] == "养老金"


BAD = [
    ("py=", "拼音"),
    ("py=WANG", "拼音"),
    ("py=wang1", "拼音"),
    ("py=wa%20ng", "拼音"),
    ("py=%E7%8E%8B", "拼音"),
    ("py=w%00", "拼音"),
    ("py=" + "a" * 33, "拼音"),
    ("py=wang&field=sql", "候选"),
    ("py=wang&page=-1", "候选"),
    ("py=wang&page=1e3", "候选"),
    ("py=wang&page=%EF%BC%91", "候选"),
    ("py=wang&page=999999999999999999999", "候选"),
]


@pytest.mark.parametrize(("query", "said"), BAD)
def test_bad_input_is_a_400_with_a_message(ui_client, query, said):
    login(ui_client)
    answer = ui_client.get("/ime/candidates?" + query)
    assert answer.status_code == 400
    assert said in answer.get_json()["error"]


def test_the_message_is_in_the_persons_language(ui_client):
    login(ui_client)
    english(ui_client)
    assert "letters a to z" in ui_client.get("/ime/candidates?py=W").get_json()["error"]


def test_only_for_a_logged_in_agent(ui_client):
    answer = ui_client.get("/ime/candidates?py=wang")
    assert answer.status_code == 302 and "/login" in answer.location
