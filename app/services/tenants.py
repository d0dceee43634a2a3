"""Tenants: customers of a multi-tenant API, each with its own allowlists and users."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ..extensions import db
from ..models import AllowedOrigin, ApiToken, Rule, Tenant, User
from .access import Actor, require_admin, visible_tenants
from .changes import policy_change
from .errors import Conflict, FieldError, NotFound, ValidationError
from .validation import TENANT_SLUG


def list_tenants(actor: Actor | None = None) -> list[Tenant]:
    query = sa.select(Tenant).where(visible_tenants(actor)).order_by(Tenant.slug)
    return list(db.session.scalars(query))


@dataclass(frozen=True, slots=True)
class TenantSummary:
    """A tenant with how many rules it owns, how many origins it has on any rule (its own
    rules' and its allowlists on the rules that select tenants), its users and API tokens."""

    tenant: Tenant
    rules: int
    origins: int
    users: int
    tokens: int


def tenant_summaries() -> list[TenantSummary]:
    """Every tenant with its counts, in five queries whatever the number of tenants."""
    tenants = list_tenants()

    def per_tenant(column) -> dict[int, int]:
        return dict(db.session.execute(
            sa.select(column, sa.func.count()).where(column.is_not(None))
            .group_by(column)).all())

    rules = per_tenant(Rule.tenant_id)
    users = per_tenant(User.tenant_id)
    tokens = per_tenant(ApiToken.tenant_id)
    owner = sa.func.coalesce(AllowedOrigin.tenant_id, Rule.tenant_id)
    origins = dict(db.session.execute(
        sa.select(owner, sa.func.count(AllowedOrigin.id))
        .join(Rule, AllowedOrigin.rule_id == Rule.id)
        .where(owner.is_not(None)).group_by(owner)).all())
    return [TenantSummary(t, rules.get(t.id, 0), origins.get(t.id, 0), users.get(t.id, 0),
                          tokens.get(t.id, 0)) for t in tenants]


def tenant_slug(tenant_id: int | None) -> str | None:
    """The slug of a tenant by id (an actor's ``tenant_id``); None for None."""
    if tenant_id is None:
        return None
    return db.session.scalar(sa.select(Tenant.slug).where(Tenant.id == tenant_id))


def get_tenant(slug: str, actor: Actor | None = None) -> Tenant:
    tenant = db.session.scalar(sa.select(Tenant).where(Tenant.slug == slug,
                                                       visible_tenants(actor)))
    if tenant is None:
        raise NotFound(f"there is no tenant {slug}")
    return tenant


def create_tenant(slug: str, name: str = "", *, actor: Actor) -> Tenant:
    """Tenants are managed by admins. A new tenant is known to the engine from the next
    policy version on, so its requests stop being refused as an unknown tenant."""
    require_admin(actor, to="manage tenants")
    slug = (slug or "").strip()
    errors = []
    if not TENANT_SLUG.match(slug):
        errors.append(FieldError("slug", "use lowercase letters, digits and hyphens, such as "
                                         "acme (it is what requests carry)"))
    if len(name or "") > 200:
        errors.append(FieldError("name", "the name is longer than 200 characters"))
    if errors:
        raise ValidationError(errors)
    with policy_change(actor) as change:
        if db.session.scalar(sa.select(Tenant.id).where(Tenant.slug == slug)) is not None:
            raise Conflict(f"a tenant {slug} already exists")
        tenant = Tenant(slug=slug, name=name or slug)
        db.session.add(tenant)
        db.session.flush()
        change.audit("tenant.create", f"created tenant {slug}",
                     after={"slug": slug, "name": tenant.name}, tenant_id=tenant.id)
    return tenant


def delete_tenant(slug: str, *, actor: Actor) -> None:
    """Delete a tenant that owns no rules; its allowlists on shared rules, its users and its
    API tokens go with it.

    The users and tokens are deleted here rather than left to the foreign keys' cascade:
    SQLite does not enforce it, and an account left pointing at a deleted tenant's id would
    belong to the next tenant given that id.
    """
    require_admin(actor, to="manage tenants")
    tenant = get_tenant(slug)
    owned = db.session.scalar(sa.select(sa.func.count(Rule.id)).where(Rule.tenant_id == tenant.id))
    if owned:
        raise Conflict(f"tenant {slug} owns {owned} rule(s); delete or reassign them first")
    with policy_change(actor) as change:
        tenant = get_tenant(slug)
        origins = db.session.scalar(sa.select(sa.func.count(AllowedOrigin.id))
                                    .where(AllowedOrigin.tenant_id == tenant.id))
        users = db.session.scalar(sa.select(sa.func.count(User.id))
                                  .where(User.tenant_id == tenant.id))
        tokens = db.session.scalar(sa.select(sa.func.count(ApiToken.id))
                                   .where(ApiToken.tenant_id == tenant.id))
        change.audit("tenant.delete", f"deleted tenant {slug}, its {origins} origin(s), "
                                      f"{users} user(s) and {tokens} API token(s)",
                     before={"slug": slug, "name": tenant.name}, tenant_id=tenant.id)
        db.session.execute(sa.delete(AllowedOrigin).where(AllowedOrigin.tenant_id == tenant.id))
        db.session.execute(sa.delete(User).where(User.tenant_id == tenant.id))
        db.session.execute(sa.delete(ApiToken).where(ApiToken.tenant_id == tenant.id))
        db.session.delete(tenant)


__all__ = ["TenantSummary", "create_tenant", "delete_tenant", "get_tenant", "list_tenants",
           "tenant_slug", "tenant_summaries"]
