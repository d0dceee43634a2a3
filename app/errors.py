"""The admin surface while its database is unreachable: a clean 503, one log line a request.

The engine serves the governed API from its cached snapshot and never needs the database on a
request (:mod:`cors_control.cache`). The dashboard, the sign-in page and the JSON admin API need it
for nearly every request; when a query fails for want of a connection they answer 503 (a page,
an htmx fragment or a problem document) that names the policy version the engine keeps
serving. Each failed request logs one line without a traceback; the start and the end of an
outage are each logged once per process.
"""

from __future__ import annotations

import logging
import threading
import time

import sqlalchemy as sa
from flask import Flask, current_app, request, session
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from werkzeug.wrappers import Response

from cors_control import get_control
from cors_control.text import printable

from .admin.rendering import is_htmx, render
from .api import URL_PREFIX as API_PREFIX
from .api.problems import problem
from .extensions import db, login_manager
from .security import ADMIN_BLUEPRINTS

logger = logging.getLogger(__name__)

UNREACHABLE = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 5
# Where the htmx fragment goes: above whatever the page shows, so nothing typed is lost.
HTMX_TARGET = "#main"
HTMX_SWAP = "afterbegin"
_EXTENSION_KEY = "database_outage"


class DatabaseOutage:
    """Whether this process last found the database unreachable; so an outage is logged when it
    starts and when it ends, and every request in between logs one short line."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self.failed_requests = 0

    def failed(self) -> bool:
        """Count a failed request; true for the first one of an outage."""
        with self._lock:
            first = self.down_since is None
            if first:
                self.down_since = time.monotonic()
                self.failed_requests = 0
            self.failed_requests += 1
            return first

    def succeeded(self) -> None:
        """A statement went through: if an outage was on, it is over (logged once)."""
        if self.down_since is None:  # the common case: no lock, nothing to do
            return
        with self._lock:
            if self.down_since is None:
                return
            seconds = time.monotonic() - self.down_since
            failed, self.down_since = self.failed_requests, None
        logger.warning("database reachable again after %d failed request%s in %.0f s",
                       failed, "" if failed == 1 else "s", seconds)


def init_app(app: Flask) -> None:
    """Answer 503 on the admin surface for connection errors, and notice the recovery."""
    outage = DatabaseOutage()
    app.extensions[_EXTENSION_KEY] = outage
    for error in UNREACHABLE:
        app.register_error_handler(error, _database_unreachable)
    with app.app_context():
        sa.event.listen(db.engine, "after_cursor_execute",
                        lambda *_args: outage.succeeded())


def _database_unreachable(error: SQLAlchemyError) -> Response:
    if not _on_admin_surface():
        raise error  # elsewhere (the governed API, health checks) nothing changes
    _discard_session()
    version = get_control(current_app).cache.status().version
    _log_failure(error, version)
    response: Response
    if request.blueprint == "api" or request.path.startswith(API_PREFIX + "/"):
        response = problem(503, "database-unreachable", "Database unreachable",
                           _message(version), policy_version=version)
    else:
        response = _outage_page(version)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _on_admin_surface() -> bool:
    return request.blueprint in ADMIN_BLUEPRINTS | {"api"} or request.path == "/admin" \
        or request.path.startswith("/admin/")


def _discard_session() -> None:
    """The next request starts with a clean session; a failed rollback is part of the outage."""
    try:
        db.session.rollback()
    except SQLAlchemyError:
        pass
    db.session.remove()


def _log_failure(error: SQLAlchemyError, version: int | None) -> None:
    where = f"{printable(request.method, 20)} {printable(request.path)}"
    if current_app.extensions[_EXTENSION_KEY].failed():
        logger.error("database unreachable (%s): the admin surface answers 503 until it is "
                     "back; the engine keeps serving policy version %s; first failed: %s",
                     _reason(error), "none" if version is None else version, where)
    else:
        logger.warning("database still unreachable: 503 for %s", where)


def _reason(error: SQLAlchemyError) -> str:
    """The driver's error class and first line; the log is for operators, not clients."""
    cause = getattr(error, "orig", None) or error
    first_line = next(iter(str(cause).splitlines()), "")
    return printable(f"{type(cause).__name__}: {first_line}")


def _message(version: int | None) -> str:
    if version is None:
        return ("the database is unreachable; the engine has no policy loaded and refuses "
                "cross-origin requests until it can load one")
    return f"the database is unreachable; the engine keeps serving policy version {version}"


def _outage_page(version: int | None) -> Response:
    """The page (or, for htmx, a notice put above the page) without touching the database.

    Loading the signed-in user is a query, so the page renders as signed out; the navigation
    is shown when the session says someone signed in, without asking who.
    """
    login_manager._update_request_context_with_user()  # anonymous: no user query
    response = render("errors/database_unreachable.html", "errors/_database_unreachable.html",
                      status=503, message=_message(version),
                      signed_in=session.get("_user_id") is not None)
    if is_htmx():
        response.headers["HX-Retarget"] = HTMX_TARGET
        response.headers["HX-Reswap"] = HTMX_SWAP
    return response
