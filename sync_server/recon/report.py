"""How a run's findings are shown: JSON (the contract of docs/recon.md), CSV, or tables for a terminal."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict

from rich.console import Console
from rich.table import Table

from sync_server.recon.i18n import gettext, labelled, money, render
from sync_server.recon.kinds import KINDS, N_, Discrepancy
from sync_server.recon.run import Findings
from sync_server.recon.store import Stored

#: Entry types as a clerk reads them.
TYPE_LABELS = {
    "withdrawal": N_("withdrawal"), "deposit": N_("deposit"), "transfer": N_("transfer"),
    "transfer_cancel": N_("transfer cancellation"), "bill_payment": N_("bill payment"),
    "reversal": N_("reversal"), "balance_enquiry": N_("balance enquiry"), "day_open": N_("day open"),
    "day_close": N_("day close"), "start": N_("start"), "agent_added": N_("agent added"),
    "agent_pin_failed": N_("agent PIN failure"), "agent_unlocked": N_("agent unlocked"),
    "customer_pin_failed": N_("customer PIN failure"), "feedback": N_("customer voice"),
    "transfer_stopped": N_("transfer stopped at the fraud warning"),
}

#: The columns of every discrepancy, in JSON and CSV.
COLUMNS = ("id", "kind", "station", "seq", "txn", "account", "biller", "reference", "amount_fen", "expected_fen",
           "status", "day", "explanation", "action")


def values(d: Discrepancy, lang: str) -> dict:
    """What an explanation may name: the discrepancy's fields, its detail, amounts (``*_fen``) as money."""
    found = {"station": d.station, "seq": d.seq, "txn": d.txn, "account": d.account, "biller": d.biller,
             "reference": d.reference, "day": d.day, "amount": money(d.amount_fen, lang),
             "expected": money(d.expected_fen, lang)}
    for key, value in (d.detail or {}).items():
        if key.endswith("_fen") and (value is None or isinstance(value, int)):
            found[key[:-4]] = money(value, lang)
        else:
            found[key] = value
    if isinstance(found.get("reason"), str):
        # A reason is itself a message (with the same values), or a code the server recorded, shown as it is.
        found["reason"] = render(lang, found["reason"], found)
    if isinstance(found.get("type"), str):
        found["type"] = gettext(lang, TYPE_LABELS.get(found["type"], found["type"]))
    return found


def as_dict(item: Stored, lang: str) -> dict:
    d = item.discrepancy
    spec = KINDS[d.kind]
    shown = values(d, lang)
    return {"id": item.id, "kind": d.kind, "group": spec.group, "station": d.station, "seq": d.seq, "txn": d.txn,
            "account": d.account, "biller": d.biller, "reference": d.reference, "amount_fen": d.amount_fen,
            "expected_fen": d.expected_fen, "status": item.status, "day": d.day,
            "explanation": render(lang, spec.explanation, shown), "action": render(lang, spec.action, shown)}


def at_stake(d: Discrepancy) -> int:
    """The money a discrepancy is about: the difference when it has an expected amount, else its amount."""
    if d.amount_fen is not None and d.expected_fen is not None:
        return abs(d.amount_fen - d.expected_fen)
    return abs(d.amount_fen or 0)


def summary(findings: Findings, stored: list[Stored]) -> dict:
    open_items = [item for item in stored if item.status == "open"]
    by_station: dict = defaultdict(int)
    amounts: dict = defaultdict(int)
    for item in open_items:
        by_station[item.discrepancy.station or "-"] += 1
        amounts[item.discrepancy.kind] += at_stake(item.discrepancy)
    return {
        "open": len(open_items),
        "found": len(stored),
        "by_kind": dict(sorted(Counter(item.discrepancy.kind for item in open_items).items())),
        "by_station": dict(sorted(by_station.items())),
        "amount_fen_by_kind": dict(sorted(amounts.items())),
        "entries_checked": findings.entries,
        "stations": findings.stations,
        "awaiting_settlement": findings.awaiting,
    }


def period(findings: Findings) -> dict:
    scope = findings.scope
    return {"from": scope.date_from, "to": scope.date_to,
            "stations": list(scope.stations) if scope.stations is not None else None,
            "as_of": findings.now.isoformat(timespec="seconds"), "verify_all": scope.verify_all}


