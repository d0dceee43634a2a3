"""Reading the policy: one rule, its origins, and the policy file's format.

A rule's dictionary form (:func:`rule_to_dict`) is the policy file's, the API's rule
representation and what the audit trail records, so a rule read anywhere can be written back.
Writes go through :mod:`.policy`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from cors_control.vocabulary import NO_TENANT_SOURCE

from ..extensions import db
from ..models import AllowedOrigin, Rule, Tenant
from ..timefmt import iso_utc
from .access import (
    Actor,
    owns,
    sees,
    sees_origin,
    tenant_scope,
    visible_origin_rows,
    visible_rules,
    visible_tenants,
)
from .errors import NotFound
from .limits import MAX_ID
from .origin_count import origin_total
from .validation import DRAFT_FIELDS, OriginInput, RuleInput, TenantSelector


def get_rule(rule_id: int, actor: Actor | None = None) -> Rule:
    """The rule, if it exists and *actor* may see it (another tenant's rule does not exist
    for a tenant role: the answer is the same as for a missing one)."""
    rule = db.session.get(Rule, rule_id) if 0 < rule_id <= MAX_ID else None
    if rule is None or not sees(actor, rule):
        raise NotFound(f"there is no rule with id {rule_id}")
    return rule


def get_rule_by_path(path: str, actor: Actor | None = None) -> Rule:
    rule = db.session.scalar(sa.select(Rule).where(Rule.path == path))
    if rule is None or not sees(actor, rule):
        raise NotFound(f"there is no rule for the path {path}")
    return rule


def visible_origins(rule: Rule, actor: Actor | None = None) -> list[AllowedOrigin]:
    """The rule's origins that *actor* may see, sorted by tenant then value."""
    origins = [o for o in rule.origins if sees_origin(actor, rule, o)]
    return sorted(origins, key=lambda o: (_slug(o), o.value))


@dataclass(frozen=True, slots=True)
class OriginPage:
    """One page of a rule's origins, and how many there are in all."""

    items: list[AllowedOrigin]
    page: int
    per_page: int
    total: int

    @property
    def has_next(self) -> bool:
        return self.page * self.per_page < self.total


def origin_page(rule: Rule, actor: Actor | None = None, *, page: int = 1,
                per_page: int = 50) -> OriginPage:
    """One page of the rule's origins that *actor* may see, in :func:`visible_origins`'s
    order: the shared list by value, then each tenant's list by tenant and value. Each part
    is read in its own unique index's order (a sort of the whole allowlist would cost a
    rule with 100,000 origins a tenth of a second), and only the page is loaded."""
    visible = (AllowedOrigin.rule_id == rule.id, visible_origin_rows(actor))
    shared = AllowedOrigin.tenant_id.is_(None)
    # Who sees every origin of the rule reads their stored number; a tenant on a shared
    # rule counts its own list, in the index of the tenants' lists, as the second count does.
    scope = tenant_scope(actor)
    total = origin_total(rule.id) if scope is None or rule.tenant_id == scope \
        else db.session.scalar(
            sa.select(sa.func.count()).select_from(AllowedOrigin).where(*visible)) or 0
    shared_total = total - (db.session.scalar(
        sa.select(sa.func.count()).select_from(AllowedOrigin)
        .where(*visible, AllowedOrigin.tenant_id.is_not(None))) or 0)
    offset = (page - 1) * per_page
    items: list[AllowedOrigin] = []
    if offset < shared_total:
        items += db.session.scalars(
            sa.select(AllowedOrigin).where(*visible, shared).order_by(AllowedOrigin.value)
            .offset(offset).limit(per_page)).all()
    if len(items) < per_page and total > shared_total:
        items += db.session.scalars(
            sa.select(AllowedOrigin).join(Tenant, AllowedOrigin.tenant_id == Tenant.id)
            .where(*visible).options(selectinload(AllowedOrigin.tenant))
            .order_by(Tenant.slug, AllowedOrigin.value)
            .offset(max(0, offset - shared_total)).limit(per_page - len(items))).all()
    return OriginPage(items, page, per_page, total)


def rule_to_dict(rule: Rule, actor: Actor | None = None, *,
                 origins: Sequence[AllowedOrigin] | None = None) -> dict[str, Any]:
    """A rule in the policy file's format: deterministic, so exports diff cleanly. With
    *origins* (a page of :func:`origin_page`), those instead of every visible one."""
    listed = visible_origins(rule, actor) if origins is None else origins
    data = {
        "path": rule.path,
        "origins": [origin_to_json(o) for o in listed],
        "methods": list(rule.methods),
        "allow_headers": list(rule.allow_headers),
        "expose_headers": list(rule.expose_headers),
        "supports_credentials": rule.supports_credentials,
        "max_age": rule.max_age,
        "allow_private_network": rule.allow_private_network,
        "mode": rule.mode,
        "description": rule.description or "",
    }
    return _with_tenancy(data, rule.tenant.slug if rule.tenant is not None else None,
                         TenantSelector(rule.tenant_source, rule.tenant_key,
                                        rule.unknown_tenant))


