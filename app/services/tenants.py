"""Tenants: customers of a multi-tenant API, each with its own allowlists and users."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from cors_control.paths import PatternError, covers, overlaps, parse_new_pattern, parse_pattern
from cors_control.vocabulary import OFF

from ..extensions import db
from ..models import AllowedOrigin, ApiToken, OriginList, OriginListEntry, Rule, Tenant, User
from .access import Actor, require_admin, visible_tenants
from .changes import Unchanged, policy_change
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


def create_tenant(slug: str, name: str = "", *, paths: Iterable[str] = (),
                  actor: Actor) -> Tenant:
    """Tenants are managed by admins. A new tenant is known to the engine from the next
    policy version on, so its requests stop being refused as an unknown tenant. *paths* are
    its namespaces: the path patterns its rules may govern."""
    require_admin(actor, to="manage tenants")
    slug = (slug or "").strip()
    errors = []
    if not TENANT_SLUG.match(slug):
        errors.append(FieldError("slug", "use lowercase letters, digits and hyphens, such as "
                                         "acme (it is what requests carry)"))
    if len(name or "") > 200:
        errors.append(FieldError("name", "the name is longer than 200 characters"))
    namespaces, path_errors = _parse_namespaces(paths)
    errors.extend(path_errors)
    if errors:
        raise ValidationError(errors)
    with policy_change(actor) as change:
        if db.session.scalar(sa.select(Tenant.id).where(Tenant.slug == slug)) is not None:
            raise Conflict(f"a tenant {slug} already exists")
        check_no_overlap({**stored_namespaces(), slug: namespaces}, [slug])
        tenant = Tenant(slug=slug, name=name or slug, paths=namespaces)
        db.session.add(tenant)
        db.session.flush()
        change.audit("tenant.create", f"created tenant {slug}"
                     + (f" with namespaces {', '.join(namespaces)}" if namespaces else ""),
                     after=_tenant_state(tenant), tenant_id=tenant.id)
    return tenant


def set_tenant_paths(slug: str, paths: Iterable[str], *, actor: Actor) -> Tenant:
    """Give a tenant its namespaces (replacing the ones it had). Refused when they overlap
    another tenant's, or when a rule of the tenant that is switched on and lay inside the
    old namespaces would lie outside the new ones (move, switch off or delete it first).
    Rules already outside before stay as they were: the overview lists them."""
    require_admin(actor, to="manage tenants")
    namespaces, errors = _parse_namespaces(paths)
    if errors:
        raise ValidationError(errors)
    try:
        return _set_tenant_paths(slug, namespaces, actor=actor)
    except Unchanged as unchanged:
        return unchanged.result


def _set_tenant_paths(slug: str, namespaces: list[str], *, actor: Actor) -> Tenant:
    with policy_change(actor) as change:
        tenant = get_tenant(slug)
        before = _tenant_state(tenant)
        if namespaces == list(tenant.paths):
            raise Unchanged(tenant)
        check_no_overlap({**stored_namespaces(), slug: namespaces}, [slug])
        stranded = [rule.path for rule in db.session.scalars(
            sa.select(Rule).where(Rule.tenant_id == tenant.id, Rule.mode != OFF)
            .order_by(Rule.path))
            if inside(rule.path, tenant.paths) and not inside(rule.path, namespaces)]
        if stranded:
            raise ValidationError([FieldError("paths", (
                f"rule(s) {', '.join(stranded)} of tenant {slug} would lie outside its "
                "namespaces; keep a namespace that covers them, or move, switch off or "
                "delete them first"))])
        tenant.paths = namespaces
        db.session.flush()
        change.audit("tenant.update",
                     f"set the namespaces of tenant {slug} to "
                     f"{', '.join(namespaces) or 'none'}",
                     before=before, after=_tenant_state(tenant), tenant_id=tenant.id)
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
                     before=_tenant_state(tenant), tenant_id=tenant.id)
        db.session.execute(sa.delete(AllowedOrigin).where(AllowedOrigin.tenant_id == tenant.id))
        db.session.execute(sa.delete(User).where(User.tenant_id == tenant.id))
        db.session.execute(sa.delete(ApiToken).where(ApiToken.tenant_id == tenant.id))
        # Its shared origin lists: only its own rules could use them, and it owns none.
        lists = sa.select(OriginList.id).where(OriginList.tenant_id == tenant.id)
        db.session.execute(sa.delete(OriginListEntry).where(OriginListEntry.list_id.in_(lists)))
        db.session.execute(sa.delete(OriginList).where(OriginList.tenant_id == tenant.id))
        db.session.delete(tenant)


# -- namespaces ------------------------------------------------------------------------------


def _tenant_state(tenant: Tenant) -> dict[str, Any]:
    return {"slug": tenant.slug, "name": tenant.name, "paths": list(tenant.paths)}


def _parse_namespaces(paths: Iterable[str], *, where: str = "") -> tuple[list[str],
                                                                       list[FieldError]]:
    """The namespaces as stored (sorted, without duplicates), and what is wrong with them."""
    if isinstance(paths, str) or not isinstance(paths, Iterable):
        return [], [FieldError(f"{where}paths", "paths is a list of path patterns, such as "
                                                '["/api/t/acme/*"]')]
    namespaces: set[str] = set()
    errors = []
    for position, text in enumerate(paths):
        if not isinstance(text, str):
            errors.append(FieldError(f"{where}paths[{position}]",
                                     "a namespace is a path pattern, such as /api/t/acme/*"))
            continue
        text = text.strip()
        try:
            parse_new_pattern(text)
        except PatternError as exc:
            errors.append(FieldError(f"{where}paths[{position}]", str(exc)))
            continue
        namespaces.add(text)
    ordered = sorted(namespaces)
    for position, text in enumerate(ordered):
        for other in ordered[:position]:
            if covers(parse_pattern(other), parse_pattern(text)) or covers(
                    parse_pattern(text), parse_pattern(other)):
                errors.append(FieldError(f"{where}paths", (
                    f"the namespaces {other} and {text} overlap; keep the wider one")))
    return ordered, errors


def parse_namespaces(paths: Any, *, where: str = "") -> list[str]:
    """Validated namespaces for a tenant (the policy file and the channels read them)."""
    namespaces, errors = _parse_namespaces(paths, where=where)
    if errors:
        raise ValidationError(errors)
    return namespaces


def stored_namespaces(slug: str | None = None) -> dict[str, list[str]]:
    """Every tenant's namespaces by slug (or only those of tenant *slug*)."""
    query = sa.select(Tenant.slug, Tenant.paths)
    if slug is not None:
        query = query.where(Tenant.slug == slug)
    return {slug: list(paths or []) for slug, paths in db.session.execute(query)}


