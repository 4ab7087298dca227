"""The branch managers' read-only dashboard at ``/dashboard/`` (docs/operations.md, "The branch dashboard").

Everything but the login form needs a logged-in bank user (``sync_server.bank_users``): a page without one is
redirected to the login, the SVG chart answered 401. Forms carry a CSRF token (Flask-WTF); the session cookie is
HttpOnly, SameSite=Strict, Secure unless ``SYNC_SERVER_DASHBOARD_SECURE_COOKIE=off``, and expires after
``SYNC_SERVER_DASHBOARD_SESSION_MINUTES`` without a request. Login attempts are rate-limited per client address
(``SYNC_SERVER_RATE_LIMIT_LOGIN``). The numbers come from ``sync_server.dashboard_data``; the charts are inline SVG
(``sync_server.dashboard_svg``); no page loads anything from elsewhere (the Content-Security-Policy says so).
"""

from __future__ import annotations

import os
import secrets
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError, CSRFProtect
from markupsafe import Markup

from station.protocol.entry_types import MAX_ID, printable, printable_text, spec_of
from station.protocol.private_files import write_private_file
from station.protocol.times import parse_utc
from sync_server import bank_users
from sync_server.admin import station_text
from sync_server.dashboard_data import (
    SERVICE_GAP_LIMIT_MS,
    busiest_days,
    county_figures,
    hourly_visits,
    merge,
    operations_by_type,
    overview,
    read_entry_times,
    week_heatmap,
    weekday_heatmap,
    window_ending,
)
from sync_server.dashboard_svg import WEEKDAYS, heatmap_svg
from sync_server.db import Station
from sync_server.policy import server_policy, station_policy

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

#: config key (and environment variable) -> (default, one-line help). docs/operations.md lists every one.
DASHBOARD_SETTINGS: dict[str, tuple[str, str]] = {
    "SYNC_SERVER_SECRET_KEY": (
        "", "Signs the dashboard's session cookie. Empty: a key generated once and kept in the keys folder "
            "(`dashboard_session.key`, 0600); set it (the same on every host) behind a load balancer."),
    "SYNC_SERVER_DASHBOARD_SECURE_COOKIE": (
        "on", "`off` lets the session cookie travel over plain HTTP (a test on loopback); keep it on behind TLS."),
    "SYNC_SERVER_DASHBOARD_SESSION_MINUTES": ("30", "A dashboard session ends after this many minutes idle."),
    "SYNC_SERVER_DASHBOARD_SILENT_HOURS": ("24", "An active station with no sync for longer is flagged silent."),
}
SECRET_KEY_FILE = "dashboard_session.key"
#: Weeks the wall chart may average over.
PEAK_CHART_WEEKS = range(1, 13)
#: The pages' Content-Security-Policy: nothing from anywhere else, no script at all.
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                           "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PUBLIC_ENDPOINTS = ("dashboard.login", "dashboard.login_submit")
#: The county page's name for the stations with no county (``/dashboard/counties/-``).
NO_COUNTY = "-"

csrf = CSRFProtect()


def dashboard_defaults() -> dict[str, str]:
    """Each setting from the environment, else its default (``create_app``'s mapping overrides them)."""
    return {name: os.environ.get(name, default) for name, (default, _) in DASHBOARD_SETTINGS.items()}


def _whole(config, name: str, low: int, high: int) -> int:
    text = str(config[name]).strip()
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise ValueError(f"{name} must be a whole number of {low} to {high}, not {text!r}")
    return int(text)


def session_secret(config, keys_dir: Path) -> str:
    """``SYNC_SERVER_SECRET_KEY``, else the key kept in the keys folder (made on first use; every worker reads the
    same file: ``write_private_file(replace=False)`` lets only the first writer's key stand)."""
    if str(config["SYNC_SERVER_SECRET_KEY"]).strip():
        return str(config["SYNC_SERVER_SECRET_KEY"]).strip()
    path = Path(keys_dir) / SECRET_KEY_FILE
    try:
        if not path.exists():
            try:
                write_private_file(path, secrets.token_hex(32), replace=False)
            except FileExistsError:
                pass
        return path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"The dashboard's session key {path} cannot be kept ({exc.strerror}): set "
                         f"SYNC_SERVER_SECRET_KEY, or let the server write its keys folder.") from exc


