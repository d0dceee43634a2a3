"""Who may see and change what: the one home of the access rules every channel asks.

An :class:`Actor` is whoever reads or writes, through a channel, with a role. A platform role
(admin, editor, viewer) works on the whole platform; a tenant role (tenant-editor,
tenant-viewer) carries its tenant's id and sees its tenant's rules, the platform rules that
select tenants (where it keeps its own allowlist), its tenant's request log rows and audit
entries. The rules come in two forms that must agree: SQL conditions (``visible_*``) for
queries, and predicates (:func:`sees`, :func:`owns`) for objects already loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa

from cors_control.vocabulary import NO_TENANT_SOURCE

from ..models import DATA_PLANE_ROLE, AllowedOrigin, AuditEntry, RequestLogEntry, Rule, Tenant
from .errors import Forbidden

# A tenant role ranks with its platform counterpart: what it may do is the same kind of
# action, narrowed to its tenant.
ROLE_RANK = {"viewer": 1, "tenant-viewer": 1, "editor": 2, "tenant-editor": 2, "admin": 3}


def has_rank(role: str, required: str) -> bool:
    """Whether *role* ranks at least as high as *required* (a platform role)."""
    return ROLE_RANK.get(role, 0) >= ROLE_RANK[required]


# The roles that may change the policy (their tenant's part of it, for a tenant role).
WRITER_ROLES = tuple(role for role in ROLE_RANK if has_rank(role, "editor"))


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change or reads, through which channel (dashboard, cli, import, api), with
    which role; ``tenant_id`` is set for tenant roles, which see and change only that tenant's
    rules and allowlists."""

    name: str
    channel: str
    role: str = "admin"
    tenant_id: int | None = None

    @property
    def scoped(self) -> bool:
        return self.tenant_id is not None

    @property
    def can_write(self) -> bool:
        return self.role in WRITER_ROLES


SYSTEM = Actor("system", "cli")


def tenant_scope(actor: Actor | None) -> int | None:
    """The id of the tenant *actor* is confined to; None when it sees the whole platform (no
    actor at all is the system itself, as the CLI reads)."""
    return actor.tenant_id if actor is not None else None


def whole_platform(actor: Actor | None) -> bool:
    """Whether *actor* sees the whole platform, not one tenant's part of it."""
    return tenant_scope(actor) is None


def require_writer(actor: Actor) -> None:
    if not actor.can_write:
        raise Forbidden(f"the {actor.role} role can read but not change the policy")


def require_admin(actor: Actor, *, to: str) -> None:
    """Refuse unless *actor* is an admin; *to* says what only admins do ("manage tenants")."""
    if actor.role != "admin":
        raise Forbidden(f"only admins {to}")


def require_data_plane(actor: Actor, *, to: str) -> None:
    """Refuse unless *actor* is a data plane (a token of the data-plane role) or an admin;
    *to* says what they do ("fetch the compiled policy"). An admin may, to look at what data
    planes receive and to test a setup; no other role may."""
    if actor.role not in (DATA_PLANE_ROLE, "admin"):
        raise Forbidden(f"only data-plane tokens and admins {to}")


def require_not_data_plane(actor: Actor) -> None:
    """A data-plane token fetches the policy and sends refusals, and does nothing else: it
    holds no right of any other role, so a token copied from an API host opens nothing."""
    if actor.role == DATA_PLANE_ROLE:
        raise Forbidden("a data-plane token may only fetch the policy (GET "
                        "/data-plane/policy) and send refusals (POST /data-plane/refusals); "
                        "use a token of another role for the rest of the API")


# -- objects already loaded ----------------------------------------------------------------


class Owned(Protocol):
    """What the ownership rules read of a rule: a loaded :class:`Rule` or a row of its
    columns."""

    @property
    def tenant_id(self) -> int | None: ...

    @property
    def tenant_source(self) -> str: ...


