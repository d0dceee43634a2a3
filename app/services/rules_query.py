"""Reading rules for the dashboard and the API: search, filters, pages, origin counts, route
coverage.

Writes go through :mod:`.policy`; this module only reads, with a bounded number of queries
per page whatever the size of the policy (10,000 rules, 100,000 origins): one for a page of
rules, one for the total, one for their tenants (when any has one), one grouped count of
their origins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy.orm import selectinload

from cors_control.paths import PatternIndex, parse_pattern
from cors_control.vocabulary import MODES, NO_TENANT_SOURCE, OFF, REPORT_ONLY

from ..extensions import db
from ..models import AllowedOrigin, Rule, Tenant
from .access import Actor, tenant_scope, visible_origin_rows, visible_rules, whole_platform
from .origin_count import origin_total
from .validation import OriginInput, RuleInput
from .warnings import rule_warnings

RULES_PER_PAGE = 50
MAX_RULES_PER_PAGE = 100
ORIGINS_PER_PAGE = 500
MAX_ORIGINS_PER_PAGE = 500


# -- the list of rules ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleFilter:
    """What the rules list shows: *text* in the path or description, a mode, credentials,
    the rules of one *tenant* (its slug)."""

    text: str = ""
    mode: str | None = None
    credentials: bool | None = None
    tenant: str | None = None

    @classmethod
    def from_args(cls, args) -> RuleFilter:
        """Read a filter from query arguments; unknown values mean "any", never an error."""
        mode = args.get("mode") or None
        credentials = {"yes": True, "no": False}.get(args.get("credentials", ""))
        tenant = (args.get("tenant") or "").strip()
        return cls(
            text=(args.get("q") or "").strip()[:200],
            mode=mode if mode in MODES else None,
            credentials=credentials,
            tenant=tenant[:200] if tenant else None,
        )

    def as_args(self) -> dict[str, str]:
        """The filter as query arguments, for links that keep it (pages, back links)."""
        args: dict[str, str] = {}
        if self.text:
            args["q"] = self.text
        if self.mode:
            args["mode"] = self.mode
        if self.credentials is not None:
            args["credentials"] = "yes" if self.credentials else "no"
        if self.tenant:
            args["tenant"] = self.tenant
        return args


@dataclass(slots=True)
class RulePage:
    """One page of rules and the number of origins of each."""

    pagination: Pagination
    origin_counts: dict[int, int] = field(default_factory=dict)

    @property
    def rules(self) -> list[Rule]:
        return list(self.pagination.items)


def search_rules(rule_filter: RuleFilter, *, page: int = 1, per_page: int = RULES_PER_PAGE,
                 max_per_page: int = MAX_RULES_PER_PAGE,
                 actor: Actor | None = None) -> RulePage:
    """A page of the rules *actor* may see, sorted by path, with their owners loaded;
    *per_page* is capped at *max_per_page*."""
    query = sa.select(Rule).where(visible_rules(actor)) \
        .options(selectinload(Rule.tenant)).order_by(Rule.path)
    if rule_filter.text:
        query = query.where(sa.or_(
            Rule.path.icontains(rule_filter.text, autoescape=True),
            Rule.description.icontains(rule_filter.text, autoescape=True),
        ))
    if rule_filter.mode:
        query = query.where(Rule.mode == rule_filter.mode)
    if rule_filter.credentials is not None:
        query = query.where(Rule.supports_credentials.is_(rule_filter.credentials))
    if rule_filter.tenant is not None:
        query = query.join(Tenant, Rule.tenant_id == Tenant.id) \
            .where(Tenant.slug == rule_filter.tenant)
    pagination = db.paginate(query, page=page, per_page=per_page,
                             max_per_page=max_per_page, error_out=False)
    return RulePage(pagination, origin_counts([rule.id for rule in pagination.items],
                                              actor=actor))


def origin_counts(rule_ids: Iterable[int], *, actor: Actor | None = None) -> dict[int, int]:
    """How many origins of each rule *actor* may see, in one query (0 for none): their
    stored numbers for whoever sees the whole platform, a grouped count of what a tenant
    role sees."""
    ids = list(rule_ids)
    counts = dict.fromkeys(ids, 0)
    if not ids:
        return counts
    if whole_platform(actor):
        query = sa.select(Rule.id, Rule.origin_count).where(Rule.id.in_(ids))
    else:
        query = (sa.select(AllowedOrigin.rule_id, sa.func.count(AllowedOrigin.id))
                 .where(AllowedOrigin.rule_id.in_(ids), visible_origin_rows(actor))
                 .group_by(AllowedOrigin.rule_id))
    counts.update({rule_id: count for rule_id, count in db.session.execute(query)})
    return counts


# -- the origins of one rule ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OriginRow:
    """An allowed origin as the rule page shows it, with the advice that applies to it."""

    origin: AllowedOrigin
    expired: bool
    warnings: tuple[str, ...] = ()


@dataclass(slots=True)
class OriginPage:
    pagination: Pagination
    rows: list[OriginRow]
    text: str = ""


def rule_origins(rule: Rule, *, text: str = "", page: int = 1,
                 per_page: int = ORIGINS_PER_PAGE, api_is_https: bool = False,
                 now: datetime | None = None, actor: Actor | None = None) -> OriginPage:
    """A page of *rule*'s origins that *actor* may see, sorted by value, optionally those
    whose value or note contains *text*; a rule with thousands of origins never loads them
    all."""
    text = text.strip()[:200]
    query = sa.select(AllowedOrigin) \
        .where(AllowedOrigin.rule_id == rule.id, visible_origin_rows(actor)) \
        .options(selectinload(AllowedOrigin.tenant)) \
        .order_by(AllowedOrigin.value, AllowedOrigin.tenant_id)
    if text:
        query = query.where(sa.or_(
            AllowedOrigin.value.icontains(text, autoescape=True),
            AllowedOrigin.note.icontains(text, autoescape=True),
        ))
    # Whoever sees every origin of the rule, unfiltered, reads their stored number rather
    # than counting them (100,000 on a large rule).
    stored = not text and (whole_platform(actor) or rule.tenant_id == tenant_scope(actor))
    pagination = db.paginate(query, page=page, per_page=per_page,
                             max_per_page=MAX_ORIGINS_PER_PAGE, error_out=False,
                             count=not stored)
    if stored:
        pagination.total = origin_total(rule.id)
    origins = list(pagination.items)
    return OriginPage(pagination, origin_rows(rule, origins, api_is_https=api_is_https,
                                              now=now), text)


def has_origin(rule_id: int, value: str, *, actor: Actor | None = None) -> bool:
    """Whether *value* (as stored, canonical) is on an allowlist of the rule that *actor* may
    see."""
    return db.session.scalar(sa.select(AllowedOrigin.id).where(
        AllowedOrigin.rule_id == rule_id, AllowedOrigin.value == value,
        visible_origin_rows(actor)).limit(1)) is not None


def origin_rows(rule: Rule, origins: list[AllowedOrigin], *, api_is_https: bool = False,
                now: datetime | None = None) -> list[OriginRow]:
    """Each origin with its expiry state and the advice it gets on this rule."""
    now = now or datetime.now(UTC)
    advice = origin_advice(
        rule, [OriginInput(o.value, o.kind, o.note or "", o.expires_at) for o in origins],
        api_is_https=api_is_https)
    return [OriginRow(origin, _past(origin.expires_at, now), tuple(messages))
            for origin, messages in zip(origins, advice, strict=True)]


def origin_advice(rule: Rule, origins: list[OriginInput], *,
                  api_is_https: bool = False) -> list[list[str]]:
    """The warnings :func:`rule_warnings` gives each of *origins* on *rule* (local development
    origins, plain http for an https API, subdomain wildcards with credentials)."""
    rule_input = RuleInput(path=rule.path, pattern=parse_pattern(rule.path),
                           origins=list(origins),
                           supports_credentials=rule.supports_credentials, mode=rule.mode)
    advice: list[list[str]] = [[] for _ in origins]
    for warning in rule_warnings(rule_input, api_is_https=api_is_https):
        match = re.fullmatch(r"origins\[(\d+)\]", warning.field)
        if match:
            advice[int(match.group(1))].append(warning.message)
    return advice


def _past(moment: datetime | None, now: datetime) -> bool:
    return moment is not None and moment <= now


# -- coverage of the app's routes ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleRef:
    id: int
    path: str
    mode: str


@dataclass(frozen=True, slots=True)
class RouteCoverage:
    """A route of the app and the rule the engine applies to it.

    ``route`` is the rule string Flask declares (``/api/items/<int:id>``); ``sample`` is the
    path that was matched, each converter replaced by one sample segment. ``rule`` is the
    enforcing rule that answers the route; ``watching`` the report-only rules more specific
    than it, which only record what they would refuse. ``disabled`` is a rule in mode ``off``
    that would govern the route instead if it were enabled.
    """

    route: str
    sample: str
    methods: tuple[str, ...]
    endpoints: tuple[str, ...]
    rule: RuleRef | None
    disabled: RuleRef | None = None
    watching: tuple[RuleRef, ...] = ()


_CONVERTER = re.compile(r"<(?:[^<>:]+:)?[^<>]+>")
_IMPLICIT_METHODS = {"HEAD", "OPTIONS"}


def sample_path(route: str) -> str:
    """A concrete path for a Flask rule string: each ``<converter:name>`` becomes ``1``."""
    return _CONVERTER.sub("1", route)


def route_coverage(url_rules: Iterable, *, excluded_prefixes: tuple[str, ...]) \
        -> list[RouteCoverage]:
    """Every route of *url_rules* (``app.url_map.iter_rules()``) outside the excluded
    prefixes, with the rule that governs it, decided by the engine's own path index."""
    routes: dict[str, tuple[set[str], set[str]]] = {}
    for url_rule in url_rules:
        route = url_rule.rule
        if route.startswith(excluded_prefixes):
            continue
        methods, endpoints = routes.setdefault(route, (set(), set()))
        methods.update((url_rule.methods or set()) - _IMPLICIT_METHODS)
        endpoints.add(url_rule.endpoint)

    stored = db.session.execute(sa.select(Rule.id, Rule.path, Rule.mode)).all()
    patterns = [(parse_pattern(row.path), RuleRef(row.id, row.path, row.mode)) for row in stored]
    # The engine's own index decides. Like compile_policy, the enabled index leaves rules in
    # mode off out; a second index over those finds an off rule that would win if enabled.
    enabled = PatternIndex([(p, ref) for p, ref in patterns if ref.mode != OFF])
    disabled = PatternIndex([(p, ref) for p, ref in patterns if ref.mode == OFF])
    rank = {id(ref): pattern.specificity for pattern, ref in patterns}

    result = []
    for route in sorted(routes):
        sample = sample_path(route)
        # As the engine does: report-only rules step aside for the next enforcing one.
        watching: list[RuleRef] = []
        rule: RuleRef | None = None
        for ref in enabled.lookup_all(sample):
            assert isinstance(ref, RuleRef)  # the index holds RuleRefs
            if ref.mode != REPORT_ONLY:
                rule = ref
                break
            watching.append(ref)
        off = disabled.lookup(sample)
        if off is not None and rule is not None and rank[id(off)] < rank[id(rule)]:
            off = None
        methods, endpoints = routes[route]
        result.append(RouteCoverage(route, sample, tuple(sorted(methods)),
                                    tuple(sorted(endpoints)), rule, off,  # type: ignore[arg-type]  # the index holds Rules
                                    tuple(watching)))
    return result


def shared_origins_for_tenant(rule: Rule, *, actor: Actor | None,
                              limit: int = ORIGINS_PER_PAGE) -> list[AllowedOrigin]:
    """The shared origins of a platform rule that keeps an allowlist per tenant, which apply
    to a tenant role's tenant too: that role sees them read-only beside its own allowlist.
    Empty for anyone else (platform users see them in the rule's list), sorted by value."""
    tenant_id = actor.tenant_id if actor is not None and actor.scoped else None
    if tenant_id is None or rule.tenant_id == tenant_id or rule.tenant_source == NO_TENANT_SOURCE:
        return []
    query = (sa.select(AllowedOrigin)
             .where(AllowedOrigin.rule_id == rule.id, AllowedOrigin.tenant_id.is_(None))
             .order_by(AllowedOrigin.value).limit(limit))
    return list(db.session.scalars(query))
