"""The bank re-checks a day close: a variance beyond the policy's ``day_close_tolerance_fen`` settles only with a
reason and a supervisor the station added as one; else it is rejected ``variance_not_approved`` and posts nothing.
Runs on SQLite and, with TEST_DATABASE_URL, PostgreSQL (the ``server`` fixture)."""

from __future__ import annotations

from sync_support import append_forged_entry, enrolled_station, open_counter, server_db

from station import business_day
from station.sync import sync_once
from sync_server.db import Entry, Posting, ServerSetting


def forged_close(st, amount: int, expected: int, variance: int, **approval) -> int:
    """A day close signed as a tampered (or older) station would sign it: no station-side check."""
    body = {"agent": "A01", "amount": amount, "expected": expected, "variance": variance, "counts": {"10000": 1},
            "operations": 0, "business_date": st.local_date().isoformat(), **approval}
    with st.write():
        return append_forged_entry(st, "day_close", st.now(), body).seq


def outcome_of(station_id: str, seq: int) -> tuple[str, str | None, int]:
    server_db()
    entry = Entry.get((Entry.station_id == station_id) & (Entry.seq == seq))
    postings = Posting.select().where((Posting.station_id == station_id) & (Posting.seq == seq)).count()
    return entry.outcome, entry.reason, postings


def test_the_bank_refuses_a_close_beyond_the_tolerance_without_reason_and_supervisor(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        # The supervisor is added in the same batch as the close they approve.
        agent, supervisor = open_counter(st)
        approved = business_day.close_day(st, agent, {"10000": 299, "5000": 1}, reason="Miscount",
                                          supervisor=supervisor).receipt.seq
        assert sync_once(st).rejected == {}
        assert outcome_of("ST-0001", approved) == ("acknowledged", None, 2)  # the count and the shortage

        # A later batch: the supervisor comes from the bank's stored agent_added entries.
        business_day.open_day(st, agent, {"10000": 300})
        expected = 3_000_000
        refused = {
            forged_close(st, expected - 5_000, expected, -5_000): "no reason, no supervisor",
            forged_close(st, expected - 5_000, expected, -5_000, reason="Miscount"): "no supervisor",
            forged_close(st, expected - 5_000, expected, -5_000, supervisor="S01"): "no reason",
            forged_close(st, expected - 5_000, expected, -5_000, reason=" ", supervisor="S01"): "a blank reason",
            forged_close(st, expected - 5_000, expected, -5_000, reason="Miscount", supervisor="A01"): "an agent",
            forged_close(st, expected - 5_000, expected, -5_000, reason="Miscount", supervisor="S99"): "nobody",
            # The variance the station states is not trusted: the bank computes amount - expected.
            forged_close(st, expected + 5_000, expected, 0): "a variance stated as none",
        }
        within = forged_close(st, expected - 1_000, expected, -1_000)
        approved_later = forged_close(st, expected + 20_000, expected, 20_000, reason="Fake note", supervisor="S01")
        assert sync_once(st).rejected == dict.fromkeys(refused, "variance_not_approved")
    for seq, why in refused.items():
        assert outcome_of("ST-0001", seq) == ("rejected", "variance_not_approved", 0), why
    assert outcome_of("ST-0001", within)[:2] == ("acknowledged", None)
    assert outcome_of("ST-0001", approved_later)[:2] == ("acknowledged", None)


def test_the_banks_policy_sets_the_tolerance(server, tmp_path, clock):
    server_db()
    row = ServerSetting.get_by_id("policy")
    station = {**row.value.get("station", {}), "day_close_tolerance_fen": 0}
    ServerSetting.update(value={**row.value, "station": station}).where(ServerSetting.key == "policy").execute()
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        assert st.policy["day_close_tolerance_fen"] == 0, "the downlink brings the bank's tolerance"
        open_counter(st)
        small = forged_close(st, 3_000_000 - 10, 3_000_000, -10)
        assert sync_once(st).rejected == {small: "variance_not_approved"}
