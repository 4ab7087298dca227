"""Rate limits of the API (Flask-Limiter): enrollment and the other endpoints anyone may call, per client address;
each station's endpoints per station id from one client address (station ids are no secret: a flood naming a station
from elsewhere must not use up the station's own count), and per address whatever the station id (an attacker who
varies the station id in the path).

Every limit is a setting (:data:`RATE_LIMIT_SETTINGS`, from the environment or ``create_app``'s mapping; docs/
operations.md, "Rate limits"); ``off`` lifts one, ``SYNC_SERVER_RATE_LIMITS=off`` all. A request past a limit is
answered ``429`` with a ``rate-limited`` problem and ``Retry-After`` (seconds) before the view reads its body or
touches the database; the station's sync client waits and tries again (``station.sync``).

The counts live in ``SYNC_SERVER_RATE_LIMIT_STORAGE``: ``memory://`` (the default) counts in each worker process, so
with gunicorn's N workers a client gets up to N times a limit; a shared store (``redis://host:6379``, with the
``redis`` package installed) makes the limits exact across workers and hosts.
"""

from __future__ import annotations

import math
import os
import time

from flask import Flask, request
from flask_limiter import Limiter
from werkzeug.middleware.proxy_fix import ProxyFix

#: config key (and environment variable) -> (default, one-line help). docs/operations.md lists every one.
RATE_LIMIT_SETTINGS: dict[str, tuple[str, str]] = {
    "SYNC_SERVER_RATE_LIMITS": ("on", "`off` lifts every rate limit (a load test on loopback)."),
    "SYNC_SERVER_RATE_LIMIT_ENROLL": (
        "10 per minute;50 per hour", "`POST /api/v1/enroll`, per client address (guessing enrollment codes)."),
    "SYNC_SERVER_RATE_LIMIT_PUBLIC": (
        "120 per minute", "`health`, `openapi.json`, a station's `jwks` and `head`, per client address."),
    "SYNC_SERVER_RATE_LIMIT_STATION": (
        "120 per minute",
        "a station's `batches`, `authorizations` and `probe` together, per station id and client address."),
    "SYNC_SERVER_RATE_LIMIT_STATION_ADDRESS": (
        "1200 per minute", "the same endpoints per client address: many stations may share one carrier NAT address."),
    "SYNC_SERVER_RATE_LIMIT_LOGIN": (
        "10 per minute;50 per hour", "The branch dashboard's login attempts (`POST /dashboard/login`), per client "
                                     "address (guessing passwords)."),
    "SYNC_SERVER_RATE_LIMIT_STORAGE": (
        "memory://", "Where the counts live: `memory://` (each worker its own) or a shared `redis://host:6379`."),
    "SYNC_SERVER_TRUSTED_PROXIES": (
        "0", "How many reverse proxies in front set `X-Forwarded-For`: the client address is taken from it."),
}

#: endpoint -> the settings that limit it, each with what it counts by.
_LIMITED: dict[str, tuple[tuple[str, str], ...]] = {
    "api.enroll": (("SYNC_SERVER_RATE_LIMIT_ENROLL", "address"),),
    "dashboard.login_submit": (("SYNC_SERVER_RATE_LIMIT_LOGIN", "address"),),
    "api.health": (("SYNC_SERVER_RATE_LIMIT_PUBLIC", "address"),),
    "api.openapi": (("SYNC_SERVER_RATE_LIMIT_PUBLIC", "address"),),
    "api.station_jwks": (("SYNC_SERVER_RATE_LIMIT_PUBLIC", "address"),),
    "api.station_head": (("SYNC_SERVER_RATE_LIMIT_PUBLIC", "address"),),
    **{endpoint: (("SYNC_SERVER_RATE_LIMIT_STATION", "station"), ("SYNC_SERVER_RATE_LIMIT_STATION_ADDRESS", "address"))
       for endpoint in ("api.post_batch", "api.post_authorization", "api.probe")},
}


def rate_limit_defaults() -> dict[str, str]:
    """Each setting from the environment, else its default (``create_app``'s mapping overrides them)."""
    return {name: os.environ.get(name, default) for name, (default, _) in RATE_LIMIT_SETTINGS.items()}


def client_address() -> str:
    """The client's address (behind ``SYNC_SERVER_TRUSTED_PROXIES`` proxies: the one they forward)."""
    return request.remote_addr or "unknown"


def station_from_address() -> str:
    """The station id of the request's path, with the client's address: requests naming a station from another
    address count apart from the station's own."""
    return f"{(request.view_args or {}).get('station_id', '')}@{client_address()}"


_KEYS = {"address": client_address, "station": station_from_address}


def install_rate_limits(app: Flask) -> Limiter:
    """Put the limits of ``app.config`` on the API's endpoints (call after the blueprint is registered)."""
    config = app.config
    proxies = int(config["SYNC_SERVER_TRUSTED_PROXIES"])
    if proxies > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies)
    enabled = str(config["SYNC_SERVER_RATE_LIMITS"]).lower() != "off"
    # One limiter per app: the counts of one app (a test's server) are never another's.
    limiter = Limiter(key_func=client_address, app=app, storage_uri=config["SYNC_SERVER_RATE_LIMIT_STORAGE"],
                      strategy="moving-window", enabled=enabled)
    for endpoint, limits in _LIMITED.items():
        view = app.view_functions[endpoint]
        for setting, counted_by in limits:
            value = str(config[setting]).strip()
            if value.lower() in ("", "off"):
                continue
            # A shared scope per setting: a station's batches, authorizations and probes count together.
            view = limiter.shared_limit(value, scope=f"{setting}:{counted_by}", key_func=_KEYS[counted_by])(view)
        app.view_functions[endpoint] = view
    return limiter


def retry_after_seconds(limiter: Limiter) -> int:
    """Whole seconds until the limit this request broke lets a request through again (at least 1)."""
    breached = limiter.current_limit
    if breached is None:
        return 1
    return max(1, math.ceil(breached.reset_at - time.time()))
