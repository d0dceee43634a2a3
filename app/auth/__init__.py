"""Signing in and out of the dashboard; sessions end as :mod:`.sessions` says."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Response, flash, redirect, request, url_for
from flask_login import current_user, login_user, logout_user
from werkzeug.wrappers import Response as WerkzeugResponse

from ..admin.rendering import is_htmx, render
from ..extensions import login_manager
from ..services.auth import (
    Attempt,
    SignInRefused,
    SignInThrottled,
    authenticate,
    sign_out_everywhere,
)
from . import sessions

bp = Blueprint("auth", __name__)
bp.before_app_request(sessions.end_expired)


@bp.route("/login", methods=["GET", "POST"])
def login():
    next_url = _safe_next(request.values.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url)
    error = None
    email = ""
    status, retry_after = 200, None
    if request.method == "POST":
        email = request.form.get("email", "")
        try:
            user = authenticate(Attempt(email, request.form.get("password", ""),
                                        request.remote_addr or "unknown"))
        except SignInThrottled as throttled:
            error, status, retry_after = str(throttled), 429, throttled.retry_after
        except SignInRefused as refused:
            error, status = str(refused), 401
        else:
            sessions.start()
            login_user(user)
            return redirect(next_url)
    response = render("auth/login.html", error=error, email=email, next_url=next_url,
                      status=status)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


@bp.post("/logout")
def logout():
    """Sign out here and everywhere else: the user's session token changes."""
    if current_user.is_authenticated:
        sign_out_everywhere(current_user._get_current_object())
    logout_user()  # the CSRF token stays, so a second tab's "Sign out" still works
    flash("You are signed out.")
    return redirect(url_for("auth.login"))


@login_manager.unauthorized_handler
def unauthorized() -> WerkzeugResponse:
    """A signed-out htmx request redirects the whole page; never swaps the login form in."""
    target = url_for("auth.login", next=request.full_path if request.method == "GET"
                     else None)
    if is_htmx():
        response = Response(status=204)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)


def _safe_next(value: str | None) -> str:
    """Only local admin paths: never an open redirect."""
    default = url_for("admin.overview")
    if not value or not value.isprintable():  # CR/LF would split the Location header
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin") \
            or value.startswith("//") or "\\" in value:
        return default
    return value.rstrip("?")
