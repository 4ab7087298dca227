"""The station's Flask app factory: the touchscreen UI and ``/health`` on one device's data folder."""

from __future__ import annotations

import os
import secrets
from contextlib import ExitStack
from pathlib import Path

from flask import Flask, g, jsonify

from station.context import DATA_DIR_ENV, DEFAULT_DATA_DIR, Station
from station.device_state import device_state
from station.protocol.private_files import write_private_file

#: The per-device key that signs the touchscreen's session cookie; it lives in the data folder, never the package.
SECRET_KEY_FILE = "keys/ui_session.key"


def device_secret_key(data_dir: Path) -> str:
    """The UI session key of this device, created on first start (mode 0600)."""
    path = Path(data_dir) / SECRET_KEY_FILE
    if not path.exists():
        write_private_file(path, secrets.token_hex(32))
    return path.read_text(encoding="utf-8").strip()


def create_app(test_config: dict | None = None) -> Flask:
    """Create the station's Flask app for the data folder in ``STATION_DATA_DIR`` (or ``test_config``).

    ``test_config`` may carry a ready ``STATION`` object (tests) and any Flask setting; the touchscreen UI
    (``station.ui``) is registered on the app with Flask-Babel, CSRF protection and security headers.
    """
    app = Flask(__name__)
    app.config.from_mapping(
        STATION_DATA_DIR=os.environ.get(DATA_DIR_ENV, DEFAULT_DATA_DIR),
    )
    if test_config is not None:
        app.config.from_mapping(test_config)
    station = app.config.get("STATION") or Station(app.config["STATION_DATA_DIR"])
    app.extensions["station"] = station
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = device_secret_key(station.data_dir)

    @app.before_request
    def bind_station():
        """The models use this app's station for the request, in the request's thread only (never process-wide)."""
        g.station_binding = ExitStack()
        g.station_binding.enter_context(station.bound())

    @app.teardown_request
    def unbind_station(_exc):
        binding = g.pop("station_binding", None)
        if binding is not None:
            binding.close()

    @app.get("/health")
    def health():
        from station.journal import journal_head

        head_seq, _ = journal_head(station)
        return jsonify(station=station.station_id, head_seq=head_seq, state=device_state(station).value)

    from station.ui import init_ui

    init_ui(app)
    return app
