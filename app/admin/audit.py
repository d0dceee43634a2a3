"""Audit trail: every change from every channel, filtered and paged; restore a rule state."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for

from ..services.audit import (
    DEFAULT_PAGE_SIZE,
    AuditFilter,
    describe_changes,
    query_audit,
    restorable_states,
)
from ..services.changes import policy_version
from ..services.errors import Conflict, NotFound, ValidationError
from ..services.policy import restore_rule
from ..services.tenants import tenant_slug
from . import bp
from .access import current_actor, requires
from .paging import page_arg
from .rendering import is_htmx, render


@bp.get("/audit")
@requires("viewer")
def audit():
    return render("admin/audit.html", "admin/_audit_list.html", **_page_context(request.args))


@bp.post("/audit/<int:entry_id>/restore")
@requires("editor")
def audit_restore(entry_id: int):
    """Bring the entry's rule back to its recorded ``before`` or ``after`` state."""
    state = request.form.get("state", "")
    version = policy_version()
    try:
        rule = restore_rule(entry_id, actor=current_actor(), state=state)
    except NotFound:
        abort(404)
    except (ValidationError, Conflict) as error:
        message, category = f"Nothing was restored: {error}", "error"
    else:
        where = f"its state {state} change #{entry_id}"
        if policy_version() == version:
            message = f"Rule {rule.path} already is in {where}; nothing changed."
        else:
            message = f"Restored rule {rule.path} to {where}."
        category = "message"
    if is_htmx():
        return render("admin/audit.html", "admin/_audit_list.html",
                      notice=message, notice_category=category, **_page_context(request.form))
    flash(message, category)
    filters = AuditFilter.from_args(request.form)
    args: dict[str, Any] = {**_paging_args(request.form), **filters.as_args()}
    return redirect(url_for("admin.audit", **args))


def _page_context(args) -> dict[str, Any]:
    """Everything the page and its fragment show, from the query (or the restore form): for
    a tenant role, its tenant's entries, each as that tenant may see it."""
    actor = current_actor()
    tenant = tenant_slug(actor.tenant_id)
    filters = AuditFilter.from_args(args)
    paging = _paging_args(args)
    page = query_audit(filters, page=paging.get("page", 1),
                       per_page=paging.get("per_page", DEFAULT_PAGE_SIZE), actor=actor)
    entries = [(entry, describe_changes(entry, tenant=tenant),
                restorable_states(entry, tenant=tenant) if actor.can_write else [])
               for entry in page.items]
    return {"filters": filters, "pagination": page, "entries": entries,
            "link_args": {**filters.as_args(), **_per_page_arg(page.per_page)}}


def _paging_args(args) -> dict[str, int]:
    paging = {}
    for name in ("page", "per_page"):
        value = page_arg(args, name, 0)
        if value > 0:
            paging[name] = value
    return paging


def _per_page_arg(per_page: int) -> dict[str, int]:
    return {} if per_page == DEFAULT_PAGE_SIZE else {"per_page": per_page}
