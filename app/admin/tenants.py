"""Tenants: admins list them with what they own, create them with their namespaces (the path
patterns their rules may govern), change the namespaces, and delete empty tenants.

A tenant that owns rules cannot be deleted (its rules would be left without an owner); the
page says so. Deleting one also deletes its allowlists on the rules that select tenants, its
users and its API tokens, and the confirmation says how many.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for

from ..services.errors import Conflict, ServiceError, ValidationError
from ..services.tenants import create_tenant, delete_tenant, set_tenant_paths, tenant_summaries
from . import bp
from .access import current_actor, requires_platform
from .rendering import is_htmx, render


@bp.get("/tenants")
@requires_platform("admin")
def tenants():
    return render("admin/tenants.html", "admin/_tenants.html", **_page_context())


@bp.post("/tenants")
@requires_platform("admin")
def tenant_create():
    form = {name: request.form.get(name, "").strip() for name in ("slug", "name", "paths")}
    try:
        tenant = create_tenant(form["slug"], form["name"], paths=_lines(form["paths"]),
                               actor=current_actor())
    except (ValidationError, Conflict) as error:
        return render("admin/tenants.html", "admin/_tenants.html",
                      status=200 if is_htmx() else 422,
                      **_page_context(form=form, error=error))
    return _done(f"Created tenant {tenant.slug}. Requests naming it are served its "
                 "allowlists from the next policy version on.")


@bp.post("/tenants/<slug>/paths")
@requires_platform("admin")
def tenant_paths(slug: str):
    text = request.form.get("paths", "")
    try:
        tenant = set_tenant_paths(slug, _lines(text), actor=current_actor())
    except ValidationError as error:
        return render("admin/tenants.html", "admin/_tenants.html",
                      status=200 if is_htmx() else 422,
                      **_page_context(paths_error=(slug, text, error)))
    return _done(f"Tenant {tenant.slug} governs "
                 f"{', '.join(tenant.paths) or 'no path: it can own no new rule'}.")


def _lines(text: str) -> list[str]:
    """One namespace a line (commas and spaces separate them too)."""
    return [part for part in text.replace(",", " ").split() if part]


@bp.get("/tenants/<slug>/delete")
@requires_platform("admin")
def tenant_delete_confirm(slug: str):
    """The confirmation step before a delete, for the Delete button without JavaScript."""
    summary = next((s for s in tenant_summaries() if s.tenant.slug == slug), None)
    if summary is None:
        abort(404)
    return render("admin/tenant_delete.html", summary=summary)


@bp.post("/tenants/<slug>/delete")
@requires_platform("admin")
def tenant_delete(slug: str):
    try:
        delete_tenant(slug, actor=current_actor())
    except Conflict as error:
        return _done(f"Tenant {slug} was not deleted: {error}.", "error")
    return _done(f"Deleted tenant {slug}.")


def _done(message: str, category: str = "message"):
    if is_htmx():
        return render("admin/tenants.html", "admin/_tenants.html",
                      **_page_context(notice=message, notice_category=category))
    flash(message, category)
    return redirect(url_for("admin.tenants"))


def _page_context(*, form: dict[str, str] | None = None, error: ServiceError | None = None,
                  notice: str | None = None, notice_category: str = "message",
                  paths_error: tuple[str, str, ValidationError] | None = None) \
        -> dict[str, Any]:
    return {
        "summaries": tenant_summaries(),
        "form": form or {"slug": "", "name": "", "paths": ""},
        # The row whose namespaces were refused keeps what was typed, with the messages.
        "paths_error": ({"slug": paths_error[0], "text": paths_error[1],
                         "messages": [m for ms in paths_error[2].by_field().values()
                                      for m in ms]} if paths_error else None),
        "field_errors": error.by_field() if isinstance(error, ValidationError) else {},
        "form_error": str(error) if isinstance(error, Conflict) else None,
        "notice": notice,
        "notice_category": notice_category,
    }
