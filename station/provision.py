"""Creating a station on this device: data folder, keys, config, database and the signed start entry.

``station init`` (demos, tests) creates the station alone; ``station enroll`` (``station.sync``) does the same
with the bank's configuration.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime

from station.context import Station, create_station_files
from station.journal import append_start_entry


def init_station(
    data_dir: str | os.PathLike, station_id: str, *, clock: Callable[[], datetime] | None = None, **config
) -> Station:
    """Create a station: keys, config, database and its signed start entry (seq 1)."""
    create_station_files(data_dir, station_id, **config)
    st = Station(data_dir, clock=clock, new=True)
    with st.write():
        append_start_entry(st)
    return st
