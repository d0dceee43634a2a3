"""What a change to the policy takes away, and gives, before it is saved.

:func:`measure` compares two pictures of the policy (every rule as the engine compiles it)
route by route: for each route of the app, and for the path of each changed rule that no
route of the app matches, which rule answers it before and after, and which origins,
methods, request headers and credentials stop (or start) applying there. The engine decides:
the pictures are compiled by :func:`~cors_control.snapshot.compile_policy` and each route is
looked up with its own ``route_for``, so report-only rules and rules in mode ``off`` step
aside exactly as they do on live requests.

:func:`rehearse` produces the pictures of a real change without writing it: the change runs
through its service function in full (validation, ownership, namespaces) inside
:func:`~.changes.rehearsing`, which rolls it back; so a preview can never disagree with
what saving would do.

A tenant role never learns from a preview what it cannot see: another tenant's or a platform
rule is "a platform rule" (or "another tenant's rule"), and its origins are counted as
hidden, not listed.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app, has_app_context

from cors_control.paths import parse_pattern
from cors_control.snapshot import (
    CompiledRule,
    OriginEntry,
    PolicySnapshot,
    RuleSpec,
    compile_policy,
    compile_rule,
)
from cors_control.vocabulary import NO_TENANT_SOURCE

from ..extensions import db
from ..models import AllowedOrigin, Rule, Tenant
from .access import Actor, sees, tenant_scope
from .changes import rehearsing
from .policy import validate_policy

ANY = "*"
_CONVERTER = re.compile(r"<(?:[^<>:]+:)?[^<>]+>")
_IMPLICIT_METHODS = {"HEAD", "OPTIONS"}


# -- pictures of the policy ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleFacts:
    """One stored rule: what the engine compiles (``spec``) and who owns it."""

    spec: RuleSpec
    tenant_id: int | None = None
    tenant_source: str = NO_TENANT_SOURCE
    tenant_slug: str | None = None


Picture = Mapping[int, RuleFacts]


def current_picture() -> dict[int, RuleFacts]:
    """Every rule as the session sees it now (a change in progress included, once flushed),
    read with two plain queries as the engine's own loader does: a preview of a large policy
    builds no ORM object per origin."""
    rules, origins, tenants = Rule.__table__, AllowedOrigin.__table__, Tenant.__table__
    slugs: dict[int, str] = dict(db.session.execute(sa.select(tenants.c.id, tenants.c.slug))
                                 .all())
    entries: dict[int, list[OriginEntry]] = {}
    for rule_id, value, expires_at, tenant_id in db.session.execute(
            sa.select(origins.c.rule_id, origins.c.value, origins.c.expires_at,
                      origins.c.tenant_id)
            .order_by(origins.c.rule_id, origins.c.tenant_id, origins.c.value)):
        entries.setdefault(rule_id, []).append(OriginEntry(
            value, None if expires_at is None else _aware(expires_at).timestamp(),
            slugs.get(tenant_id) if tenant_id is not None else None))
    picture = {}
    for row in db.session.execute(sa.select(rules)):
        spec = RuleSpec(
            rule_id=row.id, path=row.path, origins=tuple(entries.get(row.id, ())),
            methods=tuple(row.methods), allow_headers=tuple(row.allow_headers),
            expose_headers=tuple(row.expose_headers),
            supports_credentials=row.supports_credentials, max_age=row.max_age,
            allow_private_network=row.allow_private_network, mode=row.mode,
            tenant_source=row.tenant_source, tenant_key=row.tenant_key,
            unknown_tenant=row.unknown_tenant)
        picture[row.id] = RuleFacts(spec, row.tenant_id, row.tenant_source,
                                    slugs.get(row.tenant_id) if row.tenant_id else None)
    return picture


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# -- the impact ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleLabel:
    """A rule as the caller may see it: its path, or only what kind of rule it is."""

    rule_id: int
    path: str
    visible: bool = True
    kind: str = "a platform rule"

    @property
    def text(self) -> str:
        return self.path if self.visible else self.kind

    def as_dict(self) -> dict[str, Any]:
        if not self.visible:
            return {"id": None, "path": None, "hidden": True, "label": self.kind}
        return {"id": self.rule_id, "path": self.path, "hidden": False, "label": self.path}


@dataclass(frozen=True, slots=True)
class Grants:
    """What applies on one route: origins (value, tenant or None for every tenant), methods,
    request headers (``*`` for any) and credentials. Origins the caller may not see are
    counted in ``hidden``."""

    origins: tuple[tuple[str, str | None], ...] = ()
    methods: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    credentials: bool = False
    private_network: bool = False
    hidden: int = 0

    @property
    def empty(self) -> bool:
        return not (self.origins or self.methods or self.headers or self.credentials
                    or self.private_network or self.hidden)

    def origin_texts(self) -> list[str]:
        return [value if tenant is None else f"{value} (tenant {tenant})"
                for value, tenant in self.origins]

    def items(self) -> list[str]:
        """Each grant in words, for lists and confirmations."""
        items = [f"origin {text}" for text in self.origin_texts()]
        if self.hidden:
            items.append(f"{self.hidden} origin(s) you cannot see")
        items += [f"method {m}" for m in self.methods]
        items += ["any request header" if h == ANY else f"header {h}" for h in self.headers]
        if self.credentials:
            items.append("credentials")
        if self.private_network:
            items.append("private network access")
        return items

    def as_dict(self) -> dict[str, Any]:
        return {"origins": self.origin_texts(), "hidden_origins": self.hidden,
                "methods": list(self.methods), "headers": list(self.headers),
                "credentials": self.credentials, "private_network": self.private_network}


@dataclass(frozen=True, slots=True)
class RouteImpact:
    """One route whose answer changes: the rule before and after (None: no rule, the engine
    leaves the response alone), what stops applying (``lost``) and what starts (``gained``)."""

    route: str
    sample: str
    before: RuleLabel | None
    after: RuleLabel | None
    lost: Grants
    gained: Grants
    app_route: bool = True  # False: the pattern of a changed rule no app route matches

    @property
    def moves(self) -> bool:
        return (self.before.rule_id if self.before else None) != \
            (self.after.rule_id if self.after else None)

    @property
    def takes_away(self) -> bool:
        return not self.lost.empty

    def as_dict(self) -> dict[str, Any]:
        return {"route": self.route, "sample_path": self.sample, "app_route": self.app_route,
                "before": self.before.as_dict() if self.before else None,
                "after": self.after.as_dict() if self.after else None,
                "moves": self.moves, "lost": self.lost.as_dict(),
                "gained": self.gained.as_dict()}


@dataclass(frozen=True, slots=True)
class CopyOffer:
    """A narrower rule takes routes from a broader one: the broader rule's origins (those the
    caller sees), which the new rule could carry over."""

    rule: RuleLabel
    origins: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.as_dict(), "origins": list(self.origins)}


@dataclass(frozen=True, slots=True)
class Impact:
    """Every route whose answer a change alters."""

    routes: tuple[RouteImpact, ...] = ()
    offers: tuple[CopyOffer, ...] = ()

    @property
    def takes_away(self) -> bool:
        return any(route.takes_away for route in self.routes)

    @property
    def losing(self) -> tuple[RouteImpact, ...]:
        return tuple(route for route in self.routes if route.takes_away)

    def losses(self) -> list[str]:
        """One sentence per route that loses something, for a confirmation."""
        return [f"{route.route}: {', '.join(route.lost.items())} stop applying"
                + (f" (answered by {_rule_text(route.after)} instead of "
                   f"{_rule_text(route.before)})" if route.moves else "")
                for route in self.losing]

    @property
    def fingerprint(self) -> str:
        """Names exactly these losses: a confirmation given for them is not one for others."""
        return hashlib.sha256("\n".join(self.losses()).encode()).hexdigest()[:16]

    def as_dict(self) -> dict[str, Any]:
        return {"takes_away": self.takes_away, "losses": self.losses(),
                "confirmation": self.fingerprint if self.takes_away else None,
                "routes": [route.as_dict() for route in self.routes],
                "copy_offers": [offer.as_dict() for offer in self.offers]}


def _rule_text(label: RuleLabel | None) -> str:
    return label.text if label is not None else "no rule"


def measure(before: Picture, after: Picture, *, routes: Iterable[str] = (),
            actor: Actor | None = None, now: float | None = None) -> Impact:
    """The routes whose answer differs between the two pictures, and what each loses and
    gains. *routes* are the app's route strings (``/api/items/<int:id>``); the path of each
    changed rule no route matches is looked at too."""
    now = time.time() if now is None else now
    old, new = _compile(before), _compile(after)
    compiled: dict[tuple[int, int], _Allowlist] = {}
    changed = {rule_id for rule_id in {*before, *after}
               if before.get(rule_id) != after.get(rule_id)}
    if not changed:
        return Impact()
    route_list = sorted(set(routes))
    samples = [(route, _sample(route)) for route in route_list]
    for rule_id in sorted(changed):
        facts = after.get(rule_id) or before[rule_id]
        pattern = parse_pattern(facts.spec.path)
        if not any(pattern.matches(sample) for _route, sample in samples):
            samples.append((facts.spec.path, _pattern_sample(facts.spec.path)))
    results = []
    for route, sample in samples:
        was, now_rule = old.route_for(sample).rule, new.route_for(sample).rule
        ids = {rule.rule_id for rule in (was, now_rule) if rule is not None}
        if not ids & changed:
            continue
        had = _grants(was, before, actor, now)
        has = _grants(now_rule, after, actor, now)
        lost = _minus(had, has, _full(now_rule, after, compiled), now)
        gained = _minus(has, had, _full(was, before, compiled), now)
        moved = (was.rule_id if was else None) != (now_rule.rule_id if now_rule else None)
        if lost.empty and gained.empty and not moved:
            continue
        results.append(RouteImpact(
            route, sample, _label(was, before, actor), _label(now_rule, after, actor),
            lost, gained, app_route=route in route_list))
    return Impact(tuple(results), _offers(results, before, after, actor))


def _compile(picture: Picture) -> PolicySnapshot:
    """The picture's path index and options. Origins are left out: parsing every origin of a
    large policy would cost more than all the rest; the few rules a change concerns get
    theirs from :func:`_full`."""
    return compile_policy(0, (replace(facts.spec, origins=()) for facts in picture.values()),
                          {f.tenant_slug for f in picture.values() if f.tenant_slug})


@dataclass(frozen=True, slots=True)
class _Allowlist:
    """What a rule allows, for telling whether an origin stays allowed: its exact entries as
    stored, and its wildcards (and ``*``) compiled. Only wildcards are parsed, so a rule with
    thousands of exact origins costs a set, not thousands of parses."""

    exact: frozenset[tuple[str, str | None]]
    wildcards: CompiledRule


def _full(rule: CompiledRule | None, picture: Picture,
          compiled: dict[tuple[int, int], _Allowlist]) -> _Allowlist | None:
    """The allowlist of *rule* (once per picture)."""
    if rule is None or rule.rule_id is None:
        return None
    key = (id(picture), rule.rule_id)
    if key not in compiled:
        spec = picture[rule.rule_id].spec
        compiled[key] = _Allowlist(
            frozenset((e.value, e.tenant) for e in spec.origins),
            compile_rule(replace(spec, origins=tuple(e for e in spec.origins
                                                     if "*" in e.value))))
    return compiled[key]


def _sample(route: str) -> str:
    return _CONVERTER.sub("1", route)


def _pattern_sample(pattern: str) -> str:
    """A concrete path the pattern matches: each ``*`` segment becomes ``x``."""
    return "/".join("x" if part == "*" else part for part in pattern.split("/"))


def _hidden_label(rule_id: int, picture: Picture, actor: Actor | None) -> RuleLabel:
    facts = picture[rule_id]
    visible = sees(actor, _Owner(facts.tenant_id, facts.tenant_source))
    kind = "a platform rule" if facts.tenant_id is None else "another tenant's rule"
    return RuleLabel(rule_id, facts.spec.path, visible, kind)


def _label(rule: CompiledRule | None, picture: Picture, actor: Actor | None) -> RuleLabel | None:
    if rule is None or rule.rule_id is None:
        return None
    return _hidden_label(rule.rule_id, picture, actor)


@dataclass(frozen=True, slots=True)
class _Owner:
    tenant_id: int | None
    tenant_source: str


def _grants(rule: CompiledRule | None, picture: Picture, actor: Actor | None,
            now: float) -> Grants:
    if rule is None or rule.rule_id is None:
        return Grants()
    facts = picture[rule.rule_id]
    scope = tenant_scope(actor)
    slug = _scope_slug(picture, scope)
    whole = scope is None or facts.tenant_id == scope
    origins, hidden = [], 0
    for entry in facts.spec.origins:
        if entry.expires_at is not None and entry.expires_at <= now:
            continue  # expired: applies nowhere already
        tenant = entry.tenant if rule.selects_tenant else None
        if whole or (tenant is not None and tenant == slug):
            origins.append((entry.value, tenant))
        else:
            hidden += 1
    return Grants(tuple(sorted(set(origins), key=lambda o: (o[1] or "", o[0]))),
                  tuple(sorted(rule.methods)),
                  (ANY,) if rule.any_header else tuple(sorted(rule.allow_headers)),
                  rule.supports_credentials, rule.allow_private_network, hidden)


def _scope_slug(picture: Picture, scope: int | None) -> str | None:
    if scope is None:
        return None
    return next((f.tenant_slug for f in picture.values() if f.tenant_id == scope), None)


def _minus(had: Grants, has: Grants, rule: _Allowlist | None, now: float) -> Grants:
    """What of *had* is not in *has*; an origin still allowed by *rule* (by a wildcard, or
    ``*``) is not lost."""
    kept = set(has.origins)
    origins = tuple(o for o in had.origins
                    if o not in kept and not _still_allowed(rule, o, now))
    headers: tuple[str, ...] = ()
    if ANY not in has.headers:
        headers = tuple(h for h in had.headers if h not in has.headers)
    return Grants(origins, tuple(m for m in had.methods if m not in has.methods), headers,
                  had.credentials and not has.credentials,
                  had.private_network and not has.private_network,
                  max(0, had.hidden - has.hidden))


def _still_allowed(allowlist: _Allowlist | None, origin: tuple[str, str | None],
                   now: float) -> bool:
    if allowlist is None:
        return False
    value, tenant = origin
    if (value, None) in allowlist.exact or (value, tenant) in allowlist.exact:
        return True
    rule = allowlist.wildcards
    sets = [rule.origins]
    if tenant is not None and tenant in rule.tenant_origins:
        sets.append(rule.tenant_origins[tenant])
    return any(s.allows_any(now) or s.allows(value, now) for s in sets)


def _offers(results: list[RouteImpact], before: Picture, after: Picture,
            actor: Actor | None) -> tuple[CopyOffer, ...]:
    """For each visible rule that loses routes to a rule that did not answer them before,
    its origins the new answering rule lacks."""
    offers: dict[int, CopyOffer] = {}
    for route in results:
        if not route.moves or route.before is None or route.after is None \
                or not route.before.visible or not route.lost.origins \
                or route.before.rule_id not in after:
            continue
        broader = route.before.rule_id
        if broader in offers:
            continue
        values = {value for value, _tenant in route.lost.origins}
        source = after[broader].spec
        # The tenant's lists of a tenant-selecting rule stay there: a new rule starts with
        # shared origins only.
        origins = tuple(entry.value for entry in source.origins
                        if entry.value in values and entry.tenant is None)
        if origins:
            offers[broader] = CopyOffer(route.before, origins)
    return tuple(offers.values())


# -- rehearsing a change -------------------------------------------------------------------


@dataclass
class _Watcher:
    actor: Actor | None
    routes: tuple[str, ...]
    before: dict[int, RuleFacts] = field(default_factory=dict)
    impact: Impact | None = None

    def started(self) -> None:
        self.before = current_picture()

    def finished(self) -> None:
        self.impact = measure(self.before, current_picture(), routes=self.routes,
                              actor=self.actor)


def rehearse(change: Callable[[], object], *, actor: Actor | None,
             routes: Iterable[str] | None = None) -> Impact:
    """Run *change* (a call of a service function that writes) as a dry run and return what
    it would take away and give. Whatever *change* would refuse, it refuses here too (the
    exception propagates). A change that would change nothing has no impact."""
    watcher = _Watcher(actor, tuple(app_routes() if routes is None else routes))
    with rehearsing(watcher):
        change()
    return watcher.impact or Impact()


def app_routes() -> list[str]:
    """The app's routes the engine may govern (those the route coverage page lists)."""
    if not has_app_context():
        return []
    excluded = tuple(current_app.config.get("CORS_EXCLUDED_PREFIXES", ()))
    return sorted({url_rule.rule for url_rule in current_app.url_map.iter_rules()
                   if not url_rule.rule.startswith(excluded)})


