"""The link state's rules (``station.link.link_status``): online, degraded, offline, their reasons, staleness, and the
state kept in the ``link`` setting for another process (``station status``) to read."""

from __future__ import annotations

import itertools

import pytest

from station.context import Station
from station.link import (
    HARD_REASONS,
    LINK_SETTINGS,
    RECENT,
    link_status,
    note_failure,
    note_success,
    probe_due,
)


@pytest.fixture
def st(station):
    """The test station, as if enrolled: the link rules only look at whether it has a server."""
    station.config["server"] = {"url": "http://127.0.0.1:9"}
    return station


def state(st) -> tuple[str, str | None]:
    status = link_status(st)
    return status["link"], status["reason"]


def test_a_station_without_a_server_or_without_an_answer_is_offline(station, st):
    station.config.pop("server")
    assert state(station) == ("offline", "not_enrolled")
    st.config["server"] = {"url": "http://127.0.0.1:9"}
    assert state(st) == ("offline", "never")


def test_an_answer_makes_it_online_and_keeps_the_times(st, clock):
    note_success(st, "probe", 40)
    status = link_status(st)
    assert (status["link"], status["reason"], status["latency_ms"]) == ("online", None, 40)
    assert status["last_success_at"] == "2026-11-02T23:40:00.000Z" and status["last_failure_at"] is None


@pytest.mark.parametrize("reason", ["timeout", "reset", "http_5xx", "bad_answer", "http_4xx", "unreachable"])
def test_one_soft_failure_after_an_answer_is_degraded_two_are_offline(st, clock, reason):
    note_success(st, "sync", 40)
    clock.advance(seconds=5)
    note_failure(st, "probe", reason, "detail for the technician")
    status = link_status(st)
    assert (status["link"], status["reason"]) == ("degraded", reason)
    assert status["last_failure_at"] == "2026-11-02T23:40:05.000Z" and status["last_failure_reason"] == reason
    assert status["last_failure_detail"] == "detail for the technician"
    note_failure(st, "probe", reason)
    assert state(st) == ("offline", reason)


@pytest.mark.parametrize("reason", sorted(HARD_REASONS))
def test_a_hard_failure_is_offline_at_once(st, reason):
    note_success(st, "sync", 40)
    note_failure(st, "sync", reason)
    assert state(st) == ("offline", reason)


def test_a_failure_long_after_the_last_answer_is_offline(st, clock):
    note_success(st, "sync", 40)
    clock.advance(seconds=LINK_SETTINGS["stale_seconds"][0] + 1)
    note_failure(st, "probe", "timeout")
    assert state(st) == ("offline", "timeout")


def test_a_failure_without_any_answer_before_is_offline(st):
    note_failure(st, "probe", "timeout")
    assert state(st) == ("offline", "timeout")


def test_an_answer_grows_stale(st, clock):
    note_success(st, "probe", 40)
    stale = LINK_SETTINGS["stale_seconds"][0]
    clock.advance(seconds=stale)
    assert state(st) == ("online", None)
    clock.advance(seconds=1)
    assert state(st) == ("offline", "no_recent_answer")
    st.config["link"] = {"stale_seconds": stale * 10}
    assert state(st) == ("online", None)


def test_a_slow_answer_is_degraded(st):
    slow_ms = LINK_SETTINGS["slow_ms"][0]
    note_success(st, "probe", slow_ms + 1)
    assert state(st) == ("degraded", "slow")
    note_success(st, "probe", slow_ms)
    assert state(st) == ("online", None)
    st.config["link"] = {"slow_ms": slow_ms // 2}
    assert state(st) == ("degraded", "slow")


def test_a_link_back_after_an_outage_is_online_one_that_drops_in_and_out_is_degraded(st):
    note_success(st, "probe", 40)
    note_failure(st, "probe", "refused")
    note_failure(st, "probe", "refused")
    note_success(st, "probe", 40)
    assert state(st) == ("online", None), "one outage, over: online at the first answer"
    note_failure(st, "probe", "timeout")
    assert state(st) == ("degraded", "timeout")
    note_success(st, "probe", 40)
    assert state(st) == ("degraded", "intermittent"), "a second run of failures among the recent outcomes"
    # The window holds the last RECENT outcomes: the first outage leaves it with its last failure.
    assert RECENT == 5
    note_success(st, "probe", 40)
    assert state(st) == ("degraded", "intermittent")
    note_success(st, "probe", 40)
    assert state(st) == ("online", None), "the first outage has left the window"


OUTCOMES = [("ok", 40), ("ok", 5000), ("fail", "timeout"), ("fail", "refused"), ("fail", "http_5xx")]


@pytest.mark.parametrize("history", list(itertools.product(OUTCOMES, repeat=3)))
def test_online_is_never_shown_while_the_last_attempt_failed(station, history):
    station.config["server"] = {"url": "http://127.0.0.1:9"}
    station._link = None
    station.delete_setting("link")
    for kind, value in history:
        if kind == "ok":
            note_success(station, "probe", value)
        else:
            note_failure(station, "probe", value)
    status = link_status(station)
    kind, value = history[-1]
    if kind == "fail":
        assert status["link"] != "online" and status["reason"] == value
    elif value > LINK_SETTINGS["slow_ms"][0]:
        assert (status["link"], status["reason"]) == ("degraded", "slow")
    else:
        assert status["link"] in ("online", "degraded")


def test_the_state_is_kept_for_another_process(st, clock):
    note_success(st, "probe", 40)
    other = Station(st.data_dir, clock=clock)
    try:
        other.config["server"] = st.config["server"]
        assert link_status(other) == link_status(st) and state(other) == ("online", None)
        note_failure(st, "sync", "refused", "ConnectionError")
        status = link_status(other)
        assert (status["link"], status["reason"], status["last_failure_detail"]) == (
            "offline", "refused", "ConnectionError")
        assert status["last_success_at"] == "2026-11-02T23:40:00.000Z"
    finally:
        other.close()


def test_a_probe_is_due_only_when_nothing_else_went_out_lately(st, clock):
    assert probe_due(st)
    note_failure(st, "sync", "refused")
    assert not probe_due(st), "a failed sync measured the link just now"
    probe_seconds = LINK_SETTINGS["probe_seconds"][0]
    clock.advance(seconds=probe_seconds - 1)
    assert not probe_due(st)
    clock.advance(seconds=1)
    assert probe_due(st)
    note_success(st, "authorization", 40)
    assert not probe_due(st)
    clock.advance(seconds=-3600)  # the clock was set back: the last attempt is "in the future"
    assert probe_due(st)
    st.config.pop("server")
    assert not probe_due(st), "no bank to probe"


def test_every_link_setting_and_status_field_is_documented():
    from pathlib import Path

    operations = (Path(__file__).resolve().parents[1] / "docs/operations.md").read_text(encoding="utf-8")
    section = operations.split("### Link state", 1)[1].split("\n## ", 1)[0]
    for name in LINK_SETTINGS:
        assert f"`{name}`" in section, name
    for field in ("link", "link_reason", "last_success_at", "last_failure_at", "last_failure_reason",
                  "oldest_waiting_seconds", "last_sync_failed_at", "last_sync_failure_reason"):
        assert f"`{field}`" in section, field