def check_dashboard_settings(config) -> tuple[int, bool]:
    """The session's minutes and whether its cookie is Secure; a ValueError names a bad setting (``sync-server
    serve`` checks them before it starts the workers)."""
    minutes = _whole(config, "SYNC_SERVER_DASHBOARD_SESSION_MINUTES", 1, 24 * 60)
    _whole(config, "SYNC_SERVER_DASHBOARD_SILENT_HOURS", 1, 24 * 30)
    secure = str(config["SYNC_SERVER_DASHBOARD_SECURE_COOKIE"]).strip().lower()
    if secure not in ("on", "off"):
        raise ValueError(f"SYNC_SERVER_DASHBOARD_SECURE_COOKIE is on or off, not {secure!r}")
    return minutes, secure == "on"


def install_dashboard(app: Flask) -> None:
    """Register the dashboard on ``app``: its blueprint, session settings, CSRF protection (for its forms only)."""
    config = app.config
    minutes, secure = check_dashboard_settings(config)
    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = session_secret(config, Path(config["SYNC_SERVER_KEYS_DIR"]))
    config.update(SESSION_COOKIE_NAME="dashboard_session", SESSION_COOKIE_HTTPONLY=True,
                  SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_SECURE=secure,
                  SESSION_COOKIE_PATH="/dashboard", PERMANENT_SESSION_LIFETIME=timedelta(minutes=minutes),
                  WTF_CSRF_CHECK_DEFAULT=False, WTF_CSRF_TIME_LIMIT=None, WTF_CSRF_SSL_STRICT=False)
    csrf.init_app(app)
    app.register_blueprint(bp)
    bank_users.warm_up()


@bp.before_request
def _require_login():
    """CSRF on every POST; a logged-in, enabled user with a live session on every endpoint but the login."""
    if request.method == "POST":
        csrf.protect()
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    user = bank_users.session_user(session.get("user"), session.get("sid"))
    if user is None:
        session.clear()
        if request.path.endswith(".svg") or request.method != "GET":
            abort(401)
        return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
    g.user = user
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(CSRFError)
def _csrf_error(exc: CSRFError):
    return render_template("dashboard/error.html", title="表单已过期 Form expired",
                           message="请返回重新提交。 The form expired or was not sent from this site: "
                                   "go back and send it again."), 400


def error_page(status: int, detail: str) -> Response:
    """A dashboard path's HTTP error as a page (the API answers problem+json)."""
    words = {401: "请先登录 Please log in", 404: "找不到 Not found", 429: "尝试次数太多 Too many attempts"}
    response = current_app.make_response((render_template(
        "dashboard/error.html", title=words.get(status, f"错误 Error {status}"), message=detail), status))
    return _headers(response)


def _safe_next(target: str | None) -> str:
    """Where to go after the login: a dashboard path only (never another site)."""
    # Printable and short: a line break would split the Location header, a long one outgrow it.
    if (target and len(target) <= 1000 and target.isprintable() and target.startswith("/dashboard/")
            and "//" not in target and "\\" not in target):
        return target
    return url_for("dashboard.index")


@bp.get("/login")
def login():
    """The login form."""
    return render_template("dashboard/login.html", next=_safe_next(request.args.get("next")), error=None)


@bp.post("/login")
def login_submit():
    """Check the name and password; one message for every failure."""
    name = request.form.get("name", "").strip()
    password = request.form.get("password", "")
    session_id = bank_users.log_in(name, password)
    target = _safe_next(request.form.get("next"))
    if session_id is None:
        return render_template("dashboard/login.html", next=target,
                               error="用户名或密码错误。 Wrong name or password."), 401
    session.clear()
    session.permanent = True
    session["user"] = name
    session["sid"] = session_id
    return redirect(target)


