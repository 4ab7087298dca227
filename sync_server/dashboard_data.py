"""The numbers of the branch dashboard (``sync_server.dashboard``), read from the entries the stations synced.

Where each number comes from:
- **When** an entry happened is the station's own ``ts`` in the token's payload (the station's clock, which the
  bank does not trust for order but is the only record of the hour a customer came). ``entry`` has no such column,
  so :func:`read_entry_times` reads each token once, in seq order per station, into ``entry_time`` (station, seq,
  type, outcome, reason, ts, gap from the station's previous entry) and remembers how far it got
  (``entry_time_mark``). A page view reads only the entries synced since the last view; everything else is SQL over
  ``entry_time``'s index on ``ts``, bounded to the weeks shown.
- **Visits** (the flow heatmap, the 峰值图) are the entries of the customer operations agents start from a home tile
  (``types_where(home_tile=True)``, the station's busy-hours chart counts the same), settled or refused: a refused
  customer still came to the counter. Binned by the hour of ``ts`` in ``DASHBOARD_TIMEZONE`` (the stations' zone).
- **Service time** of an operation: the journal holds one time per step (an operation entry, a customer's wrong
  PIN, a stopped transfer), not when the customer sat down, so the dashboard measures the time from the station's
  previous journal entry to the operation's entry, and only when that gap is at most
  :data:`SERVICE_GAP_LIMIT_MS` (a longer gap is the counter standing idle, not service). With customers queueing
  this is the time one took at the counter; when the counter was quiet before it, it includes the idle minutes
  under the limit, so the median is an upper bound. Per operation type, the median and the number measured.
- **Refusals** are the entries the bank settled as ``rejected``, by their reason; **stopped scams** the
  ``transfer_stopped`` entries (the customer stopped at the fraud warning); **voice items open**
  (:func:`open_voice_items`) the ``feedback`` entries.
- **A county's** figures are its stations' summed, but its service time per operation type is the median of all
  the county's measured gaps pooled (:func:`county_operations`), not a median of the stations' medians.
- **Behind on sync**: the station's signed tail (``station_tail.seq``) is past what the bank applied
  (``station.acked_seq``); **silent**: no sync for more than ``DASHBOARD_SILENT_HOURS`` (or never).

No number shows a customer's account, PIN, card or name: the dashboard reads types, outcomes, reasons and times.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from peewee import JOIN, SQL, Case, fn

from station.protocol.entry_types import EntryType, types_where
from station.protocol.times import parse_utc, utc_text
from station.protocol.tokens import unverified_payload
from sync_server.db import Entry, EntryTime, EntryTimeMark, Station, StationTail, db_proxy
from sync_server.voice import resolved_items

#: Customer visits: the operations an agent starts from a home tile (as the station's busy-hours chart counts).
VISIT_TYPES = tuple(str(entry_type) for entry_type in types_where(home_tile=True))
#: A gap from the previous entry longer than this is the counter standing idle, not serving (10 minutes).
SERVICE_GAP_LIMIT_MS = 10 * 60 * 1000
#: Entries read from their tokens per query while catching up (a station back from a week offline has thousands).
READ_CHUNK = 2000


def _payload_ts(token: str) -> datetime | None:
    """The entry's ``ts`` as an aware UTC time, or None when the payload does not hold one (the bank settled such
    an entry as rejected; it still counts, but not in any hour)."""
    try:
        return parse_utc(unverified_payload(token)["ts"])
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def read_entry_times(station_ids: list[str] | None = None) -> int:
    """Read into ``entry_time`` the entries of ``station_ids`` (all stations: None) synced since the last call;
    return how many. Each token is parsed once in its life; two page views at once may both read the same entries,
    and ``ON CONFLICT DO NOTHING`` keeps the first copy (both computed the same row)."""
    marks = {mark.station_id: mark.through_seq for mark in EntryTimeMark.select()}
    query = Station.select(Station.station_id, Station.acked_seq)
    if station_ids is not None:
        query = query.where(Station.station_id.in_(station_ids))
    total = 0
    for station in query:
        through = marks.get(station.station_id, 0)
        if station.acked_seq > through:
            total += _read_station(station.station_id, through)
    return total


def _read_station(station_id: str, through: int) -> int:
    previous = EntryTime.get_or_none((EntryTime.station_id == station_id) & (EntryTime.seq == through))
    previous_ts = parse_utc(previous.ts) if previous is not None and previous.ts else None
    total = 0
    while True:
        entries = list(Entry.select(Entry.seq, Entry.type, Entry.outcome, Entry.reason, Entry.token).where(
            (Entry.station_id == station_id) & (Entry.seq > through)).order_by(Entry.seq).limit(READ_CHUNK).tuples())
        if not entries:
            return total
        rows = []
        for seq, entry_type, outcome, reason, token in entries:
            ts = _payload_ts(token)
            gap = None
            if ts is not None and previous_ts is not None and ts >= previous_ts:
                gap = (ts - previous_ts) // timedelta(milliseconds=1)
            rows.append({"station_id": station_id, "seq": seq, "type": entry_type, "outcome": outcome,
                         "reason": reason, "ts": utc_text(ts) if ts else None, "gap_ms": gap})
            previous_ts = ts
        through = entries[-1][0]
        with db_proxy.atomic():
            EntryTime.insert_many(rows).on_conflict(
                conflict_target=[EntryTime.station_id, EntryTime.seq], action="IGNORE").execute()
            EntryTimeMark.insert(station_id=station_id, through_seq=through).on_conflict(
                conflict_target=[EntryTimeMark.station_id], action="IGNORE").execute()
            EntryTimeMark.update(through_seq=through).where(
                (EntryTimeMark.station_id == station_id) & (EntryTimeMark.through_seq < through)).execute()
        total += len(entries)


# -- the window ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """The local days shown: ``days`` days ending with ``last_day`` (today), in ``zone``."""

    last_day: date
    days: int
    zone: ZoneInfo

    @property
    def first_day(self) -> date:
        return self.last_day - timedelta(days=self.days - 1)

    def utc_bounds(self) -> tuple[str, str]:
        """``ts`` from (inclusive) and to (exclusive), as text that sorts as ``ts`` does."""
        start = datetime.combine(self.first_day, datetime.min.time(), self.zone)
        end = datetime.combine(self.last_day + timedelta(days=1), datetime.min.time(), self.zone)
        return utc_text(start), utc_text(end)


def window_ending(now: datetime, zone: ZoneInfo, weeks: int = 1) -> Window:
    """The ``weeks`` whole weeks of local days ending with today."""
    return Window(now.astimezone(zone).date(), 7 * weeks, zone)


def _in_window(window: Window, station_ids: list[str]):
    start, end = window.utc_bounds()
    return (EntryTime.ts >= start) & (EntryTime.ts < end) & EntryTime.station_id.in_(station_ids)


# -- the numbers ----------------------------------------------------------------------------------------------------
@dataclass
class StationFigures:
    """One station's row of the overview."""

    station_id: str
    name: str
    county: str
    status: str
    entries: int = 0
    visits: int = 0
    service: dict[str, tuple[int, int]] = field(default_factory=dict)  # type -> (median ms, operations measured)
    refusals: dict[str, int] = field(default_factory=dict)  # reason -> count
    stopped_scams: int = 0
    voice_open: int = 0
    last_sync_at: str | None = None
    behind_by: int = 0
    silent: bool = False


