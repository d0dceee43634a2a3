"""Users: admins create accounts, disable and re-enable them, change roles, reset passwords.

Every route requires the admin role; the service layer validates and audits each change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_login import current_user, login_user
from werkzeug.wrappers import Response

from ..models import ROLES, TENANT_ROLES, User
from ..services import users as accounts
from ..services.errors import Conflict, NotFound, ServiceError, ValidationError
from ..services.tenants import list_tenants
from . import bp
from .access import current_actor, requires_platform
from .rendering import is_htmx, render


@bp.get("/users")
@requires_platform("admin")
def users():
    return render("admin/users.html", "admin/_users.html", **_page_context())


@bp.post("/users")
@requires_platform("admin")
def user_create():
    form = {name: request.form.get(name, "") for name in ("email", "password", "role",
                                                          "tenant")}
    try:
        user = accounts.create_user(form["email"], form["password"], role=form["role"],
                                    tenant=form["tenant"] or None, actor=current_actor())
    except (ValidationError, Conflict) as error:
        return render("admin/users.html", "admin/_users.html",
                      status=200 if is_htmx() else 422,
                      **_page_context(form={**form, "password": ""}, error=error))
    message = f"Created {user.role} {user.email}" + (
        f" of tenant {form['tenant']}." if user.tenant_id else ".")
    if is_htmx():
        return render("admin/users.html", "admin/_users.html",
                      **_page_context(notice=message))
    flash(message)
    return redirect(url_for("admin.users"))


@bp.post("/users/<int:user_id>/disable")
@requires_platform("admin")
def user_disable(user_id: int):
    return _change(user_id, lambda: accounts.set_user_active(user_id, False, actor=current_actor()),
                   lambda user: f"Disabled {user.email}; they can no longer sign in.")


@bp.post("/users/<int:user_id>/enable")
@requires_platform("admin")
def user_enable(user_id: int):
    return _change(user_id, lambda: accounts.set_user_active(user_id, True, actor=current_actor()),
                   lambda user: f"Enabled {user.email}.")


@bp.post("/users/<int:user_id>/role")
@requires_platform("admin")
def user_role(user_id: int):
    role = request.form.get("role", "")
    return _change(user_id, lambda: accounts.set_user_role(user_id, role, actor=current_actor()),
                   lambda user: f"{user.email} is now {user.role}.")


@bp.post("/users/<int:user_id>/password")
@requires_platform("admin")
def user_password(user_id: int):
    password = request.form.get("password", "")
    return _change(user_id,
                   lambda: accounts.reset_password(user_id, password, actor=current_actor()),
                   lambda user: f"Set a new password for {user.email}.")


def _change(user_id: int, apply: Callable[[], User], done: Callable[[User], str]) -> Response:
    """Apply a change to one user; answer with their row (htmx) or redirect with a flash."""
    try:
        user = apply()
    except NotFound:
        abort(404)
    except ServiceError as error:
        user, message, category = _user_or_404(user_id), str(error), "error"
    else:
        message, category = done(user), "message"
        if user.id == current_user.id:
            login_user(user)  # the change ended this user's sessions; this one goes on
    if is_htmx():
        return render("admin/users.html", "admin/_user_row.html", user=user,
                      tenant_slugs=_tenant_slugs(), row_notice=message,
                      row_notice_category=category, **_ROLE_CHOICES)
    flash(message, category)
    return redirect(url_for("admin.users"))


def _page_context(*, form: dict[str, str] | None = None, error: ServiceError | None = None,
                  notice: str | None = None) -> dict[str, Any]:
    tenants = list_tenants()
    return {
        "users": accounts.list_users(),
        "roles": ROLES,
        "tenants": tenants,
        "tenant_slugs": {tenant.id: tenant.slug for tenant in tenants},
        "form": form or {"email": "", "password": "", "role": "viewer", "tenant": ""},
        "field_errors": error.by_field() if isinstance(error, ValidationError) else {},
        "form_error": str(error) if isinstance(error, Conflict) else None,
        "notice": notice,
        "notice_category": "message",
        **_ROLE_CHOICES,
    }


# A row offers the roles its account can move between: a platform account the platform
# roles, a tenant's account the tenant roles.
_ROLE_CHOICES: dict[str, Any] = {"platform_roles": accounts.PLATFORM_ROLES,
                                 "tenant_roles": TENANT_ROLES}


def _tenant_slugs() -> dict[int, str]:
    return {tenant.id: tenant.slug for tenant in list_tenants()}


def _user_or_404(user_id: int) -> User:
    try:
        return accounts.get_user(user_id)
    except NotFound:
        abort(404)