@bp.post("/logout")
def logout():
    """End the session."""
    bank_users.log_out(g.user.name)
    session.clear()
    return redirect(url_for("dashboard.login"))


def _now() -> datetime:
    """Now; a test's ``create_app`` mapping may fix it (``DASHBOARD_NOW``, an aware datetime) to look at a story's
    day."""
    return current_app.config.get("DASHBOARD_NOW") or datetime.now(UTC)


def _zone() -> ZoneInfo:
    return ZoneInfo(station_policy(server_policy())["timezone"])


def operation_label(entry_type: str) -> str:
    """An operation type in Chinese and English, as the receipts print it."""
    spec = spec_of(entry_type)
    if spec is None or spec.printed is None:
        return entry_type
    return f"{spec.printed[0]} {spec.printed[1]}"


def minutes_seconds(ms: int) -> str:
    """A service time as 1:05 (minutes:seconds)."""
    seconds = ms // 1000
    return f"{seconds // 60}:{seconds % 60:02d}"


def local_time(text: str | None, zone: ZoneInfo) -> str | None:
    """A stored UTC time as the stations' local time to the minute (``2026-11-03 11:00``)."""
    if not text:
        return None
    return parse_utc(text).astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _page(template: str, **context):
    zone = _zone()
    return render_template(template, label=operation_label, duration=minutes_seconds, user=g.user,
                           local_time=lambda text: local_time(text, zone),
                           gap_limit_minutes=SERVICE_GAP_LIMIT_MS // 60000,
                           silent_hours=int(current_app.config["SYNC_SERVER_DASHBOARD_SILENT_HOURS"]), **context)


@bp.get("/")
def index():
    """Per county: the week's heatmap and each station's row."""
    zone = _zone()
    now = _now()
    figures = overview(now, zone, int(current_app.config["SYNC_SERVER_DASHBOARD_SILENT_HOURS"]))
    window = window_ending(now, zone)
    per_station = hourly_visits(window, [row.station_id for row in figures])
    counties = {}
    for row in figures:
        counties.setdefault(row.county, []).append(row)
    sections = []
    for county, rows in counties.items():
        heatmap = week_heatmap(window, merge([per_station.get(row.station_id) or Counter() for row in rows]))
        name = county or "未分县 No county"
        svg = heatmap_svg(heatmap, f"{name} 本周每小时客流 Visits per hour this week",
                          f"{len(rows)} 个服务站 stations, {window.first_day} – {window.last_day}")
        sections.append((name, rows, Markup(svg)))
    return _page("dashboard/overview.html", sections=sections, window=window)


def _shown(text: str, limit: int = 64) -> str:
    """What a visitor typed, as a page may quote it: printable, cut at ``limit``."""
    text = printable_text(text)
    return text if len(text) <= limit else text[:limit] + "…"


def _station_or_404(station_id: str) -> Station:
    # A station id is at most MAX_ID printable characters: anything else is not looked up (PostgreSQL refuses a
    # text holding NUL outright).
    station = (Station.get_or_none(Station.station_id == station_id)
               if len(station_id) <= MAX_ID and printable(station_id) else None)
    if station is None:
        abort(404, f"No station {_shown(station_id)}.")
    return station


@bp.get("/stations/<station_id>")
def station_page(station_id: str):
    """One station: its figures and its week's heatmap, day by day."""
    station = _station_or_404(station_id)
    zone = _zone()
    now = _now()
    row = overview(now, zone, int(current_app.config["SYNC_SERVER_DASHBOARD_SILENT_HOURS"]), station_id)[0]
    window = window_ending(now, zone)
    heatmap = week_heatmap(window, hourly_visits(window, [station_id]).get(station_id) or Counter())
    svg = heatmap_svg(heatmap, f"{station.name} 本周每小时客流 Visits per hour this week",
                      f"{station_id}, {window.first_day} – {window.last_day}")
    return _page("dashboard/station.html", station=station, row=row, svg=Markup(svg), window=window,
                 operations=operations_by_type(window, station_id))