def sees(actor: Actor | None, rule: Owned) -> bool:
    """Whether *actor* may see the rule: its tenant's own, or a platform rule that selects
    tenants. For a tenant role another tenant's rule does not exist."""
    tenant_id = tenant_scope(actor)
    if tenant_id is None:
        return True
    return rule.tenant_id == tenant_id or (rule.tenant_id is None
                                           and rule.tenant_source != NO_TENANT_SOURCE)


def owns(actor: Actor, rule: Owned) -> bool:
    """Whether *actor* may change the rule's options (not only its own allowlist on it)."""
    return not actor.scoped or rule.tenant_id == actor.tenant_id


def can_change_options(actor: Actor, rule: Owned) -> bool:
    """Whether *actor* may edit, disable or delete the rule (a tenant role may not on a
    platform rule that selects tenants, where it manages only its own allowlist)."""
    return actor.can_write and owns(actor, rule)


def sees_origin(actor: Actor | None, rule: Owned, origin: AllowedOrigin) -> bool:
    """Whether *actor* may see one origin of a rule it sees: every origin of its own rules,
    and on a shared rule its own allowlist only (the Python form of
    :func:`visible_origin_rows`)."""
    tenant_id = tenant_scope(actor)
    return tenant_id is None or rule.tenant_id == tenant_id or origin.tenant_id == tenant_id


# -- SQL conditions ------------------------------------------------------------------------


def visible_rules(actor: Actor | None) -> sa.ColumnElement[bool]:
    """SQL condition for the rules *actor* may see (the SQL form of :func:`sees`)."""
    tenant_id = tenant_scope(actor)
    if tenant_id is None:
        return sa.true()
    return sa.or_(
        Rule.tenant_id == tenant_id,
        sa.and_(Rule.tenant_id.is_(None), Rule.tenant_source != NO_TENANT_SOURCE),
    )


def visible_origin_rows(actor: Actor | None) -> sa.ColumnElement[bool]:
    """SQL condition for the origins *actor* may see: every one, or for a tenant role those of
    its tenant's rules and its own allowlist on the rules that select tenants (the SQL form of
    :func:`sees_origin`)."""
    tenant_id = tenant_scope(actor)
    if tenant_id is None:
        return sa.true()
    own_rules = sa.select(Rule.id).where(Rule.tenant_id == tenant_id)
    return sa.or_(AllowedOrigin.tenant_id == tenant_id,
                  AllowedOrigin.rule_id.in_(own_rules))


def visible_log_rows(actor: Actor | None) -> sa.ColumnElement[bool]:
    """SQL condition for the request log rows *actor* may see: every one, or for a tenant role
    the rows of its tenant's rules and, on the rules that select tenants, the rows of requests
    that named its tenant. Rows no rule governed belong to the platform."""
    tenant_id = tenant_scope(actor)
    if tenant_id is None:
        return sa.true()
    own_rules = sa.select(Rule.id).where(Rule.tenant_id == tenant_id)
    selecting = sa.select(Rule.id).where(Rule.tenant_id.is_(None),
                                         Rule.tenant_source != NO_TENANT_SOURCE)
    slug = sa.select(Tenant.slug).where(Tenant.id == tenant_id).scalar_subquery()
    return sa.or_(
        RequestLogEntry.rule_id.in_(own_rules),
        sa.and_(RequestLogEntry.rule_id.in_(selecting), RequestLogEntry.tenant == slug),
    )


def visible_audit_entries(actor: Actor | None) -> sa.ColumnElement[bool]:
    """SQL condition for the audit entries *actor* may see: every one, or for a tenant role
    its tenant's (changes to its rules, its allowlists, its accounts and tokens)."""
    tenant_id = tenant_scope(actor)
    if tenant_id is None:
        return sa.true()
    return AuditEntry.tenant_id == tenant_id


def visible_tenants(actor: Actor | None) -> sa.ColumnElement[bool]:
    """SQL condition for the tenants *actor* may see: every one, or a tenant role its own."""
    tenant_id = tenant_scope(actor)
    if tenant_id is None:
        return sa.true()
    return Tenant.id == tenant_id