def stored_origins(rule_ids: Sequence[int]) -> dict[int, list[str | dict[str, Any]]]:
    """Every origin of the given rules in the policy file's form, in :func:`rule_to_dict`'s
    order, read as plain rows: a rule with 100,000 origins builds no object per origin."""
    origins, tenants = AllowedOrigin.__table__, Tenant.__table__
    found: dict[int, list[str | dict[str, Any]]] = {rule_id: [] for rule_id in rule_ids}
    if not rule_ids:
        return found
    slug = sa.func.coalesce(tenants.c.slug, "")
    rows = db.session.execute(
        sa.select(origins.c.rule_id, origins.c.value, origins.c.kind, origins.c.note,
                  origins.c.expires_at, tenants.c.slug)
        .outerjoin(tenants, origins.c.tenant_id == tenants.c.id)
        .where(origins.c.rule_id.in_(rule_ids))
        .order_by(origins.c.rule_id, slug, origins.c.value))
    for rule_id, value, kind, note, expires_at, tenant in rows:
        found[rule_id].append(origin_to_json(OriginInput(value, kind, note or "", expires_at,
                                                         tenant)))
    return found


def rule_state(rule: Rule) -> dict[str, Any]:
    """:func:`rule_to_dict` of every origin (what the audit trail records), read as plain
    rows (:func:`stored_origins`)."""
    data = rule_to_dict(rule, origins=[])
    data["origins"] = stored_origins([rule.id])[rule.id]
    return data


def rule_input_to_dict(data: RuleInput) -> dict[str, Any]:
    """A validated rule in the same format as :func:`rule_to_dict`, so an import can tell
    whether it changes a stored rule by comparing the two."""
    result = {
        "path": data.path,
        "origins": [origin_to_json(o)
                    for o in sorted(data.origins, key=lambda o: (o.tenant or "", o.value))],
        "methods": list(data.methods),
        "allow_headers": list(data.allow_headers),
        "expose_headers": list(data.expose_headers),
        "supports_credentials": data.supports_credentials,
        "max_age": data.max_age,
        "allow_private_network": data.allow_private_network,
        "mode": data.mode,
        "description": data.description,
    }
    return _with_tenancy(result, data.tenant, data.selector)


def _with_tenancy(data: dict[str, Any], owner: str | None,
                  selector: TenantSelector) -> dict[str, Any]:
    """Tenant fields appear only when used, so plain policies read like flask-cors's."""
    if owner:
        data["tenant"] = owner
    if selector.source != NO_TENANT_SOURCE:
        data["tenant_selector"] = {"source": selector.source, "key": selector.key,
                                   "unknown": selector.unknown}
    return data


def _slug(origin: AllowedOrigin | OriginInput) -> str:
    if isinstance(origin, OriginInput):
        return origin.tenant or ""
    return origin.tenant.slug if origin.tenant is not None else ""


def origin_to_json(origin: AllowedOrigin | OriginInput) -> str | dict[str, Any]:
    """A bare string, or an object when the entry has a note, an expiry or a tenant."""
    tenant = _slug(origin)
    if not origin.note and origin.expires_at is None and not tenant:
        return origin.value
    entry: dict[str, Any] = {"value": origin.value}
    if origin.note:
        entry["note"] = origin.note
    if origin.expires_at is not None:
        entry["expires_at"] = iso_utc(origin.expires_at)
    if tenant:
        entry["tenant"] = tenant
    return entry


def _with_draft(rule: Rule, actor: Actor | None) -> dict[str, Any]:
    """The rule in the policy file, with its draft for those who own the rule (a draft holds
    every tenant's origins of the rule)."""
    data = rule_to_dict(rule, actor)
    if rule.draft is not None and (actor is None or owns(actor, rule)):
        data["draft"] = {name: rule.draft.body[name] for name in DRAFT_FIELDS
                         if name in rule.draft.body}
    return data


def export_policy(actor: Actor | None = None) -> dict[str, Any]:
    """The policy as a document; a tenant role gets its own tenant and rules only."""
    rules = db.session.scalars(
        sa.select(Rule).where(visible_rules(actor))
        .options(selectinload(Rule.origins).selectinload(AllowedOrigin.tenant),
                 selectinload(Rule.tenant), selectinload(Rule.draft))
        .order_by(Rule.path)
    ).all()
    tenants = sa.select(Tenant).where(visible_tenants(actor)).order_by(Tenant.slug)
    document: dict[str, Any] = {"rules": [_with_draft(rule, actor) for rule in rules]}
    from .origin_lists_file import export_lists  # it reads rules through this module

    export_lists(document, list(rules), actor)
    tenant_list = [{"slug": t.slug, "name": t.name, "paths": list(t.paths)}
                   for t in db.session.scalars(tenants)]
    if tenant_list:
        document["tenants"] = tenant_list
    return document
