"""The village agent's touchscreen UI: Flask blueprints, Chinese first, English by a toggle.

Every page is rendered on the server; the only script is the on-screen keypad and pinyin keyboard (whose
candidates come from ``station.ui.ime``). The agent's session and the
operation being keyed in live in Flask's signed session cookie (never a PIN, never a full card number); each
operation's transaction UUID is issued with its form, so a double tap replays the first receipt instead of
recording twice (``station.writepath`` is idempotent by UUID).
"""

from __future__ import annotations

from flask import Flask, redirect, render_template, request, session, url_for
from flask_babel import Babel
from flask_wtf.csrf import CSRFError, CSRFProtect
from peewee import OperationalError

from station.errors import StationError, StorageFull
from station.storage import is_storage_full, note_storage_full
from station.ui import common
from station.ui.common import DEFAULT_LOCALE, LOCALES

csrf = CSRFProtect()

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def select_locale() -> str:
    """The person's language from the session; Chinese unless they chose English."""
    lang = session.get("lang")
    return lang if lang in LOCALES else DEFAULT_LOCALE


def init_ui(app: Flask) -> None:
    """Register the UI's blueprints, Flask-Babel, CSRF protection and the security headers on ``app``."""
    from station.ui import auth, complaints, day, home, ime, operations, receipts, unlock, voice

    station = app.extensions["station"]
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LOCALE)
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", station.policy["timezone"])
    # Flask's defaults hold SESSION_COOKIE_SAMESITE as None, so setdefault would leave it unset: set it unless the
    # app's own config chose a value.
    if app.config.get("SESSION_COOKIE_SAMESITE") is None:
        app.config["SESSION_COOKIE_SAMESITE"] = "Strict"
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # the session ends on idle logout instead
    Babel(app, locale_selector=select_locale)
    csrf.init_app(app)
    for module in (auth, unlock, home, operations, receipts, day, voice, complaints, ime):
        app.register_blueprint(module.bp)
    app.before_request(common.load_agent)
    app.before_request(common.revoked_gate)
    app.context_processor(common.template_globals)

    @app.errorhandler(CSRFError)
    def csrf_refused(_error):
        message = common.translate_error(common.FormExpired())
        return render_template("error.html", message=message), 400

    @app.errorhandler(StationError)
    def refused(err):
        # A refusal no screen catches still reaches the person as a plain message, never a bare 500.
        return render_template("error.html", message=common.translate_error(err)), 400

    @app.errorhandler(OperationalError)
    @app.errorhandler(OSError)
    def storage_full(err):
        # A write outside an operation's transaction (a print mark, a setting, a file) that found no room: the person
        # reads "storage full", the log says it once (station.storage). Any other such error is a bug: re-raised.
        if not is_storage_full(err):
            raise err
        note_storage_full(common.station(), f"{request.method} {request.path}", err)
        return render_template("error.html", message=common.translate_error(StorageFull())), 507

    @app.errorhandler(StorageFull)
    def refused_storage_full(err):
        return render_template("error.html", message=common.translate_error(err)), 507

    @app.errorhandler(404)
    @app.errorhandler(405)
    def not_here(_error):
        return render_template("error.html", message=common.translate_error(common.NoSuchScreen())), 404

    @app.get("/")
    def index():
        return redirect(url_for("home.home") if common.current_agent() else url_for("auth.login"))

    app.after_request(security_headers)


def security_headers(response):
    """The touchscreen's headers on every response (the set-up screens' too): a strict CSP, no framing, and no
    caching of screens that show customers' data."""
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response