def _weeks() -> int:
    text = request.args.get("weeks", "4")
    # The length first: int() refuses a text of thousands of digits with a ValueError.
    if len(text) > 2 or not (text.isascii() and text.isdigit()) or int(text) not in PEAK_CHART_WEEKS:
        abort(400, f"weeks is a whole number of {PEAK_CHART_WEEKS.start} to {PEAK_CHART_WEEKS.stop - 1}.")
    return int(text)


def peak_chart_svg(station: Station, weeks: int) -> tuple[str, object, list]:
    """The wall chart's SVG: weekday by hour, the average visits per hour over ``weeks`` weeks, in big type; with
    the window and its busiest days (``busiest_days``: a pension day by its date, not diluted in its weekday)."""
    read_entry_times([station.station_id])
    window = window_ending(_now(), _zone(), weeks)
    per_hour = hourly_visits(window, [station.station_id]).get(station.station_id) or Counter()
    heatmap = weekday_heatmap(window, per_hour)
    svg = heatmap_svg(heatmap, f"{station.name} 峰值图: 近{weeks}周平均每小时客户数",
                      f"Average customers per hour, {window.first_day} – {window.last_day}", big=True)
    return svg, window, busiest_days(per_hour)


@bp.get("/stations/<station_id>/peak-chart")
def peak_chart(station_id: str):
    """The printable 峰值图 for the station's wall (A4)."""
    station = _station_or_404(station_id)
    weeks = _weeks()
    svg, window, busiest = peak_chart_svg(station, weeks)
    return _page("dashboard/peak_chart.html", station=station, svg=Markup(svg), weeks=weeks, window=window,
                 busiest=busiest, weekdays=WEEKDAYS)


@bp.get("/stations/<station_id>/peak-chart.svg")
def peak_chart_file(station_id: str):
    """The same chart as an SVG file."""
    station = _station_or_404(station_id)
    svg, _, _ = peak_chart_svg(station, _weeks())
    return Response(svg, mimetype="image/svg+xml")


@bp.app_template_global()
def county_url(county: str) -> str:
    """The county page of ``county`` (``""``: the stations with no county)."""
    return url_for("dashboard.county_page", county=county or NO_COUNTY)


def _county_or_404(text: str) -> str:
    """The county as stored (``""`` for ``NO_COUNTY``); 404 for text no station's county can be (too long, a
    control character, spaces a stored county never has) before anything is looked up."""
    if text == NO_COUNTY:
        return ""
    county, problem = station_text("county", text)
    if problem or county != text or not county:
        abort(404, "No such county.")
    return county


@bp.get("/counties/<path:county>")
def county_page(county: str):
    """One county: its week's heatmap, its own figures (per operation type the median over all its stations' gaps),
    the stations silent or behind, and each station's row."""
    name = _county_or_404(county)
    zone = _zone()
    now = _now()
    rows = overview(now, zone, int(current_app.config["SYNC_SERVER_DASHBOARD_SILENT_HOURS"]), county=name)
    if not rows:
        abort(404, "No station serves this county.")
    window = window_ending(now, zone)
    per_station = hourly_visits(window, [row.station_id for row in rows])
    heatmap = week_heatmap(window, merge([per_station.get(row.station_id) or {} for row in rows]))
    title = name or "未分县 No county"
    svg = heatmap_svg(heatmap, f"{title} 本周每小时客流 Visits per hour this week",
                      f"{len(rows)} 个服务站 stations, {window.first_day} – {window.last_day}")
    return _page("dashboard/county.html", title=title, county=county_figures(window, name, rows), svg=Markup(svg),
                 window=window)