def check_no_overlap(namespaces: Mapping[str, list[str]], changed: Iterable[str], *,
                     field_name: str = "paths") -> None:
    """Refuse when the namespaces of a *changed* tenant can match a path in common with
    another tenant's: a path governed by two tenants' rules would belong to whichever rule
    is more specific, so one tenant could take the other's routes. Only the changed tenants
    are compared with the rest, so a platform of many tenants checks one in linear time."""
    claimed = [(slug, text, parse_pattern(text))
               for slug, paths in sorted(namespaces.items()) for text in paths]
    for slug in sorted(set(changed)):
        for mine in namespaces.get(slug, []):
            pattern = parse_pattern(mine)
            for other, theirs, their_pattern in claimed:
                if other != slug and overlaps(pattern, their_pattern):
                    raise ValidationError([FieldError(field_name, (
                        f"the namespace {mine} of tenant {slug} overlaps {theirs} of tenant "
                        f"{other}; namespaces of two tenants never share a path, so choose "
                        "one that does not"))])


def inside(path: str, namespaces: Iterable[str]) -> bool:
    """Whether every path the rule pattern *path* matches lies in one of *namespaces*."""
    try:
        pattern = parse_pattern(path)
    except PatternError:
        return False
    return any(covers(parse_pattern(namespace), pattern) for namespace in namespaces)


def require_inside(path: str, tenant: str, namespaces: list[str], *,
                   field_name: str = "path") -> None:
    """Refuse a rule of *tenant* whose path is outside or wider than its namespaces."""
    if inside(path, namespaces):
        return
    if not namespaces:
        message = (f"tenant {tenant} has no namespace yet, so it can own no rule; an admin "
                   f"must give it one first (such as /api/t/{tenant}/*) on the tenants page "
                   f"or with flask tenants set-paths {tenant} --path PATTERN")
    else:
        pattern = parse_pattern(path)
        wider = any(overlaps(parse_pattern(n), pattern) for n in namespaces)
        message = (f"{path} {'is wider than' if wider else 'lies outside'} the namespaces of "
                   f"tenant {tenant} ({', '.join(namespaces)}); a rule of this tenant "
                   "governs only paths inside them, so choose a path such as "
                   f"{namespaces[0].removesuffix('/*')}/orders")
    raise ValidationError([FieldError(field_name, message)])


# Who the migration that switched off the rules left outside namespaces was (0015's ACTOR).
UPGRADE_ACTOR = "upgrade 0015"


@dataclass(frozen=True, slots=True)
class StrandedRule:
    """A tenant's rule outside its tenant's namespaces, left by an older version that did
    not know namespaces: switched on, it may govern platform routes; or switched off by the
    upgrade (``switched_off``), until an admin gives the tenant a namespace or deletes it."""

    rule_id: int
    path: str
    mode: str
    tenant: str
    namespaces: list[str]
    switched_off: bool = False

    @property
    def covered(self) -> bool:
        """Whether a namespace of its tenant now covers it (it may be switched back on)."""
        return inside(self.path, self.namespaces)


def rules_outside_namespaces() -> list[StrandedRule]:
    """The tenant rules outside their tenant's namespaces that are switched on, or that the
    upgrade switched off and nobody has changed since, for an admin to fix."""
    rows = db.session.execute(
        sa.select(Rule.id, Rule.path, Rule.mode, Rule.updated_by, Tenant.slug, Tenant.paths)
        .join(Tenant, Rule.tenant_id == Tenant.id)
        .where(sa.or_(Rule.mode != OFF, Rule.updated_by == UPGRADE_ACTOR))
        .order_by(Tenant.slug, Rule.path)).all()
    # A rule the upgrade switched off stays listed once a namespace covers it: it is then
    # ready to be switched back on.
    return [StrandedRule(row.id, row.path, row.mode, row.slug, list(row.paths or []),
                         switched_off=row.mode == OFF)
            for row in rows if row.mode == OFF or not inside(row.path, row.paths or [])]


__all__ = ["UPGRADE_ACTOR", "StrandedRule", "TenantSummary", "check_no_overlap", "create_tenant",
           "delete_tenant", "get_tenant", "inside", "list_tenants", "parse_namespaces",
           "require_inside", "rules_outside_namespaces", "set_tenant_paths",
           "stored_namespaces", "tenant_slug", "tenant_summaries"]
