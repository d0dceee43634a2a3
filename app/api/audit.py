"""The audit trail: every change from every channel, newest first, with the dashboard's
filters (text in the rule path, text in the actor's name) and its tenant scoping."""

from __future__ import annotations

from typing import Any

from flask import request

from ..models import AuditEntry
from ..services.audit import AuditFilter, query_audit, tenant_part
from ..services.tenants import tenant_slug
from . import bp
from .auth import current_actor
from .inputs import PageRequest, page_of
from .representation import iso


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
        "policy_version": entry.policy_version,
    }
