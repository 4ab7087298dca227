"""The bank's sync server: Flask API, central double-entry ledger, PostgreSQL or SQLite via peewee.

``create_app`` reads ``DATABASE_URL``, ``SYNC_SERVER_KEYS_DIR`` and the rate limits (``sync_server.ratelimits``) (or
``test_config``) and refuses a database whose schema is not the code's (run ``sync-server init-db``). Workers keep
no state that matters between requests (everything is in the database and the keys folder, so gunicorn may run
several; the rate limits' counts are each worker's own unless they are kept in a shared store); each process has its
own PostgreSQL connection pool, and each request takes one connection from it and gives it back.
"""

from __future__ import annotations

import logging
import os

import psycopg
from flask import Flask, request
from werkzeug.exceptions import HTTPException

from station.protocol import envelope
from station.protocol.envelope import MAX_SEALED_BYTES
from sync_server.dashboard import dashboard_defaults, error_page, install_dashboard
from sync_server.db import DEFAULT_DATABASE_URL, check_schema, connect_url, db_proxy
from sync_server.keys import load_keys
from sync_server.problems import PROBLEM_CONTENT_TYPE, Problem
from sync_server.ratelimits import install_rate_limits, rate_limit_defaults, retry_after_seconds

DEFAULT_KEYS_DIR = "sync-server-keys"
log = logging.getLogger(__name__)
#: What a ``database-unavailable`` answer asks the client to wait, in seconds (a PostgreSQL restart takes a few).
DATABASE_RETRY_AFTER_SECONDS = 5

_databases: dict = {}


def database_for(url: str):
    """One peewee database object per URL in this process (pooled on PostgreSQL), bound to the models."""
    if url not in _databases:
        _databases[url] = connect_url(url, pooled=True)
    db_proxy.initialize(_databases[url])
    return _databases[url]


def database_out_of_reach(exc: BaseException) -> bool:
    """Whether ``exc`` (peewee's error, or what it wraps) says the PostgreSQL server is out of reach or ended the
    session (restart, shutdown, connection cut: psycopg's ``OperationalError`` family), so the request recorded
    nothing and may be asked again. SQLite and programming errors are not: they stay ``internal-error``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, psycopg.OperationalError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


_HTTP_SLUGS = {400: "malformed-request", 404: "not-found", 405: "method-not-allowed", 413: "too-large",
               429: "rate-limited"}


#: Threads that check a batch's signatures in each process (``station.protocol.envelope.configure_verify_threads``):
#: a whole number, or empty for one per core. ``sync-server serve`` sets it to the cores over the workers.
VERIFY_THREADS_SETTING = "SYNC_SERVER_VERIFY_THREADS"


def verify_threads_setting(value) -> int | None:
    """``SYNC_SERVER_VERIFY_THREADS`` as a number of threads (None: one per core); a ValueError names a bad one."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 64:
        raise ValueError(f"{VERIFY_THREADS_SETTING} must be a whole number of 1 to 64 (or empty: one per core), "
                         f"not {text!r}")
    return int(text)


def create_app(test_config: dict | None = None) -> Flask:
    """The API app for ``DATABASE_URL`` and the keys in ``SYNC_SERVER_KEYS_DIR`` (or ``test_config``)."""
    app = Flask(__name__)
    app.config.from_mapping(
        DATABASE_URL=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        SYNC_SERVER_KEYS_DIR=os.environ.get("SYNC_SERVER_KEYS_DIR", DEFAULT_KEYS_DIR),
        MAX_CONTENT_LENGTH=MAX_SEALED_BYTES,
        SYNC_SERVER_VERIFY_THREADS=os.environ.get(VERIFY_THREADS_SETTING, ""),
        **rate_limit_defaults(),
        **dashboard_defaults(),
    )
    if test_config is not None:
        app.config.from_mapping(test_config)
    database = database_for(app.config["DATABASE_URL"])
    # Refuse to start on a schema other than the code's (not migrated yet, or migrated by a newer release).
    opened = database.connect(reuse_if_open=True)
    try:
        check_schema(database)
    finally:
        if opened:
            database.close()
    app.extensions["server_keys"] = load_keys(app.config["SYNC_SERVER_KEYS_DIR"])
    envelope.configure_verify_threads(verify_threads_setting(app.config[VERIFY_THREADS_SETTING]))

    from sync_server.api import bp

    app.register_blueprint(bp)
    install_dashboard(app)
    limiter = install_rate_limits(app)

    # One connection per request: on PostgreSQL taken from this process's pool and given back at teardown.
    @app.before_request
    def _connect():
        database.connect(reuse_if_open=True)

    @app.teardown_request
    def _close(_exc):
        if not database.is_closed():
            database.close()

    def problem_response(problem: Problem):
        response = app.response_class(
            app.json.dumps(problem.body(request.path)), status=problem.status, mimetype=PROBLEM_CONTENT_TYPE)
        return response

    @app.errorhandler(Problem)
    def _problem(problem: Problem):
        return problem_response(problem)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if request.path == "/dashboard" or request.path.startswith("/dashboard/"):
            response = error_page(exc.code or 400, exc.description or "")
            if exc.code == 429:
                response.headers["Retry-After"] = str(retry_after_seconds(limiter))
            return response
        slug = _HTTP_SLUGS.get(exc.code, "malformed-request")
        if slug == "rate-limited":
            response = problem_response(Problem(slug, f"Too many requests ({exc.description}); retry later."))
            response.headers["Retry-After"] = str(retry_after_seconds(limiter))
            return response
        return problem_response(Problem(slug, exc.description or slug))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if database_out_of_reach(exc):
            # PostgreSQL restarting, the network to it down, the pool's connection cut (or a serialization
            # failure): the client sends the same request again a little later. Safe whatever happened: a batch
            # whose COMMIT went through before the connection dropped is then answered as a duplicate.
            log.warning("database out of reach on %s: %s", request.path, exc)
            response = problem_response(Problem("database-unavailable", "The bank's database cannot be reached "
                                                "just now. Send the request again later."))
            response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
            return response
        log.exception("unexpected error on %s", request.path)
        return problem_response(Problem("internal-error", "The server could not complete the request; retry."))

    return app
