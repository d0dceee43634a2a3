"""The audit trail: every change from every channel, newest first, with the dashboard's
filters (text in the rule path, text in the actor's name) and its tenant scoping."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request

from ..models import AuditEntry
from ..services.audit import (
    AuditFilter,
    plan_restore,
    query_audit,
    tenant_delta,
    tenant_part,
)
from ..services.changes import policy_version
from ..services.errors import FieldError, ValidationError
from ..services.impact import rehearse
from ..services.policy import restore_rule, undo_change
from ..services.tenants import tenant_slug
from . import bp
from .auth import current_actor, require_writer
from .impact import impact_document, wants_dry_run
from .inputs import PageRequest, page_of, text_arg
from .representation import iso, rule_resource


@bp.get("/audit")
def audit():
    """A tenant role sees its tenant's entries, and of a shared rule only its own origins."""
    actor = current_actor()
    paging = PageRequest.from_args()
    pagination = query_audit(AuditFilter.from_args(request.args), page=paging.page,
                             per_page=paging.per_page, actor=actor)
    slug = tenant_slug(actor.tenant_id)
    return page_of(pagination, lambda entry: entry_resource(entry, slug))


def entry_resource(entry: AuditEntry, tenant: str | None = None) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": iso(entry.at),
        "actor": entry.actor,
        "channel": entry.channel,
        "action": entry.action,
        "rule_id": entry.rule_id,
        "rule_path": entry.rule_path or "",
        "summary": entry.summary or "",
        "before": tenant_part(entry.before, tenant),
        "after": tenant_part(entry.after, tenant),
        "delta": tenant_delta(entry.delta, tenant),
        "policy_version": entry.policy_version,
    }


@bp.post("/audit/<int:entry_id>/undo")
def audit_undo(entry_id: int):
    """Revert only this entry's change; 409 naming the later entries that touched the same
    fields. With ``dry_run``, what it would take away, and nothing written."""
    actor = require_writer()
    if wants_dry_run():
        impact = rehearse(lambda: undo_change(entry_id, actor=actor), actor=actor)
        return jsonify({"dry_run": True, "policy_version": policy_version(),
                        **impact_document(impact)})
    rule = undo_change(entry_id, actor=actor)
    return jsonify({"undone": entry_id, "policy_version": policy_version(),
                    "rule": rule_resource(rule, actor) if rule is not None else None})


@bp.post("/audit/<int:entry_id>/restore")
def audit_restore(entry_id: int):
    """Bring the entry's rule back to its recorded ``state`` (before or after). With
    ``dry_run``: the difference it applies, the later entries it takes back, and what the
    routes lose; nothing written."""
    actor = require_writer()
    state = text_arg("state") or "before"
    if state not in ("before", "after"):
        raise ValidationError([FieldError("state", "state must be before or after")])
    if wants_dry_run():
        plan = plan_restore(entry_id, actor=actor, state=state)
        impact = rehearse(lambda: restore_rule(entry_id, actor=actor, state=state),
                          actor=actor)
        return jsonify({
            "dry_run": True, "policy_version": policy_version(), **impact_document(impact),
            "changes": [{"field": c.name, "old": c.old, "new": c.new, "added": c.added,
                         "removed": c.removed, "changed": c.changed} for c in plan.changes],
            "undoes": [{"id": later.entry.id, "actor": later.entry.actor,
                        "action": later.entry.action, "summary": later.entry.summary or "",
                        "fields": later.fields} for later in plan.undoes]})
    rule = restore_rule(entry_id, actor=actor, state=state)
    return jsonify({"restored": entry_id, "policy_version": policy_version(),
                    "rule": rule_resource(rule, actor)})
