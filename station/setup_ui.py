"""The first-boot screens: what the touchscreen shows before the device is a station, and enrollment from it.

``station serve`` on a data folder with no station in it serves these screens (``create_setup_app``) on its
usual port. They show one state at a time (``SetupState``):

- **clock not set**: the clock reads before this release (``station.device_state``); enrolling would stamp the
  journal's first entry with a wrong time, so the screen waits for network time and refreshes itself;
- **not enrolled**: one text field, focused, that a USB QR scanner types the enrollment QR into (it acts as a
  keyboard and ends with Enter); a technician without a scanner taps the 12-character code on the on-screen
  pad, the server then coming from ``STATION_SERVER_URL`` or a second field;
- **enrolling**: the bank is being asked (``station.sync.enroll_station``, in a background thread); the screen
  says with whom and for how long, refreshing itself;
- **enrolled**: the station id and key id, then the station's own screens (``SetupDispatcher`` swaps apps);
- **revoked**: the bank refused the code because the station it belongs to is revoked.

Once enrolled, a station with no supervisor yet cannot be used (nobody could log in), so the set-up keeps the
screen (``SetupDispatcher.people_pending``) for one more step, **the shop's people** (``/setup/people``): first
the supervisor, then the agent (whose name the bank may have sent with the enrollment answer), each with an ID,
a name and a PIN typed twice on the pad, each added by ``station.agents.add_agent``. Only the browser that has
just added the supervisor may add the agent, for the station's idle time (``SUPERVISOR_ADDED`` in its signed
session): anyone else, and anyone once both exist, finds the login screen, so the set-up never adds a person to a
station that has a supervisor to ask. ``station serve`` on a station enrolled from a shell (``station enroll``)
with no supervisor shows the same step.

A refusal (wrong, used or expired code, unreachable server, not a station-kit server, a QR of another release)
is kept as a ``Failure`` and worded in the person's language on the same screen; ``enroll_station`` writes
nothing before the bank has accepted, so the folder stays ready for another try. The code is never stored,
logged or shown again once submitted.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from flask import Blueprint, Flask, current_app, flash, jsonify, redirect, render_template, request, session, url_for
from flask_babel import Babel, get_locale, gettext
from flask_wtf.csrf import CSRFError, CSRFProtect

from station import agents
from station.app import device_secret_key
from station.context import Station
from station.device_state import clock_not_set
from station.errors import N_, ClockNotSet, PinsDiffer, StationError
from station.protocol.enrollment_qr import CODE_ALPHABET, NotAnEnrollmentCode, check_server_url, parse
from station.protocol.times import parse_utc, utc_text
from station.sync import EnrollError, enroll_station
from station.ui import security_headers, select_locale
from station.ui.auth import set_language
from station.ui.common import DEFAULT_LOCALE, FormExpired

log = logging.getLogger(__name__)

bp = Blueprint("setup", __name__, url_prefix="/setup")

#: The environment variable install.sh writes: the bank's server for a code typed without its QR.
SERVER_URL_ENV = "STATION_SERVER_URL"
#: A CA bundle for the bank's TLS certificate when it is not signed by a public CA (optional).
CA_BUNDLE_ENV = "STATION_CA_BUNDLE"
#: How often the screen reloads itself while it waits (for the bank's answer, or for network time).
POLL_SECONDS = {"enrolling": 1, "clock_not_set": 5}

#: What the technician reads for each reason ``enroll_station`` gives (``EnrollError.reason``).
ENROLL_FAILURES = {
    "enrollment-code-invalid": N_("The bank does not know this code. Check it letter by letter against the "
                                  "sheet, then try again."),
    "enrollment-code-used": N_("This code has already been used. Ask the bank for a new code for this station."),
    "enrollment-code-expired": N_("This code has expired. Ask the bank for a new code for this station."),
    "unreachable": N_("Cannot reach the bank's server at %(server)s. Check the network cable or Wi-Fi, then "
                      "try again."),
    "not_station_kit": N_("%(server)s answered, but it is not the bank's station server. Check the server "
                          "address."),
    "clock_not_set": ClockNotSet.template,
    "folder_in_use": N_("This device already holds a station. Restart it to see the station's screens."),
    "refused": N_("The bank refused the enrollment (%(detail)s). Call the bank."),
}
NOT_ACCEPTED = N_("Not accepted: %(reason)s.")
SERVER_NEEDED = N_("A typed code needs the bank's server address too: type it in the second field (the sheet "
                   "shows it under the code).")
ALREADY_ENROLLED = N_("This device is already enrolled as station %(station)s.")
ALREADY_ENROLLING = N_("An enrollment is already under way: wait for the bank's answer.")
DEVICE_FAILED = N_("Enrollment failed on this device (%(detail)s). Restart the device and try again.")
SUPERVISOR_ADDED_NOTE = N_("Supervisor %(name)s (%(agent)s) added. Now the agent.")
PEOPLE_SET_UP_NOTE = N_("Agent %(name)s (%(agent)s) added: the shop's people are set up. Log in.")
#: The signed session's note that this browser has just added the supervisor: it may add the agent until then.
SUPERVISOR_ADDED = "setup_supervisor_added"


class SetupState(StrEnum):
    NOT_ENROLLED = "not_enrolled"
    ENROLLING = "enrolling"
    ENROLLED = "enrolled"
    REVOKED = "revoked"
    CLOCK_NOT_SET = "clock_not_set"


@dataclass(frozen=True)
class Failure:
    """Why the last try did not enroll, kept untranslated: the screen words it in the reader's language.

    ``reason``, when given, is itself a marked message (an ``enrollment_qr`` refusal) and is translated too."""

    template: str
    params: dict = field(default_factory=dict)

    def message(self) -> str:
        params = {key: gettext(value) if key == "reason" else value for key, value in self.params.items()}
        text = gettext(self.template)
        return text % params if params else text


class SetupRefused(Exception):
    """What was scanned or typed cannot start an enrollment; ``failure`` says why."""

    def __init__(self, failure: Failure):
        super().__init__(failure.template)
        self.failure = failure


@dataclass(frozen=True)
class Attempt:
    """An enrollment under way: the server asked, the station the QR named (if any), when it started."""

    server: str
    station_hint: str | None
    started: float


class FirstBoot:
    """One device's enrollment from the touchscreen: its state, the attempt under way, the last failure.

    ``on_enrolled(station)`` runs in the enrollment's thread once the bank has accepted (``station serve`` passes
    what builds the station's app and starts its sync); the state turns to enrolled only after it returned.
    """

    def __init__(self, data_dir: str | os.PathLike, *, server_url: str | None = None, ca_bundle: str | None = None,
                 clock: Callable[[], datetime] | None = None,
                 on_enrolled: Callable[[Station], None] | None = None, station: Station | None = None):
        self.data_dir = Path(data_dir)
        self.server_url = (server_url or "").strip() or None
        self.ca_bundle = ca_bundle or None
        self.clock = clock or (lambda: datetime.now(UTC))
        self.on_enrolled = on_enrolled
        #: The station once enrolled (given at once for a folder enrolled before, whose people are still missing).
        self.station: Station | None = station
        self.station_hint: str | None = None
        self.attempt: Attempt | None = None
        self.failure: Failure | None = None
        #: The station the bank refused as revoked ("" when only a typed code named it), else None.
        self.revoked_station: str | None = None
        self.worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def state(self) -> SetupState:
        if self.station is not None:
            return SetupState.ENROLLED
        if self.attempt is not None:
            return SetupState.ENROLLING
        if self.revoked_station is not None:
            return SetupState.REVOKED
        if clock_not_set(self.clock()):
            return SetupState.CLOCK_NOT_SET
        return SetupState.NOT_ENROLLED

    def snapshot(self) -> tuple[SetupState, Attempt | None, Failure | None]:
        """The state, the attempt under way and the last failure, read together (the enrollment thread changes
        them together)."""
        with self._lock:
            return self.state(), self.attempt, self.failure

    def start(self, scanned: str, typed_server: str = "") -> None:
        """Read what was scanned or typed and start enrolling in the background; :class:`SetupRefused` if not."""
        try:
            ticket = parse(scanned)
            server = ticket.server
            if server is None:
                # A bare code: the server typed beside it, else the one install.sh configured.
                typed = typed_server.strip() or self.server_url
                if not typed:
                    raise SetupRefused(Failure(SERVER_NEEDED))
                server = check_server_url(typed)
        except NotAnEnrollmentCode as exc:
            raise SetupRefused(Failure(NOT_ACCEPTED, {"reason": str(exc)})) from None
        with self._lock:
            state = self.state()
            if state is SetupState.ENROLLING:
                raise SetupRefused(Failure(ALREADY_ENROLLING))
            if state is SetupState.ENROLLED:
                raise SetupRefused(Failure(ALREADY_ENROLLED, {"station": self.station.station_id}))
            if state is SetupState.CLOCK_NOT_SET:
                raise SetupRefused(Failure(ClockNotSet.template))
            self.failure = None
            self.revoked_station = None
            self.attempt = Attempt(server, ticket.station_id, time.monotonic())
            # The code goes to the thread as an argument only: it is never kept on this object or logged.
            self.worker = threading.Thread(target=self._enroll, args=(server, ticket.code, ticket.station_id),
                                           name="enrollment", daemon=True)
            self.worker.start()

    def dismiss(self) -> None:
        """Back to the not-enrolled screen after a refusal (the revoked screen's "try another code")."""
        with self._lock:
            if self.attempt is None:
                self.failure = None
                self.revoked_station = None

    def _enroll(self, server: str, code: str, station_hint: str | None) -> None:
        log.info("enrolling with %s%s", server, f" as station {station_hint}" if station_hint else "")
        try:
            st = enroll_station(self.data_dir, server, code, ca_bundle=self.ca_bundle, clock=self.clock)
        except EnrollError as exc:
            log.warning("enrollment refused: %s", exc)
            revoked = (station_hint or "") if exc.reason == "station-revoked" else None
            self._finish(failure=self._failure_of(exc, server), revoked=revoked)
            return
        except Exception as exc:  # a disk or a bug: the screen must still say something, never hang
            log.exception("enrollment failed on this device")
            self._finish(failure=Failure(DEVICE_FAILED, {"detail": exc.__class__.__name__}))
            return
        log.info("enrolled as station %s (key id %s)", st.station_id, st.signer.kid)
        try:
            if self.on_enrolled is not None:
                self.on_enrolled(st)
        except Exception as exc:
            log.exception("enrolled, but the station's screens did not start")
            self._finish(failure=Failure(DEVICE_FAILED, {"detail": exc.__class__.__name__}))
            return
        self.station_hint = station_hint
        self._finish(station=st)

    def _finish(self, *, station: Station | None = None, failure: Failure | None = None,
                revoked: str | None = None) -> None:
        with self._lock:
            self.station = station
            self.failure = failure
            self.revoked_station = revoked
            self.attempt = None

    @staticmethod
    def _failure_of(exc: EnrollError, server: str) -> Failure:
        template = ENROLL_FAILURES.get(exc.reason, ENROLL_FAILURES["refused"])
        return Failure(template, {"server": server, "detail": str(exc)})


class SetupDispatcher:
    """The WSGI app of ``station serve`` on a folder with no station yet: the set-up screens until enrollment
    succeeds, then the station's own app (made by ``make_station_app``) without a restart. ``/setup`` stays on
    the set-up app, so the screen that was waiting shows the enrolled state."""

    def __init__(self, first_boot: FirstBoot, make_station_app: Callable[[Station], Callable], **app_config):
        self.first_boot = first_boot
        self.make_station_app = make_station_app
        self.setup_app = create_setup_app(first_boot, **app_config)
        self.station_app: Callable | None = None
        self.station: Station | None = None
        self._has_supervisor = False
        first_boot.on_enrolled = self._enrolled
        if first_boot.station is not None:
            self._enrolled(first_boot.station)

    def _enrolled(self, st: Station) -> None:
        # The station before its app: a request that sees the app finds the station too.
        self.station = st
        self.station_app = self.make_station_app(st)

    def people_pending(self) -> bool:
        """Whether the enrolled station still has no supervisor: then every screen but ``/health`` stays the
        set-up's (people are never removed, so once one is there the answer is kept)."""
        if not self._has_supervisor:
            self._has_supervisor = agents.next_setup_role(self.station) != "supervisor"
        return not self._has_supervisor

    def __call__(self, environ, start_response):
        station_app = self.station_app
        path = environ.get("PATH_INFO", "")
        if (station_app is None or path == "/setup" or path.startswith("/setup/")
                or (path != "/health" and self.people_pending())):
            return self.setup_app(environ, start_response)
        return station_app(environ, start_response)


# -- the screens ------------------------------------------------------------------------------------------
def first_boot() -> FirstBoot:
    return current_app.extensions["first_boot"]


def render_setup(failure: Failure | None = None, status: int = 200):
    """The screen of the current state, with ``failure`` (else the last attempt's) as its error."""
    fb = first_boot()
    state, attempt, last_failure = fb.snapshot()
    failure = failure or (last_failure if state is SetupState.NOT_ENROLLED else None)
    return render_template(
        "setup.html",
        state=state.value,
        poll=POLL_SECONDS.get(state.value),
        error=failure.message() if failure else None,
        server_url=fb.server_url,
        alphabet=CODE_ALPHABET,
        attempt=attempt,
        elapsed=int(time.monotonic() - attempt.started) if attempt else 0,
        station=fb.station,
        station_hint=fb.station_hint,
        people_role=people_role(fb),
        revoked_station=fb.revoked_station,
        device_time=fb.clock().astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
    ), status


@bp.get("")
def index():
    """The current state's screen."""
    return render_setup()


@bp.post("/enroll")
def enroll():
    """What the scanner (or the pad) typed: start enrolling, or say on the same screen why not."""
    try:
        first_boot().start(request.form.get("scan", ""), request.form.get("server", ""))
    except SetupRefused as refused:
        return render_setup(refused.failure)
    return redirect(url_for("setup.index"))


@bp.post("/dismiss")
def dismiss():
    """Leave the revoked (or a refusal's) screen for another try."""
    first_boot().dismiss()
    return redirect(url_for("setup.index"))


# -- the shop's people ----------------------------------------------------------------------------------------
def people_role(fb: FirstBoot) -> str | None:
    """Whom this browser may add now: the supervisor while the station has none; then the agent, while there is
    none, only for the browser that has just added the supervisor (``SUPERVISOR_ADDED``, until the station's idle
    time runs out); None otherwise (not enrolled, or the login screen's turn)."""
    st = fb.station
    if st is None:
        return None
    role = agents.next_setup_role(st)
    if role == "agent":
        note = session.get(SUPERVISOR_ADDED) or {}
        if note.get("station") != st.station_id or st.now() >= parse_utc(note["until"]):
            return None
    return role


def render_people(role: str, agent_id: str, name: str, failure: Failure | None = None):
    """The people step's form for ``role``: what was typed kept, never a PIN; ``failure`` said in the form."""
    return render_template("setup_people.html", role=role, agent_id=agent_id, name=name,
                           problem=failure.message() if failure else None, id_limit=agents.MAX_AGENT_ID,
                           name_limit=agents.MAX_AGENT_NAME)


@bp.route("/people", methods=["GET", "POST"])
def people():
    """Add the shop's people, one a screen: the supervisor, then the agent; then the login screen takes over."""
    fb = first_boot()
    role = people_role(fb)
    if role is None:
        return redirect(url_for("index"))
    st = fb.station
    if request.method == "GET":
        name = st.config.get("agent", "") if role == "agent" else ""
        return render_people(role, agents.suggested_agent_id(st, role), name)
    if request.form.get("role") != role:
        # The form of a step already done (a second tap, a page left open): show the step due now.
        return redirect(url_for("setup.people"))
    typed_id, typed_name = request.form.get("agent_id", ""), request.form.get("name", "")
    pin = request.form.get("pin", "")
    try:
        agent_id, name = agents.new_agent_fields(typed_id, typed_name, role)
        if pin != request.form.get("pin_again", ""):
            raise PinsDiffer()
        added = agents.add_agent(st, agent_id, name, role, pin, set_up=True)
    except StationError as refused:
        return render_people(role, typed_id, typed_name, Failure(refused.template, refused.params))
    log.info("the set-up screen added %s %s", role, added.agent_id)
    note = {"name": added.name, "agent": added.agent_id}
    if role == "supervisor":
        until = st.now() + timedelta(seconds=st.policy["agent_idle_seconds"])
        session[SUPERVISOR_ADDED] = {"station": st.station_id, "until": utc_text(until)}
        flash(gettext(SUPERVISOR_ADDED_NOTE, **note))
        return redirect(url_for("setup.people"))
    session.pop(SUPERVISOR_ADDED, None)
    flash(gettext(PEOPLE_SET_UP_NOTE, **note))
    return redirect(url_for("index"))


# The station's own language toggle (its fallback address, "index", leads here too).
bp.add_url_rule("/lang", "set_language", set_language, methods=["POST"])


def create_setup_app(fb: FirstBoot, **config) -> Flask:
    """The set-up screens for ``fb``'s data folder: Flask-Babel, CSRF protection and the UI's security headers.

    ``config`` may set any Flask setting (tests: ``SECRET_KEY``, ``TESTING``); by default the session key is the
    device's own (``keys/ui_session.key``), so the language chosen here stays after the station's app takes over.
    """
    app = Flask(__name__)
    app.config.from_mapping(BABEL_DEFAULT_LOCALE=DEFAULT_LOCALE, SESSION_COOKIE_SAMESITE="Strict",
                            SESSION_COOKIE_HTTPONLY=True, WTF_CSRF_TIME_LIMIT=None)
    app.config.from_mapping(config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = device_secret_key(fb.data_dir)
    app.extensions["first_boot"] = fb
    Babel(app, locale_selector=select_locale)
    CSRFProtect(app)
    app.register_blueprint(bp)
    app.after_request(security_headers)

    @app.context_processor
    def template_globals():
        return {"agent": None, "lang": str(get_locale() or ""), "lang_endpoint": "setup.set_language"}

    @app.errorhandler(CSRFError)
    def csrf_refused(_error):
        return render_setup(Failure(FormExpired.template), 400)

    @app.get("/", endpoint="index")
    @app.errorhandler(404)
    @app.errorhandler(405)
    def elsewhere(_error=None):
        # Every other address of the station leads here until the device is enrolled.
        return redirect(url_for("setup.index"))

    @app.get("/health")
    def health():
        return jsonify(station=None, state=fb.state().value)

    return app
