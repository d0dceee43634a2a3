"""What the API returns for rules, origins, tenants and tokens.

A rule is its policy-file form (:func:`~app.services.policy_read.rule_to_dict`, so a rule read
here can be sent back or put in a policy file) plus read-only fields: ``id``, ``version``
(also its ETag) and when and by whom it was last changed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import url_for

from ..models import AllowedOrigin, ApiToken, Rule, Tenant
from ..services.access import Actor
from ..services.origin_lists import list_names_of_rule
from ..services.policy_read import origin_page, rule_to_dict
from ..timefmt import iso_utc

# origin_lists is changed with PUT/DELETE /origin-lists/{id}/rules/{rule_id}; a rule read
# with GET can still be sent back as it is.
READ_ONLY_RULE_FIELDS = ("id", "version", "created_at", "updated_at", "updated_by",
                         "origin_lists", "origin_count", "origins_next")
# A rule carries this many of its origins; the rest are paged at GET /rules/{id}/origins.
RULE_ORIGINS_PAGE = 200


def rule_resource(rule: Rule, actor: Actor) -> dict[str, Any]:
    """The rule with the first :data:`RULE_ORIGINS_PAGE` origins *actor* may see, their
    number, and where the next ones are (``origins_next``; None when ``origins`` holds them
    all), so a rule with 100,000 origins reads as fast as a small one."""
    first = origin_page(rule, actor, page=1, per_page=RULE_ORIGINS_PAGE)
    following = url_for("api.origins", rule_id=rule.id, page=2, per_page=RULE_ORIGINS_PAGE) \
        if first.has_next else None
    return {**_rule_meta(rule), **rule_to_dict(rule, actor, origins=first.items),
            "origin_count": first.total, "origins_next": following,
            "origin_lists": list_names_of_rule(rule, actor)}


def rule_summary(rule: Rule, origin_count: int) -> dict[str, Any]:
    """A rule in a list: its options without the allowlist, which may be long."""
    data = rule_to_dict(rule)
    del data["origins"]
    return {**_rule_meta(rule), **data, "origin_count": origin_count,
            "origin_lists": list_names_of_rule(rule)}


def _rule_meta(rule: Rule) -> dict[str, Any]:
    return {"id": rule.id, "version": rule.version, "created_at": iso(rule.created_at),
            "updated_at": iso(rule.updated_at), "updated_by": rule.updated_by or ""}


def origin_resource(origin: AllowedOrigin, *, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    return {
        "value": origin.value,
        "kind": origin.kind,
        "note": origin.note or "",
        "expires_at": iso(origin.expires_at),
        "expired": origin.expires_at is not None and origin.expires_at <= now,
        "tenant": origin.tenant.slug if origin.tenant is not None else None,
        "added_by": origin.added_by or "",
        "added_at": iso(origin.added_at),
    }


def tenant_resource(tenant: Tenant) -> dict[str, Any]:
    return {"slug": tenant.slug, "name": tenant.name or "", "paths": list(tenant.paths),
            "created_at": iso(tenant.created_at)}


def token_resource(token: ApiToken) -> dict[str, Any]:
    return {
        "name": token.name,
        "role": token.role,
        "tenant": token.tenant.slug if token.tenant is not None else None,
        "expires_at": iso(token.expires_at),
        "created_at": iso(token.created_at),
        "last_used_at": iso(token.last_used_at),
    }


def iso(value: datetime | None) -> str | None:
    """A stored time as ISO 8601 in UTC (``2026-12-31T18:00:00Z``), or None."""
    return None if value is None else iso_utc(value)