def hourly_visits(window: Window, station_ids: list[str]) -> dict[str, Counter]:
    """Per station, visits per ``(local date, local hour)`` in ``window``: counted in SQL per UTC hour (the first
    13 characters of ``ts``), each UTC hour then moved to the zone's (exact for whole-hour zones such as China's)."""
    if not station_ids:
        return {}
    # Literal bounds, not parameters: PostgreSQL matches the GROUP BY expression to the select's by its text.
    hour = fn.SUBSTR(EntryTime.ts, SQL("1"), SQL("13"))
    query = (EntryTime.select(EntryTime.station_id, hour.alias("hour"), fn.COUNT(EntryTime.seq))
             .where(_in_window(window, station_ids) & EntryTime.type.in_(VISIT_TYPES))
             .group_by(EntryTime.station_id, hour).tuples())
    result: dict[str, Counter] = defaultdict(Counter)
    for station_id, utc_hour, count in query:
        local = datetime.fromisoformat(utc_hour + ":00:00+00:00").astimezone(window.zone)
        result[station_id][(local.date(), local.hour)] += count
    return result


def median(values: list[int]) -> int:
    """The middle value (the lower of the two middle ones for an even count: a time that was measured)."""
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def service_times(window: Window, station_ids: list[str]) -> dict[str, dict[str, tuple[int, int]]]:
    """Per station and operation type: (median service time in ms, operations measured); see the module docstring.
    Reads one small integer per operation of the window."""
    if not station_ids:
        return {}
    query = (EntryTime.select(EntryTime.station_id, EntryTime.type, EntryTime.gap_ms)
             .where(_in_window(window, station_ids) & EntryTime.type.in_(VISIT_TYPES)
                    & EntryTime.gap_ms.between(0, SERVICE_GAP_LIMIT_MS)).tuples())
    gaps: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for station_id, entry_type, gap in query:
        gaps[station_id][entry_type].append(gap)
    return {station_id: {entry_type: (median(values), len(values)) for entry_type, values in by_type.items()}
            for station_id, by_type in gaps.items()}