def to_json(findings: Findings, stored: list[Stored], lang: str) -> str:
    document = {"period": period(findings), "discrepancies": [as_dict(item, lang) for item in stored],
                "summary": summary(findings, stored)}
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def to_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def print_tables(console: Console, findings: Findings, stored: list[Stored], lang: str) -> None:
    """The discrepancies, then the summary: per kind, per station, what each station's chain proved."""
    _ = lambda message: gettext(lang, message)  # noqa: E731
    rows = [as_dict(item, lang) for item in stored]
    if rows:
        table = Table(title=_(N_("Discrepancies")), show_lines=False)
        for column in (N_("ID"), N_("Kind"), N_("Station"), N_("Seq"), N_("Amount"), N_("Status"),
                       N_("Explanation")):
            table.add_column(_(column), overflow="fold")
        for row in rows:
            table.add_row(str(row["id"]), row["kind"], row["station"] or "", str(row["seq"] or ""),
                          money(row["amount_fen"], lang), _(row["status"]), row["explanation"])
        console.print(table)
    facts = summary(findings, stored)
    kinds = Table(title=_(N_("Open discrepancies by kind")))
    kinds.add_column(_(N_("Kind")))
    kinds.add_column(_(N_("Count")), justify="right")
    kinds.add_column(_(N_("Amount")), justify="right")
    for kind, count in facts["by_kind"].items():
        kinds.add_row(kind, str(count), money(facts["amount_fen_by_kind"].get(kind, 0), lang))
    kinds.add_row(_(N_("Total")), str(facts["open"]), money(sum(facts["amount_fen_by_kind"].values()), lang))
    console.print(kinds)
    stations = Table(title=_(N_("Stations")))
    for column in (N_("Station"), N_("Entries"), N_("Acknowledged to"), N_("Head verified"), N_("Open")):
        stations.add_column(_(column), justify="right" if column != N_("Station") else "left")
    for proof in facts["stations"]:
        stations.add_row(proof["station"], str(proof["entries"]), str(proof["acked_seq"]),
                         _verdict(proof["head_verified"], lang),
                         str(facts["by_station"].get(proof["station"], 0)))
    console.print(stations)
    if facts["awaiting_settlement"]:
        awaiting = Table(title=_(N_("Awaiting settlement file")))
        for column in (N_("Biller"), N_("Value date"), N_("Payments"), N_("Amount")):
            awaiting.add_column(_(column))
        for row in facts["awaiting_settlement"]:
            awaiting.add_row(row["biller"], row["value_date"], str(row["payments"]), money(row["amount_fen"], lang))
        console.print(awaiting)
    verdict = N_("No open discrepancy: every entry is accounted for.") if not facts["open"] else N_(
        "{open} open discrepancies: see the list above.")
    console.print(render(lang, verdict, facts))


def _verdict(proved: bool | None, lang: str) -> str:
    if proved is None:
        return "—"
    return gettext(lang, N_("yes")) if proved else gettext(lang, N_("no"))


#: Statuses and audit actions, as shown.
WORDS = (N_("open"), N_("resolved"), N_("opened"), N_("closed"), N_("reopened"))


def print_rows(console: Console, rows: list[dict], lang: str) -> None:
    """Exceptions as a table."""
    _ = lambda message: gettext(lang, message)  # noqa: E731
    table = Table(title=_(N_("Exceptions")))
    for column in (N_("ID"), N_("Kind"), N_("Station"), N_("Seq"), N_("Amount"), N_("Status"), N_("Explanation")):
        table.add_column(_(column), overflow="fold")
    for row in rows:
        table.add_row(str(row["id"]), row["kind"], row["station"] or "", str(row["seq"] or ""),
                      money(row["amount_fen"], lang), _(row["status"]), row["explanation"])
    console.print(table)


def print_exception(console: Console, shown: dict, lang: str) -> None:
    """One exception with its audit trail."""
    _ = lambda message: gettext(lang, message)  # noqa: E731
    for key in ("id", "kind", "status", "station", "seq", "txn", "account", "biller", "reference", "day",
                "first_found_at", "last_found_at"):
        if shown.get(key) is not None:
            console.print(f"{key}: {shown[key]}", highlight=False)
    for key, label in (("amount_fen", N_("amount")), ("expected_fen", N_("expected"))):
        if shown.get(key) is not None:
            console.print(labelled(lang, label, money(shown[key], lang)), highlight=False)
    console.print(shown["explanation"], highlight=False)
    console.print(labelled(lang, N_("What to do"), shown["action"]), highlight=False)
    trail = Table(title=_(N_("History")))
    for column in (N_("When"), N_("Who"), N_("What"), N_("Note")):
        trail.add_column(_(column))
    for event in shown["history"]:
        trail.add_row(event["at"], event["by"], _(event["action"]), event["note"])
    console.print(trail)
