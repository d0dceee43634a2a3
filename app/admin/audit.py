"""Audit trail: every change from every channel, filtered and paged; restore a rule state."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from werkzeug.wrappers import Response

from ..services.audit import (
    DEFAULT_PAGE_SIZE,
    AuditFilter,
    describe_changes,
    plan_restore,
    query_audit,
    restorable_states,
    visible_entry,
)
from ..services.changes import policy_version
from ..services.errors import Conflict, NotFound, ValidationError
from ..services.impact import Impact, rehearse
from ..services.policy import restore_rule, undo_change
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


@bp.get("/audit/<int:entry_id>/restore")
@requires("editor")
def audit_restore_review(entry_id: int):
    """Before a restore: the difference it applies to the rule as it is now, the later
    changes it takes back (named, with who made them), and what the routes lose."""
    actor = current_actor()
    state = request.args.get("state", "before")
    try:
        plan = plan_restore(entry_id, actor=actor, state=state)
        impact = rehearse(lambda: restore_rule(entry_id, actor=actor, state=state),
                          actor=actor)
    except NotFound:
        abort(404)
    except (ValidationError, Conflict) as error:
        return _refused(f"Nothing can be restored: {error}")
    return render("admin/audit_review.html", "admin/_restore_review.html", plan=plan,
                  impact=impact, entry=plan.entry)


@bp.get("/audit/<int:entry_id>/undo")
@requires("editor")
def audit_undo_review(entry_id: int):
    """Before "undo only this change": what it reverts and what the routes lose, or why it
    cannot be undone alone (the later changes that touched the same fields)."""
    actor = current_actor()
    try:
        entry = visible_entry(entry_id, actor)
    except NotFound:
        abort(404)
    refusal, impact = None, Impact()
    try:
        impact = rehearse(lambda: undo_change(entry_id, actor=actor), actor=actor)
    except NotFound:
        abort(404)
    except (ValidationError, Conflict) as error:
        refusal = str(error)
    tenant = tenant_slug(actor.tenant_id)
    return render("admin/audit_review.html", "admin/_undo_review.html", entry=entry,
                  changes=describe_changes(entry, tenant=tenant), impact=impact,
                  refusal=refusal, undo=True)


@bp.post("/audit/<int:entry_id>/undo")
@requires("editor")
def audit_undo(entry_id: int):
    try:
        rule = undo_change(entry_id, actor=current_actor())
    except NotFound:
        abort(404)
    except (ValidationError, Conflict) as error:
        flash(f"Nothing was undone: {error}", "error")
        return redirect(url_for("admin.audit_undo_review", entry_id=entry_id))
    flash(f"Undid change #{entry_id}" + (f"; rule {rule.path} is saved." if rule is not None
                                         else "; its rule is deleted."))
    return redirect(url_for("admin.audit"))


def _refused(message: str) -> Response:
    flash(message, "error")
    return redirect(url_for("admin.audit"))


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
