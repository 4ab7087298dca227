"""Unlocking an agent from the login screen: with a supervisor's PIN, or with the bank's one-time code.

Tapping a name that wrong PINs locked (or a last supervisor who must wait) shows why on the login screen, with the
ways out: a supervisor types their own PIN (``by_supervisor``; a wrong one counts towards their own lock or wait,
as at login), or the agent calls the bank and types the 8-digit code read out over the phone (``by_code``,
``station.bank_unlock``). Each unlock is journaled (``agent_unlocked``, saying who) and leads back to the
person's own PIN pad. Nobody needs to be logged in: the person locked out is the one at the screen.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext

from station import agents, bank_unlock
from station.db import Agent
from station.errors import StationError
from station.protocol.unlock_codes import CODE_DIGITS
from station.ui.common import station, translate_error

bp = Blueprint("unlock", __name__, url_prefix="/unlock")


def locked_person() -> Agent | None:
    """The person the request names (``agent_id``) when wrong PINs locked them or made them wait; else None."""
    person = Agent.get_or_none(Agent.agent_id == request.values.get("agent_id", ""))
    return person if person is not None and agents.needs_unlock(station(), person) else None


def unlocking_supervisors(person: Agent) -> list[Agent]:
    """The supervisors who may unlock ``person``: any other supervisor not locked themselves."""
    return list(Agent.select().where((Agent.role == "supervisor") & (Agent.agent_id != person.agent_id)
                                     & (Agent.locked == False)).order_by(Agent.agent_id))  # noqa: E712


def unlocked(person: Agent):
    """Back to the person's PIN pad, saying they may log in again."""
    flash(gettext("%(name)s is unlocked: type your PIN.", name=person.name))
    return redirect(url_for("auth.login", agent_id=person.agent_id))


@bp.route("/", methods=["GET", "POST"])
def by_supervisor():
    """A supervisor unlocks the person: tap the supervisor (when there are several), type the supervisor's PIN."""
    st = station()
    person = locked_person()
    if person is None:
        return redirect(url_for("auth.login", agent_id=request.values.get("agent_id") or None))
    supervisors = unlocking_supervisors(person)
    supervisor_id = request.values.get("supervisor_id") or (supervisors[0].agent_id if len(supervisors) == 1 else "")
    chosen = next((s for s in supervisors if s.agent_id == supervisor_id), None)
    error = None
    if request.method == "POST" and chosen is not None:
        try:
            supervisor = agents.login_agent(st, chosen.agent_id, request.form.get("pin", ""))
            agents.unlock_agent(st, supervisor, person.agent_id)
        except StationError as err:
            error = translate_error(err)
        else:
            return unlocked(person)
    return render_template("unlock.html", person=person, supervisors=supervisors, chosen=chosen, error=error)


@bp.route("/code", methods=["GET", "POST"])
def by_code():
    """The bank's one-time code: the screen says what to tell the bank (station and person), then takes the code."""
    st = station()
    person = locked_person()
    if person is None:
        return redirect(url_for("auth.login", agent_id=request.values.get("agent_id") or None))
    error = None
    if request.method == "POST":
        try:
            bank_unlock.unlock_with_code(st, person.agent_id, request.form.get("code", ""))
        except StationError as err:
            error = translate_error(err)
        else:
            return unlocked(person)
    return render_template("unlock_code.html", person=person, station_id=st.station_id, digits=CODE_DIGITS,
                           error=error)