def operations_by_type(window: Window, station_id: str) -> list[tuple[str, int, int]]:
    """The station's customer operations in ``window`` per type: (type, settled, refused), most frequent first."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    query = (EntryTime.select(EntryTime.type, EntryTime.outcome, fn.COUNT(EntryTime.seq))
             .where(_in_window(window, [station_id]) & EntryTime.type.in_(VISIT_TYPES))
             .group_by(EntryTime.type, EntryTime.outcome).tuples())
    for entry_type, outcome, count in query:
        counts[entry_type][outcome == "rejected"] += count
    rows = [(entry_type, settled, refused) for entry_type, (settled, refused) in counts.items()]
    return sorted(rows, key=lambda row: (-row[1] - row[2], row[0]))


def open_voice_items(station_ids: list[str]) -> dict[str, int]:
    """Customer-voice items (``feedback`` entries) still open, per station: those whose follow-up trail
    (``sync_server.voice``, ``sync-server voice resolve``) does not end resolved."""
    if not station_ids:
        return {}
    received = (EntryTime.select(EntryTime.station_id, EntryTime.seq)
                .where((EntryTime.type == str(EntryType.FEEDBACK)) & (EntryTime.outcome == "acknowledged")
                       & EntryTime.station_id.in_(station_ids)).tuples())
    resolved = resolved_items()
    counts: dict[str, int] = {}
    for station_id, seq in received:
        if (station_id, seq) not in resolved:
            counts[station_id] = counts.get(station_id, 0) + 1
    return counts


def overview(now: datetime, zone: ZoneInfo, silent_hours: int, station_id: str | None = None, *,
             county: str | None = None) -> list[StationFigures]:
    """Every station's figures for the week ending today (or ``station_id``'s alone, or those of ``county``: ``""``
    the stations with none), ordered by county and id."""
    stations = (Station.select(Station, StationTail.seq.alias("tail_seq"))
                .join(StationTail, JOIN.LEFT_OUTER, on=(StationTail.station_id == Station.station_id)))
    if station_id is not None:
        stations = stations.where(Station.station_id == station_id)
    if county is not None:
        stations = stations.where(_of_county(county))
    # Stations with no county last, on either backend (PostgreSQL sorts NULL last, SQLite first).
    stations = sorted(stations.objects(), key=lambda s: (s.county is None, s.county or "", s.station_id))
    ids = [station.station_id for station in stations]
    read_entry_times(ids)
    window = window_ending(now, zone)
    in_window = _in_window(window, ids)
    counts = {sid: (entries, visits) for sid, entries, visits in EntryTime.select(
        EntryTime.station_id, fn.COUNT(EntryTime.seq),
        fn.SUM(Case(None, [(EntryTime.type.in_(VISIT_TYPES), 1)], 0))).where(in_window).group_by(
        EntryTime.station_id).tuples()} if ids else {}
    refusals: dict[str, dict[str, int]] = defaultdict(dict)
    if ids:
        for sid, reason, count in (EntryTime.select(EntryTime.station_id, EntryTime.reason, fn.COUNT(EntryTime.seq))
                                   .where(in_window & (EntryTime.outcome == "rejected"))
                                   .group_by(EntryTime.station_id, EntryTime.reason).tuples()):
            refusals[sid][reason or "-"] = count
    stopped = dict(EntryTime.select(EntryTime.station_id, fn.COUNT(EntryTime.seq)).where(
        in_window & (EntryTime.type == str(EntryType.TRANSFER_STOPPED))).group_by(
        EntryTime.station_id).tuples()) if ids else {}
    service = service_times(window, ids)
    voice = open_voice_items(ids)
    silent_since = utc_text(now - timedelta(hours=silent_hours))
    figures = []
    for station in stations:
        entries, visits = counts.get(station.station_id, (0, 0))
        tail = station.tail_seq or 0
        figures.append(StationFigures(
            station.station_id, station.name, station.county or "", station.status, entries, visits or 0,
            service.get(station.station_id, {}), dict(sorted(refusals[station.station_id].items())),
            stopped.get(station.station_id, 0), voice.get(station.station_id, 0), station.last_sync_at,
            max(0, tail - station.acked_seq),
            station.status == "active" and (station.last_sync_at is None or station.last_sync_at < silent_since)))
    return figures


def _of_county(county: str):
    """Stations of ``county``; ``""``: those with none (never set, or set empty by an older release)."""
    if county:
        return Station.county == county
    return Station.county.is_null() | (Station.county == "")


@dataclass(frozen=True)
class CountyOperation:
    """One operation type across a county's stations in the week: settled, refused, and the median service time
    over every measured gap of every station (not a median of the stations' medians; None when none measured)."""

    type: str
    settled: int
    refused: int
    median_ms: int | None
    measured: int


@dataclass(frozen=True)
class CountyFigures:
    """A county's page: its stations' rows and the county's own totals (``county`` ``""``: no county)."""

    county: str
    stations: list[StationFigures]
    operations: list[CountyOperation]

    @property
    def entries(self) -> int:
        return sum(row.entries for row in self.stations)

    @property
    def visits(self) -> int:
        return sum(row.visits for row in self.stations)

    @property
    def refusals(self) -> dict[str, int]:
        """Refusals by reason, summed over the stations."""
        total: Counter = Counter()
        for row in self.stations:
            total.update(row.refusals)
        return dict(sorted(total.items()))

    @property
    def stopped_scams(self) -> int:
        return sum(row.stopped_scams for row in self.stations)

    @property
    def voice_open(self) -> int:
        return sum(row.voice_open for row in self.stations)

    @property
    def silent(self) -> list[StationFigures]:
        return [row for row in self.stations if row.silent]

    @property
    def behind(self) -> list[StationFigures]:
        return [row for row in self.stations if row.behind_by]


def county_operations(window: Window, station_ids: list[str]) -> list[CountyOperation]:
    """The customer operations of ``station_ids`` in ``window`` per type, most frequent first: settled and refused
    counts, and the median of all their measured gaps pooled (``SERVICE_GAP_LIMIT_MS``, as ``service_times``)."""
    if not station_ids:
        return []
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for entry_type, outcome, count in (
            EntryTime.select(EntryTime.type, EntryTime.outcome, fn.COUNT(EntryTime.seq))
            .where(_in_window(window, station_ids) & EntryTime.type.in_(VISIT_TYPES))
            .group_by(EntryTime.type, EntryTime.outcome).tuples()):
        counts[entry_type][outcome == "rejected"] += count
    gaps: dict[str, list[int]] = defaultdict(list)
    for entry_type, gap in (EntryTime.select(EntryTime.type, EntryTime.gap_ms)
                            .where(_in_window(window, station_ids) & EntryTime.type.in_(VISIT_TYPES)
                                   & EntryTime.gap_ms.between(0, SERVICE_GAP_LIMIT_MS)).tuples()):
        gaps[entry_type].append(gap)
    rows = [CountyOperation(entry_type, settled, refused, median(gaps[entry_type]) if gaps[entry_type] else None,
                            len(gaps[entry_type])) for entry_type, (settled, refused) in counts.items()]
    return sorted(rows, key=lambda row: (-row.settled - row.refused, row.type))


def county_figures(window: Window, county: str, stations: list[StationFigures]) -> CountyFigures:
    """``county``'s figures from its stations' rows (``overview(..., county=county)``) and its pooled operations."""
    return CountyFigures(county, stations, county_operations(window, [row.station_id for row in stations]))


# -- the heatmaps -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Heatmap:
    """Visits per row and hour: ``rows`` are labels (a date, or a weekday), ``cells[row][hour]`` tenths of a visit
    per hour (a week's map: whole visits times 10; the wall chart: the average over its weeks)."""

    rows: tuple[tuple[date | int, tuple[int, ...]], ...]
    weeks: int

    @property
    def top(self) -> int:
        return max((cell for _, cells in self.rows for cell in cells), default=0)


def week_heatmap(window: Window, per_hour: Counter) -> Heatmap:
    """The window's days (oldest first) by hour, in tenths of a visit."""
    days = [window.first_day + timedelta(days=n) for n in range(window.days)]
    return Heatmap(tuple((day, tuple(per_hour[(day, hour)] * 10 for hour in range(24))) for day in days), 1)


def weekday_heatmap(window: Window, per_hour: Counter) -> Heatmap:
    """Weekday (0 Monday) by hour: the average visits per hour over the window's weeks, in tenths, rounded half
    up (integer arithmetic). Each weekday occurs exactly ``weeks`` times in a window of whole weeks."""
    weeks = window.days // 7
    totals: Counter = Counter()
    for (day, hour), count in per_hour.items():
        totals[(day.weekday(), hour)] += count
    return Heatmap(tuple((weekday, tuple((totals[(weekday, hour)] * 20 + weeks) // (2 * weeks) for hour in range(24)))
                         for weekday in range(7)), weeks)


@dataclass(frozen=True)
class BusyDay:
    """One of the busiest days of a wall chart's weeks: its date, its visits, and its busiest hour."""

    day: date
    visits: int
    peak_hour: int


def busiest_days(per_hour: Counter, count: int = 3) -> list[BusyDay]:
    """The ``count`` days with the most visits in ``per_hour`` ((local date, hour) -> visits), most first (the
    earlier date first on a tie), each with its busiest hour (the earlier hour on a tie).

    The weekday averages spread a day that comes once a month (pension day: the same date, not the same weekday)
    over four weeks; named by its date it shows as the peak it was."""
    days: Counter = Counter()
    hours: dict[date, Counter] = defaultdict(Counter)
    for (day, hour), visits in per_hour.items():
        days[day] += visits
        hours[day][hour] += visits
    ranked = sorted((day for day in days if days[day] > 0), key=lambda day: (-days[day], day))[:count]
    return [BusyDay(day, days[day], min(hours[day], key=lambda hour: (-hours[day][hour], hour))) for day in ranked]


def merge(counters: list[Counter]) -> Counter:
    """Several stations' visits as one (a county's)."""
    total: Counter = Counter()
    for counter in counters:
        total.update(counter)
    return total
