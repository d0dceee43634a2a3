"""How long a dashboard session lasts: ``PERMANENT_SESSION_LIFETIME`` from sign-in, and
``SESSION_IDLE_TIMEOUT`` without a request.

Flask signs the cookie again on every response, so its own age check only ends a cookie left
unused for the whole lifetime; both limits are therefore kept in the session itself and checked
before the user is loaded. The last-seen time is written at most once a minute, so most
requests do not rewrite the cookie.
"""

from __future__ import annotations

import time
from datetime import timedelta

from flask import current_app, flash, g, request, session

SIGNED_IN_AT = "signed_in_at"
LAST_SEEN = "last_seen"
SEEN_RESOLUTION = 60  # seconds
_SESSION_BLUEPRINTS = frozenset({"admin", "auth"})


def start() -> None:
    """A fresh session for a user who just signed in: nothing of the session before sign-in
    carries over, the CSRF token included (Flask-WTF makes a new one when a page needs it)."""
    session.clear()
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)
    now = int(time.time())
    session[SIGNED_IN_AT] = now
    session[LAST_SEEN] = now


def end_expired() -> None:
    """Before a dashboard request: sign out a session that is too old or was idle too long."""
    if request.blueprint not in _SESSION_BLUEPRINTS or "_user_id" not in session:
        return
    now = time.time()
    signed_in_at, last_seen = session.get(SIGNED_IN_AT), session.get(LAST_SEEN)
    if not isinstance(signed_in_at, int) or not isinstance(last_seen, int):
        session.clear()  # a session from before these limits existed
        return
    idle = _seconds(current_app.config["SESSION_IDLE_TIMEOUT"])
    if now - signed_in_at > current_app.permanent_session_lifetime.total_seconds():
        session.clear()
        flash("Your session has ended; please sign in again.")
    elif now - last_seen > idle:
        session.clear()
        flash(f"You were signed out after {_duration(idle)} without activity.")
    elif now - last_seen >= SEEN_RESOLUTION:
        session[LAST_SEEN] = int(now)


def _seconds(value: timedelta | float) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{round(seconds)} seconds"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
