"""What every screen shares: the agent in the session cookie, idle logout, refusal messages, the status bar."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

from babel.dates import format_skeleton, format_timedelta
from flask import current_app, g, redirect, request, session, url_for
from flask_babel import format_datetime, format_time, get_locale, gettext

from station import agents, business_day, limits, receipts
from station.device_state import CLOCK_TOLERANCE, DeviceState, clock_state, revocation
from station.errors import N_, StationError
from station.journal import journal_head
from station.link import link_status
from station.protocol.money import chinese_capitals, format_yuan
from station.protocol.times import parse_utc, utc_text
from station.sync import oldest_waiting_at

#: Locales the toggle offers; Flask-Babel resolves zh_CN to the zh_Hans_CN catalogue.
LOCALES = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"
#: The measured link state (``station.link.link_status``) as the status bar and the sync screen name it.
LINK_STATES = {"online": N_("Online"), "degraded": N_("Unstable"), "offline": N_("Offline")}
#: Why the link is not online, or why a sync failed, in the agent's words (``station.link.REASONS``, the link
#: state's own reasons and ``station.sync.SYNC_FAILURE_REASONS``).
REASON_WORDS = {
    "never": N_("no answer from the bank yet"),
    "no_recent_answer": N_("no answer from the bank lately"),
    "slow": N_("the bank answers slowly"),
    "intermittent": N_("the connection keeps dropping"),
    "not_enrolled": N_("this station is not enrolled with the bank"),
    "dns": N_("cannot find the bank's server (check the network)"),
    "refused": N_("cannot connect to the bank's server"),
    "tls": N_("the secure connection to the bank failed"),
    "timeout": N_("the network timed out"),
    "reset": N_("the connection was cut off"),
    "unreachable": N_("the network is down"),
    "http_5xx": N_("the bank's server had an error"),
    "http_4xx": N_("the bank refused this station's request"),
    "busy": N_("the bank's server is busy"),
    "revoked": N_("the bank has revoked this station"),
    "bad_answer": N_("the bank's answer could not be verified"),
    "flagged": N_("the bank has stopped taking this station's records"),
    "storage_full": N_("the storage of this device is full"),
    "local": N_("a problem on this device"),
}
#: What the agent should do after a failed sync, by reason; the rest: wait, the station syncs by itself.
CALL_THE_BANK = frozenset({"revoked", "flagged", "http_4xx", "not_enrolled"})
CALL_THE_TECHNICIAN = frozenset({"local", "tls", "bad_answer", "storage_full"})
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
def agent_session_to_cookie(agent: agents.AgentSession, now: datetime, sid: str) -> dict:
    """The agent session as the signed cookie keeps it, with the time of the last request and the id of the
    station's record of it (``agents.bind_session``: the cookie works only while that record is there)."""
    return {
        "sid": sid,
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
    """End the agent's session at the station (every copy of the cookie stops working) and forget the agent and any
    half-keyed operation; keep the language choice."""
    agents.unbind_session(station(), (session.get("agent") or {}).get("sid"))
    forget_agent()


def forget_agent() -> None:
    """Forget the agent and any half-keyed operation in this cookie alone; keep the language choice."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang


def load_agent() -> None:
    """Before each request: honour the cookie only while the station holds its session (``agents.session_bound``:
    not after a logout, even with a copy of the cookie); log the agent out after the idle period, or when the clock
    reads before the last request (set back: the idle time cannot be measured, and must not stretch); else touch."""
    data = session.get("agent")
    if not data or request.endpoint == "static":
        return
    st = station()
    if not agents.session_bound(st, data.get("sid"), data.get("agent_id")):
        forget_agent()  # whatever session it names is not this cookie's to end
        return
    now = st.now()
    last_seen = parse_utc(data["last_seen"])
    if now < last_seen - CLOCK_TOLERANCE or not agents.session_current(st, current_agent()):
        end_session()
        return
    if now - last_seen > timedelta(seconds=idle_seconds()):
        end_session()
        g.logged_out_idle = True
        return
    data["last_seen"] = utc_text(now)
    session["agent"] = data


def clock_stop(st) -> str | None:
    """``clock_not_set`` or ``clock_wrong`` while the clock stops new operations (``station.device_state``), else
    None: the home and login screens say which."""
    state = clock_state(st)
    return None if state is DeviceState.READY else state.value


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


def reason_words(reason: str | None) -> str:
    """A link or sync failure reason in the person's language ("" for none)."""
    if not reason:
        return ""
    return gettext(REASON_WORDS.get(reason, REASON_WORDS["local"]))


def sync_failure_message(reason: str) -> str:
    """A failed sync in words, with what to do: "Sync failed: <reason>. <advice>"."""
    if reason in CALL_THE_BANK:
        advice = gettext("Call the bank.")
    elif reason in CALL_THE_TECHNICIAN:
        advice = gettext("Records stay on this device. Call the technician.")
    else:
        advice = gettext("Records stay on this device and go to the bank when the link is back.")
    return gettext("Sync failed: %(reason)s. %(advice)s", reason=reason_words(reason), advice=advice)


def bar_time(moment: datetime | None) -> str:
    """A moment as short as the status bar needs it: the time alone today (the station's date), else the date
    alone (the sync screen gives both)."""
    if moment is None:
        return "-"
    st = station()
    if st.local_date(moment) == st.local_date():
        return format_time(moment, "short")
    return format_skeleton("Md", moment, tzinfo=st.timezone, locale=get_locale())


def age_words(since: datetime | None) -> str:
    """How long ago ``since`` was, short ("2 hr", "2小时"); "" for None."""
    if since is None:
        return ""
    age = max(station().now() - since, timedelta(0))
    return format_timedelta(age, granularity="minute", format="short", locale=get_locale())


def status_bar() -> dict:
    """The measured link state, the last sync's outcome, entries waiting for the bank (and the age of the oldest),
    drawer cash and any offline-limit warning: what the status bar and the sync screen show."""
    st = station()
    policy = st.policy
    now = st.now()
    link = link_status(st)
    synced = limits.last_sync_at(st)
    failure = st.setting("last_sync_failure") or {}
    failed_at = parse_utc(failure["at"]) if failure.get("at") else None
    if failed_at is not None and synced is not None and synced >= failed_at:
        failed_at = None  # a success since: the last sync's outcome is that success
    head_seq, _ = journal_head(station())
    waiting = head_seq - int(st.setting("acked_seq", 0) or 0)
    exposure_fen, exposure_count = limits.unsynced_exposure(st)
    offline_age = now - limits.offline_since(st)
    max_age = timedelta(hours=policy["max_offline_hours"])
    warning = None
    # After a clock correction the last sync time was stamped by the clock ahead (``station.clock``): unknown.
    sync_unknown = limits.offline_age_unknown(st)
    if sync_unknown:
        warning = gettext("Clock corrected: sync once before offline operations.")
    elif offline_age > max_age:
        warning = gettext("No sync for too long: withdrawals and transfers are paused. Sync now.")
    elif (
        offline_age >= max_age * OFFLINE_WARNING_SHARE
        or exposure_fen >= policy["max_unsynced_fen"] * OFFLINE_WARNING_SHARE
        or exposure_count >= policy["max_unsynced_count"] * OFFLINE_WARNING_SHARE
    ):
        warning = gettext("Close to the offline limit: sync soon.")
    return {
        "link": link["link"],
        "link_label": gettext(LINK_STATES[link["link"]]),
        # Why it is not online (none when online).
        "link_reason": reason_words(link["reason"]) if link["link"] != "online" else "",
        "last_contact": parse_utc(link["last_success_at"]) if link["last_success_at"] else None,
        "last_sync": None if sync_unknown else synced,
        "sync_unknown": sync_unknown,
        "sync_failed_at": failed_at,
        "sync_failure": reason_words(failure.get("reason")) if failed_at else "",
        "waiting": waiting,
        "oldest_age": age_words(oldest_waiting_at(st)) if waiting else "",
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
        "customer_number": receipts.customer_number,
        "local_time": local_time,
        "lang": str(get_locale() or ""),
        "variance_reasons": business_day.VARIANCE_REASONS,
        "idle_seconds": idle_seconds,
        "status_bar": status_bar,
        "bar_time": bar_time,
        "lang_endpoint": "auth.set_language",
    }