def import_impact(document: Any, *, replace: bool, actor: Actor | None,
                  routes: Iterable[str] | None = None) -> Impact:
    """What importing *document* would take away and give, computed by reading only (a dry
    run never takes the write lock): the stored rules, with those of the document in place
    of the ones of the same path (and, with *replace*, without the others). Call it after
    the import's own dry run accepted the document."""
    inputs = validate_policy(document)
    before = current_picture()
    tenant_ids = dict(db.session.execute(sa.select(Tenant.slug, Tenant.id)).all())
    by_path = {facts.spec.path: rule_id for rule_id, facts in before.items()}
    after: dict[int, RuleFacts] = {} if replace else dict(before)
    next_id = -1  # rules the import would create: ids no stored rule has
    for rule_input in inputs:
        rule_id = by_path.get(rule_input.path)
        if rule_id is None:
            rule_id, next_id = next_id, next_id - 1
        spec = RuleSpec(
            rule_id=rule_id, path=rule_input.path,
            origins=tuple(OriginEntry(
                o.value, None if o.expires_at is None else _aware(o.expires_at).timestamp(),
                o.tenant) for o in rule_input.origins),
            methods=tuple(rule_input.methods), allow_headers=tuple(rule_input.allow_headers),
            expose_headers=tuple(rule_input.expose_headers),
            supports_credentials=rule_input.supports_credentials, max_age=rule_input.max_age,
            allow_private_network=rule_input.allow_private_network, mode=rule_input.mode,
            tenant_source=rule_input.selector.source, tenant_key=rule_input.selector.key,
            unknown_tenant=rule_input.selector.unknown)
        owner = rule_input.tenant
        after[rule_id] = RuleFacts(spec, tenant_ids.get(owner) if owner else None,
                                   rule_input.selector.source, owner)
    db.session.rollback()  # ends the read transaction
    return measure(before, after, routes=app_routes() if routes is None else routes,
                   actor=actor)
