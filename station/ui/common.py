"""What every screen shares: the agent in the session cookie, idle logout, refusal messages, the status bar."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

from flask import current_app, g, redirect, request, session, url_for
from flask_babel import format_datetime, get_locale, gettext

from station import agents, business_day, limits, receipts
from station.device_state import revocation
from station.errors import N_, StationError
from station.journal import journal_head
from station.protocol.money import chinese_capitals, format_yuan
from station.protocol.times import parse_utc, utc_text

#: Locales the toggle offers; Flask-Babel resolves zh_CN to the zh_Hans_CN catalogue.
LOCALES = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"
#: "Online" on the status bar means a successful sync within this many seconds (the sync job runs more often).
ONLINE_WINDOW_SECONDS = 15 * 60
#: Warn on the status bar from this share of an offline limit (age, unsynced amount or count) on.
OFFLINE_WARNING_SHARE = 0.75
#: What a revoked station still serves, none of it a new operation: its revoked screen, logging in and out, the
#: language, and today's receipts to look at and reprint. Every other screen leads to the revoked screen.
SERVED_WHEN_REVOKED = frozenset({
    "static", "health", "home.revoked", "auth.login", "auth.logout", "auth.set_language",
    "receipts.index", "receipts.show", "receipts.print_copy",
})


# -- refusals of the UI itself (the core's live in station.errors) ----------------------------------------
class FormExpired(StationError):
    code = "form_expired"
    template = N_("This page was open too long or came from elsewhere. Please go back and try again.")


class NoSuchScreen(StationError):
    code = "no_such_screen"
    template = N_("There is no such screen here.")


class NoOperationInProgress(StationError):
    code = "no_operation"
    template = N_("There is no operation in progress. Start again from the home screen.")


class OperationInProgress(StationError):
    code = "operation_in_progress"
    template = N_("An operation is half done. Finish it or cancel it before closing the day.")


class SyncNotConfigured(StationError):
    code = "sync_not_configured"
    template = N_("Sync is not configured on this station yet.")


class Idle(StationError):
    code = "idle_logout"
    template = N_("You were logged out after %(minutes)d minutes without use.")


def station():
    """The opened station of this app (``station.app`` binds it for each request)."""
    return current_app.extensions["station"]


def translate_error(err: StationError) -> str:
    """The refusal in the person's language (the template is translated, then filled)."""
    text = gettext(err.template)
    return text % err.params if err.params else text


# -- the agent session ------------------------------------------------------------------------------------
def agent_session_to_cookie(agent: agents.AgentSession, now: datetime) -> dict:
    """The agent session as the signed cookie keeps it, with the time of the last request."""
    return {
        "agent_id": agent.agent_id,
        "name": agent.name,
        "role": agent.role,
        "station_id": agent.station_id,
        "started_at": utc_text(agent.started_at),
        "expires_at": utc_text(agent.expires_at),
        "last_seen": utc_text(now),
    }


def current_agent() -> agents.AgentSession | None:
    """The logged-in agent's session from the cookie, or None."""
    data = session.get("agent")
    if not data:
        return None
    return agents.AgentSession(
        agent_id=data["agent_id"],
        name=data["name"],
        role=data["role"],
        station_id=data["station_id"],
        started_at=parse_utc(data["started_at"]),
        expires_at=parse_utc(data["expires_at"]),
    )


def idle_seconds() -> int:
    """Seconds without a request after which the agent is logged out (station policy)."""
    return int(station().policy["agent_idle_seconds"])


def end_session() -> None:
    """Forget the agent and any half-keyed operation; keep the language choice."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang


def load_agent() -> None:
    """Before each request: log the agent out after the idle period (by the station's clock), else touch."""
    data = session.get("agent")
    if not data or request.endpoint == "static":
        return
    now = station().now()
    last_seen = parse_utc(data["last_seen"])
    expired = now >= parse_utc(data["expires_at"])
    if expired or now - last_seen > timedelta(seconds=idle_seconds()):
        end_session()
        g.logged_out_idle = True
        return
    data["last_seen"] = utc_text(now)
    session["agent"] = data


def revoked_gate():
    """Before each request: once the bank has revoked this station, only ``SERVED_WHEN_REVOKED`` is served."""
    if request.endpoint in SERVED_WHEN_REVOKED or revocation(station()) is None:
        return None
    return redirect(url_for("home.revoked"))


def login_required(view):
    """Send a person without an agent session to the login screen (saying why after an idle logout)."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if current_agent() is None:
            return redirect(url_for("auth.login", idle=1 if g.get("logged_out_idle") else None))
        return view(*args, **kwargs)

    return wrapped


# -- what templates use -----------------------------------------------------------------------------------
def yuan(fen: int | None) -> str:
    """Fen as yuan figures for a screen ("1,234.50"); '-' for no value."""
    return "-" if fen is None else format_yuan(fen)


def local_time(moment: datetime | None, style: str = "short") -> str:
    """A moment in the station's time zone, formatted for the person's language."""
    return "-" if moment is None else format_datetime(moment, style)


def status_bar() -> dict:
    """Online/offline, last sync, entries waiting for the bank, drawer cash and any offline-limit warning."""
    st = station()
    policy = st.policy
    now = st.now()
    synced = limits.last_sync_at(st)
    head_seq, _ = journal_head(station())
    waiting = head_seq - int(st.setting("acked_seq", 0) or 0)
    exposure_fen, exposure_count = limits.unsynced_exposure(st)
    offline_age = now - limits.offline_since(st)
    max_age = timedelta(hours=policy["max_offline_hours"])
    warning = None
    if offline_age > max_age:
        warning = gettext("No sync for too long: withdrawals and transfers are paused. Sync now.")
    elif (
        offline_age >= max_age * OFFLINE_WARNING_SHARE
        or exposure_fen >= policy["max_unsynced_fen"] * OFFLINE_WARNING_SHARE
        or exposure_count >= policy["max_unsynced_count"] * OFFLINE_WARNING_SHARE
    ):
        warning = gettext("Close to the offline limit: sync soon.")
    return {
        "online": synced is not None and (now - synced).total_seconds() <= ONLINE_WINDOW_SECONDS,
        "last_sync": synced,
        "waiting": waiting,
        "drawer_fen": business_day.drawer_cash(station()),
        "warning": warning,
    }


def template_globals() -> dict:
    """Names every template can use."""
    return {
        "agent": current_agent(),
        "yuan": yuan,
        "capitals": chinese_capitals,
        "mask": receipts.mask_number,
        "local_time": local_time,
        "lang": str(get_locale() or ""),
        "idle_seconds": idle_seconds,
        "status_bar": status_bar,
        "lang_endpoint": "auth.set_language",
    }
