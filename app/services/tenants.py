"""Tenants: customers of a multi-tenant API, each with its own allowlists and users."""

from __future__ import annotations

import sqlalchemy as sa

from ..extensions import db
from ..models import AllowedOrigin, AuditEntry, Rule, Tenant
from .errors import Conflict, FieldError, Forbidden, NotFound, ValidationError
from .policy import Actor, _bump_version, policy_version
from .validation import TENANT_SLUG


def list_tenants(actor: Actor | None = None) -> list[Tenant]:
    query = sa.select(Tenant).order_by(Tenant.slug)
    if actor is not None and actor.scoped:
        query = query.where(Tenant.id == actor.tenant_id)
    return list(db.session.scalars(query))


def get_tenant(slug: str, actor: Actor | None = None) -> Tenant:
    tenant = db.session.scalar(sa.select(Tenant).where(Tenant.slug == slug))
    if tenant is None or (actor is not None and actor.scoped and tenant.id != actor.tenant_id):
        raise NotFound(f"there is no tenant {slug}")
    return tenant


def create_tenant(slug: str, name: str = "", *, actor: Actor) -> Tenant:
    """Tenants are managed by admins. A new tenant is known to the engine from the next
    policy version on, so its requests stop being refused as an unknown tenant."""
    _require_admin(actor)
    slug = (slug or "").strip()
    errors = []
    if not TENANT_SLUG.match(slug):
        errors.append(FieldError("slug", "use lowercase letters, digits and hyphens, such as "
                                         "acme (it is what requests carry)"))
    if len(name or "") > 200:
        errors.append(FieldError("name", "the name is longer than 200 characters"))
    if errors:
        raise ValidationError(errors)
    db.session.rollback()
    version = _bump_version()
    if db.session.scalar(sa.select(Tenant.id).where(Tenant.slug == slug)) is not None:
        db.session.rollback()
        raise Conflict(f"a tenant {slug} already exists")
    tenant = Tenant(slug=slug, name=name or slug)
    db.session.add(tenant)
    db.session.flush()
    db.session.add(AuditEntry(actor=actor.name, channel=actor.channel, action="tenant.create",
                              rule_id=None, rule_path="", summary=f"created tenant {slug}",
                              before=None, after={"slug": slug, "name": tenant.name},
                              policy_version=version, tenant_id=tenant.id))
    db.session.commit()
    return tenant


def delete_tenant(slug: str, *, actor: Actor) -> None:
    """Delete a tenant that owns no rules; its allowlists on shared rules go with it."""
    _require_admin(actor)
    tenant = get_tenant(slug)
    owned = db.session.scalar(sa.select(sa.func.count(Rule.id)).where(Rule.tenant_id == tenant.id))
    if owned:
        raise Conflict(f"tenant {slug} owns {owned} rule(s); delete or reassign them first")
    db.session.rollback()
    version = _bump_version()
    tenant = get_tenant(slug)
    origins = db.session.scalar(sa.select(sa.func.count(AllowedOrigin.id))
                                .where(AllowedOrigin.tenant_id == tenant.id))
    db.session.add(AuditEntry(actor=actor.name, channel=actor.channel, action="tenant.delete",
                              rule_id=None, rule_path="",
                              summary=f"deleted tenant {slug} and its {origins} origin(s)",
                              before={"slug": slug, "name": tenant.name}, after=None,
                              policy_version=version, tenant_id=tenant.id))
    db.session.execute(sa.delete(AllowedOrigin).where(AllowedOrigin.tenant_id == tenant.id))
    db.session.delete(tenant)
    db.session.commit()


def _require_admin(actor: Actor) -> None:
    if actor.role != "admin":
        raise Forbidden("only admins manage tenants")


__all__ = ["create_tenant", "delete_tenant", "get_tenant", "list_tenants", "policy_version"]
