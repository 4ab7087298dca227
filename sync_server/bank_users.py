"""Bank-side accounts for the branch dashboard (``sync-server users``), kept in ``bank_user``.

Only a salted hash of each password is stored (``werkzeug.security``: scrypt). A login with an unknown name costs
what a wrong password costs (a hash is checked either way), so the answer's time does not tell which names exist.
A user's one live session is ``bank_user.session_id``: a new login or a logout ends the previous one, and disabling
a user or setting their password ends theirs at once. These accounts never see a customer's PIN, card number or
account: the dashboard shows counts and times only.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from functools import cache

from peewee import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from station.protocol.times import utc_text
from sync_server.db import BankUser, db_proxy

ROLES = ("manager",)
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 128
MAX_NAME_LENGTH = 64
#: How passwords are hashed (werkzeug's default spelled out: scrypt, n = 2**15, r = 8, p = 1). A stored hash names
#: its own method, so a change here applies to passwords set from then on.
PASSWORD_METHOD = "scrypt:32768:8:1"


@cache
def _dummy_hash(method: str) -> str:
    """Checked when the name is unknown, so that case takes as long as a wrong password.

    ``warm_up`` makes it when the dashboard is installed on an app, not in the first login with an unknown name
    (that login would take twice as long) and not in every ``sync-server`` command (a tenth of a second each).
    """
    return generate_password_hash("not a password of anyone", method=method)


def warm_up() -> None:
    _dummy_hash(PASSWORD_METHOD)


def _hash(password: str) -> str:
    return generate_password_hash(password, method=PASSWORD_METHOD)


class UserError(ValueError):
    """A bad name, password or role, or a user who does not exist; the message says which."""


def check_name(name: str) -> str:
    """The login name as stored, or ``UserError``: 1 to 64 printable characters without spaces."""
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable() or any(ch.isspace() for ch in name):
        raise UserError(f"A user name is 1 to {MAX_NAME_LENGTH} printable characters without spaces, "
                        f"not {name!r}.")
    return name


def check_password(password: str) -> str:
    """The password, or ``UserError`` when it is too short, too long or not printable."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH or not password.isprintable():
        raise UserError(f"A password is {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} printable characters.")
    return password


def add_user(name: str, password: str, role: str = "manager") -> None:
    """Create a dashboard account; ``UserError`` when the name is taken or a value is bad."""
    check_name(name)
    check_password(password)
    if role not in ROLES:
        raise UserError(f"The role is one of {', '.join(ROLES)}, not {role!r}.")
    try:
        with db_proxy.atomic():
            BankUser.create(name=name, password_hash=_hash(password), role=role, disabled=False,
                            created_at=utc_text(datetime.now(UTC)))
    except IntegrityError as exc:
        raise UserError(f"There is already a user {name!r}.") from exc


def list_users() -> list[dict]:
    """Every account: name, role, disabled, created and last login (never the hash)."""
    return [{"name": user.name, "role": user.role, "disabled": bool(user.disabled), "created_at": user.created_at,
             "last_login_at": user.last_login_at} for user in BankUser.select().order_by(BankUser.name)]


def disable_user(name: str) -> None:
    """Refuse the user's logins from now on and end their session; ``UserError`` for an unknown name."""
    updated = BankUser.update(disabled=True, session_id=None).where(BankUser.name == name).execute()
    if not updated:
        raise UserError(f"There is no user {name!r}.")


def enable_user(name: str) -> None:
    """Let a disabled user log in again (with the password they had); ``UserError`` for an unknown name."""
    updated = BankUser.update(disabled=False).where(BankUser.name == name).execute()
    if not updated:
        raise UserError(f"There is no user {name!r}.")


def set_password(name: str, password: str) -> None:
    """Replace the user's password (the rules of ``check_password``) and end their session: a cookie from before the
    change no longer opens a page. ``UserError`` for a bad password or an unknown name."""
    check_password(password)
    updated = BankUser.update(password_hash=_hash(password), session_id=None).where(
        BankUser.name == name).execute()
    if not updated:
        raise UserError(f"There is no user {name!r}.")


def log_in(name: str, password: str) -> str | None:
    """A new session id for ``name`` when the password is right and the user is not disabled, else None (the
    caller says only "wrong name or password")."""
    # Only a name ``check_name`` could have let in is looked up (PostgreSQL refuses a text holding NUL outright).
    user = (BankUser.get_or_none(BankUser.name == name)
            if len(name) <= MAX_NAME_LENGTH and name.isprintable() else None)
    stored = user.password_hash if user else _dummy_hash(PASSWORD_METHOD)
    right = check_password_hash(stored, password[:MAX_PASSWORD_LENGTH])
    # scrypt reads the password up to a NUL (OpenSSL), so "password\0anything" would pass: a password is
    # printable (``check_password``), and one that is not is wrong whatever the hash says.
    if user is None or not right or user.disabled or not password.isprintable():
        return None
    session_id = secrets.token_urlsafe(24)
    BankUser.update(session_id=session_id, last_login_at=utc_text(datetime.now(UTC))).where(
        BankUser.name == name).execute()
    return session_id


def session_user(name: str | None, session_id: str | None) -> BankUser | None:
    """The user whose live session this is, or None (logged out, logged in elsewhere since, disabled)."""
    if not name or not session_id:
        return None
    user = BankUser.get_or_none(BankUser.name == name)
    if user is None or user.disabled or not user.session_id or not secrets.compare_digest(user.session_id,
                                                                                           session_id):
        return None
    return user


def log_out(name: str) -> None:
    """End the user's session."""
    BankUser.update(session_id=None).where(BankUser.name == name).execute()
