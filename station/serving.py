"""What ``station serve`` runs: the station's own app with its background sync, or first the set-up screens.

A data folder with a station in it: ``station.app.create_app`` and, when the station is enrolled with a sync
server, the background sync (``station.scheduler``), started here and nowhere else. A folder with no station
yet (a new device): the set-up screens of ``station.setup_ui`` on the same port until enrollment succeeds,
then the same app and background sync for the new station, without a restart. A station with no supervisor yet
(enrolled from a shell with ``station enroll``, or a set-up left halfway) starts with the set-up's step that adds
the shop's people, its app and background sync already running.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

from station.agents import next_setup_role
from station.app import create_app
from station.context import Station, StationNotInitialised
from station.setup_ui import CA_BUNDLE_ENV, SERVER_URL_ENV, FirstBoot, SetupDispatcher


class Serving:
    """The app ``station serve`` hands to waitress, and the background sync it starts (stopped by ``shutdown``).

    ``echo`` receives one line per event worth telling the person who started the server.
    """

    def __init__(self, data_dir: str | os.PathLike, *, echo: Callable[[str], None] = print):
        self.data_dir = Path(data_dir)
        self.echo = echo
        self.schedulers = []
        self.stations: list[Station] = []

    def app(self):
        """The station's app for a folder that holds one with a supervisor; else the set-up screens
        (``SetupDispatcher``): enrollment first for an empty folder, the shop's people for a station without them.

        A damaged or too new database raises as ``Station`` does: the caller says so and stops."""
        try:
            st = Station(self.data_dir)
        except StationNotInitialised:
            first_boot = FirstBoot(self.data_dir, server_url=os.environ.get(SERVER_URL_ENV),
                                   ca_bundle=os.environ.get(CA_BUNDLE_ENV))
            self.echo(f"No station in {self.data_dir} yet: showing the enrollment screen (scan the bank's QR).")
            return SetupDispatcher(first_boot, self.station_app)
        if next_setup_role(st) == "supervisor":
            self.echo(f"Station {st.station_id} has no supervisor yet: showing the set-up screen to add the shop's "
                      "people (or `station agent add`).")
            return SetupDispatcher(FirstBoot(self.data_dir, station=st), self.station_app)
        return self.station_app(st)

    def station_app(self, st: Station):
        """The station's Flask app; the background sync starts with it when the station has a sync server."""
        self.stations.append(st)
        app = create_app({"STATION": st, "STATION_DATA_DIR": str(st.data_dir)})
        if st.config.get("server"):
            from station.scheduler import start_scheduler, sync_now

            # The one place the background sync starts: the serving process, once per station.
            scheduler = start_scheduler(st, app.config)
            self.schedulers.append(scheduler)
            # hook(wait=seconds): the outcome of the sync it asked for, or None (still running, or wait=0).
            app.extensions["sync_now"] = functools.partial(sync_now, scheduler)
            self.echo(f"Syncing with {st.config['server'].get('url')} in the background.")
        else:
            self.echo("Not enrolled with a sync server: operations stay on this device (`station enroll` to sync).")
        self.echo(f"Station {st.station_id} ready.")
        return app

    def shutdown(self) -> None:
        """Stop the background sync and close the stations' databases."""
        for scheduler in self.schedulers:
            scheduler.shutdown(wait=False)
        for st in self.stations:
            st.close()
