"""The bank's anti-fraud view: the transfers customers stopped at a station's fraud warning, and the scam markers
the stations warn on (the ``scam_markers`` of the stations' policy, sent down with every downlink).

A stopped transfer is a ``transfer_stopped`` entry the bank acknowledged (``sync_server.posting_rules``): it moves
no money and has no row of its own; what it says is read from its signed token.
"""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

from station.protocol.entry_types import EntryType
from station.protocol.scams import MAX_MARKER_LENGTH, MAX_MARKERS, valid_markers
from station.protocol.times import parse_utc
from station.protocol.tokens import unverified_payload
from sync_server.db import Entry, ServerSetting, db_proxy
from sync_server.policy import server_policy, station_policy


class FraudError(ValueError):
    """A request the anti-fraud commands refuse, in words for the operator."""


def stopped_transfers(station_id: str | None = None, since: date | None = None) -> list[dict]:
    """Transfers stopped at the fraud warning, by station and seq: when (local date and time in the policy's time
    zone), agent, customer account, amount, payee, and why the warning showed. ``since``: from that local date."""
    timezone = ZoneInfo(station_policy(server_policy())["timezone"])
    query = Entry.select(Entry.station_id, Entry.seq, Entry.token).where(
        (Entry.type == EntryType.TRANSFER_STOPPED) & (Entry.outcome == "acknowledged"))
    if station_id:
        query = query.where(Entry.station_id == station_id)
    rows = []
    for station, seq, token in query.order_by(Entry.station_id, Entry.seq).tuples():
        payload = unverified_payload(token)
        local = parse_utc(payload["ts"]).astimezone(timezone)
        if since is not None and local.date() < since:
            continue
        why = [*(["new payee"] if payload["new_payee"] else []), *(["large amount"] if payload["over_threshold"]
                                                                    else []), *payload["markers"]]
        rows.append({"station_id": station, "seq": seq, "local_time": local.strftime("%Y-%m-%d %H:%M"),
                     "agent": payload["agent"], "account_id": payload["account"], "amount_fen": payload["amount"],
                     "payee_account": payload["payee_account"], "payee_name": payload["payee_name"],
                     "new_payee": payload["new_payee"], "over_threshold": payload["over_threshold"],
                     "markers": payload["markers"], "why": ", ".join(why)})
    return rows


def scam_markers() -> list[str]:
    """The scam markers the stations warn on: the policy's, or the default list."""
    return list(station_policy(server_policy())["scam_markers"])


def set_scam_markers(markers: list[str]) -> list[str]:
    """Store the stations' scam markers (sent down with the next downlink), keeping every other setting; refuses
    a list the stations would not use (``valid_markers``)."""
    markers = list(dict.fromkeys(markers))
    if valid_markers(markers) is None:
        raise FraudError(f"Scam markers are at most {MAX_MARKERS} printable words of 1 to {MAX_MARKER_LENGTH} "
                         "characters each.")
    with db_proxy.atomic():
        row = ServerSetting.get_or_none(ServerSetting.key == "policy")
        value = dict(row.value) if row else {}
        value["station"] = {**value.get("station", {}), "scam_markers": markers}
        ServerSetting.insert(key="policy", value=value).on_conflict(
            conflict_target=[ServerSetting.key], update={ServerSetting.value: value}).execute()
    return markers
