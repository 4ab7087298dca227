"""The dashboard's charts as plain SVG text, drawn on the server: no script, no font or file fetched from anywhere.

Every text is escaped (station names come from the bank's records, reasons from the entries). The SVG has a
``<title>`` and ``<desc>`` (``role="img"``) and every cell its own ``<title>`` ("周一 09时 12"), and the number is
printed in the cell, so the chart reads without colour. It scales to its container (``viewBox``, width 100%).
"""

from __future__ import annotations

from datetime import date
from html import escape

from sync_server.dashboard_data import Heatmap

WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
WEEKDAYS_EN = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
#: Hours always drawn (a village shop's day, as the station's chart); an hour with visits outside widens it.
OPENING_HOURS = range(7, 20)


def tenths(value: int) -> str:
    """A count in tenths as people write it: 30 -> "3", 25 -> "2.5", 0 -> "0"."""
    whole, tenth = divmod(value, 10)
    return f"{whole}.{tenth}" if tenth else str(whole)


def row_label(row: date | int) -> str:
    """A heatmap row's label: a weekday (the wall chart) or a date with its weekday (the week's map)."""
    if isinstance(row, int):
        return WEEKDAYS[row]
    return f"{row.month}/{row.day} {WEEKDAYS[row.weekday()]}"


def shown_hours(heatmap: Heatmap) -> range:
    """The opening hours, widened to any hour with a visit."""
    busy = [hour for _, cells in heatmap.rows for hour, value in enumerate(cells) if value]
    return range(min(busy + [OPENING_HOURS.start]), max(busy + [OPENING_HOURS.stop - 1]) + 1)


def heatmap_svg(heatmap: Heatmap, title: str, description: str, *, big: bool = False) -> str:
    """Rows by hours, each cell shaded by its share of the busiest cell and labelled with its number."""
    hours = shown_hours(heatmap)
    cell_w, cell_h = (56, 64) if big else (34, 30)
    label_w = 110 if big else 96
    head_h = 40 if big else 26
    font = 26 if big else 13
    width = label_w + cell_w * len(hours)
    height = head_h + cell_h * len(heatmap.rows)
    top = heatmap.top or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
             f'aria-labelledby="t d" font-family="sans-serif" font-size="{font}">',
             f'<title id="t">{escape(title)}</title><desc id="d">{escape(description)}</desc>']
    for index, hour in enumerate(hours):
        x = label_w + index * cell_w + cell_w // 2
        parts.append(f'<text x="{x}" y="{head_h - 8}" text-anchor="middle">{hour}</text>')
    for row_index, (row, cells) in enumerate(heatmap.rows):
        y = head_h + row_index * cell_h
        label = row_label(row)
        parts.append(f'<text x="4" y="{y + cell_h // 2 + font // 3}">{escape(label)}</text>')
        for index, hour in enumerate(hours):
            value = cells[hour]
            x = label_w + index * cell_w
            # Shade in 8 steps of the busiest cell (integer arithmetic); an empty hour stays white.
            step = (value * 8 + top - 1) // top
            fill = "#ffffff" if value == 0 else f"#{255 - step * 22:02x}{255 - step * 14:02x}ff"
            ink = "#ffffff" if step >= 6 else "#000000"
            text = tenths(value)
            parts.append(f'<g><title>{escape(label)} {hour:02d}时: {text}</title>'
                         f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" fill="{fill}" '
                         f'stroke="#999999" stroke-width="1"/>'
                         f'<text x="{x + cell_w // 2 - 1}" y="{y + cell_h // 2 + font // 3}" text-anchor="middle" '
                         f'fill="{ink}">{text if value else ""}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
