"""The village service station: Flask app factory and the offline banking core."""

from __future__ import annotations

import os

from flask import Flask, jsonify

from station.context import DATA_DIR_ENV, DEFAULT_DATA_DIR, Station


def create_app(test_config: dict | None = None) -> Flask:
    """Create the station's Flask app for the data folder in ``STATION_DATA_DIR`` (or ``test_config``)."""
    app = Flask(__name__)
    app.config.from_mapping(
        STATION_DATA_DIR=os.environ.get(DATA_DIR_ENV, DEFAULT_DATA_DIR),
    )
    if test_config is not None:
        app.config.from_mapping(test_config)
    station = app.config.get("STATION") or Station(app.config["STATION_DATA_DIR"])
    app.extensions["station"] = station

    @app.get("/health")
    def health():
        from station.journal import journal_head

        station.activate()
        head_seq, _ = journal_head()
        return jsonify(station=station.station_id, head_seq=head_seq)

    return app
