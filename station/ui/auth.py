"""Agent login with an on-screen PIN pad, logout, and the language toggle."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, session, url_for

from station import agents, errors
from station.db import Agent
from station.errors import StationError
from station.ui.common import (
    LOCALES,
    Idle,
    agent_session_to_cookie,
    clock_stop,
    end_session,
    idle_seconds,
    login_required,
    station,
    translate_error,
)
from station.ui.unlock import unlocking_supervisors

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Tap your name, then type your PIN."""
    st = station()
    roster = list(Agent.select().order_by(Agent.role, Agent.agent_id))
    agent_id = request.values.get("agent_id", "")
    error = None
    if request.args.get("idle"):
        error = translate_error(Idle(minutes=idle_seconds() // 60))
    if request.method == "POST":
        try:
            agent = agents.login_agent(st, agent_id, request.form.get("pin", ""))
            sid = agents.bind_session(st, agent)
        except StationError as err:
            error = translate_error(err)
        else:
            end_session()
            session["agent"] = agent_session_to_cookie(agent, st.now(), sid)
            return redirect(url_for("home.home"))
    chosen = Agent.get_or_none(Agent.agent_id == agent_id)  # read after the PIN: it may have locked them
    blocked = wait = None
    if chosen is not None and agents.needs_unlock(st, chosen):
        # Why this person cannot type a PIN now, and the ways out (station.ui.unlock) instead of the PIN pad.
        wait = agents.pin_wait(st, chosen.agent_id)
        blocked = "waiting" if wait else ("locked" if chosen.locked else None)
        if blocked == "locked":
            error = translate_error(errors.AgentLocked())
        elif blocked == "waiting":
            error = translate_error(agents.waiting_error(st, errors.AgentWaiting, wait))
    # The page reloads itself as the minutes shrink, and when the wait ends (the PIN pad is back).
    refresh = f"{min(wait, 60) + 1};url={url_for('auth.login', agent_id=agent_id)}" if wait else None
    return render_template("login.html", agents=roster, chosen=chosen, error=error, blocked=blocked,
                           can_supervise=bool(blocked and unlocking_supervisors(chosen)), refresh=refresh,
                           clock=clock_stop(st))


@bp.post("/logout")
def logout():
    """End the agent's session (the language choice stays)."""
    end_session()
    return redirect(url_for("auth.login"))


@bp.post("/lang")
def set_language():
    """Switch between 简体中文 and English; stay on the same page."""
    lang = request.form.get("lang")
    if lang in LOCALES:
        session["lang"] = lang
    target = request.form.get("next") or ""
    if not is_local_path(target):
        target = url_for("index")
    return redirect(target)


@bp.post("/large-print")
@login_required
def toggle_large_print():
    """Large print on or off for the rest of the agent's session (every screen; logging out ends it, so the next
    session starts with the standard layout, which shows the most); stay on the same page."""
    session["large_print"] = not session.get("large_print")
    target = request.form.get("next") or ""
    return redirect(target if is_local_path(target) else url_for("index"))


def is_local_path(target: str) -> bool:
    """A path on this station in printable ASCII: never an absolute URL handed in by a form ("//host", or "/\\host",
    which a browser reads as "//host"), and never a control character (a newline cannot go into the Location
    header: it raised a 500)."""
    return (target.startswith("/") and not target.startswith("//") and "\\" not in target
            and all("!" <= char <= "~" for char in target))
