"""The compiled, immutable policy the engine decides against.

:func:`compile_policy` turns plain rule descriptions (:class:`RuleSpec`, as loaded from the
database or an import file) into a :class:`PolicySnapshot`: exact origins in a hash table,
subdomain wildcards indexed by host suffix, precomputed response header values, and a path
index. Deciding one request then costs the same with three allowed origins as with 100,000.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from .origins import (
    OriginError,
    OriginKind,
    all_canonical_exact,
    is_canonical_exact,
    parse_origin,
)
from .paths import PathPattern, PatternIndex, parse_pattern
from .vocabulary import (
    ENFORCE,
    NO_TENANT_SOURCE,
    OFF,
    REFUSE_UNKNOWN_TENANT,
    REPORT_ONLY,
    TENANT_FROM_HEADER,
    TENANT_FROM_SUBDOMAIN,
)

if TYPE_CHECKING:
    from .decision import AnswerKey, Decision

DEFAULT_METHODS = ("GET", "HEAD", "POST", "OPTIONS", "PUT", "PATCH", "DELETE")

_REQUEST_ORIGIN = re.compile(
    r"(https?)://([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*)"
    r"(?::([0-9]{1,5}))?"
)
PATH_MEMO_LIMIT = 10_000
# A DNS name has at most 253 characters; a longer Origin is no browser's, and scanning its
# dots would cost time quadratic in the header's length.
MAX_HOST_LENGTH = 253


@dataclass(frozen=True, slots=True)
class OriginEntry:
    """One allowed origin as the engine needs it. ``expires_at`` is a Unix timestamp."""

    value: str
    expires_at: float | None = None
    tenant: str | None = None  # the tenant whose allowlist it is on a tenant-selecting rule


@dataclass(frozen=True, slots=True)
class OriginListSpec:
    """A shared origin list as the engine needs it: its entries and its owner.

    ``tenant`` is the owning tenant's name, or None for a list of the platform. On a rule that
    selects tenants, a tenant's list is that tenant's allowlist and a platform list is shared
    by every tenant; on any other rule, every list's origins are the rule's own.
    """

    name: str
    origins: tuple[OriginEntry, ...] = ()
    tenant: str | None = None


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A rule as stored: flask-cors's option names, plus mode and identity."""

    path: str
    origins: tuple[OriginEntry, ...] = ()
    methods: tuple[str, ...] = DEFAULT_METHODS
    allow_headers: tuple[str, ...] = ("*",)
    expose_headers: tuple[str, ...] = ()
    supports_credentials: bool = False
    max_age: int | None = None
    allow_private_network: bool = False
    mode: str = ENFORCE
    rule_id: int | None = None
    # Tenant selection: one rule, one allowlist per tenant (see vocabulary.TENANT_SOURCES).
    tenant_source: str = NO_TENANT_SOURCE
    tenant_key: str = ""
    unknown_tenant: str = REFUSE_UNKNOWN_TENANT
    # A draft of this rule's options and allowlist (same path, mode and tenant selection),
    # evaluated beside it on an enforced rule; see CompiledRule.draft.
    draft: RuleSpec | None = None
    # The shared lists the rule uses; compiled into its allowlists with its own origins.
    origin_lists: tuple[OriginListSpec, ...] = ()


def effective_origins(spec: RuleSpec) -> tuple[OriginEntry, ...]:
    """The rule's own origins followed by those of its shared lists, each placed on the
    allowlist it applies to (see :class:`OriginListSpec`)."""
    if not spec.origin_lists:
        return spec.origins
    selects = spec.tenant_source != NO_TENANT_SOURCE
    merged = list(spec.origins)
    for origin_list in spec.origin_lists:
        tenant = origin_list.tenant if selects else None
        merged.extend(entry if entry.tenant == tenant
                      else OriginEntry(entry.value, entry.expires_at, tenant)
                      for entry in origin_list.origins)
    return tuple(merged)


class OriginSet:
    """Answers "is this request origin allowed?" in constant time.

    Exact values are a dict lookup; subdomain wildcards are looked up once per dot in the
    request's host; ``*`` is a flag. Entries carry their expiry so an expired origin stops
    matching without any write to the database.
    """

    __slots__ = ("any", "invalid", "expiring", "_exact", "_suffixes", "_any_port")

    def __init__(self, entries: Iterable[OriginEntry]) -> None:
        self.any: float | None | bool = False
        self._suffixes: dict[tuple[str, str, str], float | None] = {}
        self._any_port: dict[tuple[str, str], float | None] = {}
        self.invalid: list[str] = []
        listed = entries if isinstance(entries, list | tuple) else list(entries)
        values = [entry.value for entry in listed]
        expiries = [entry.expires_at for entry in listed]
        # Whether any entry expires: then what the set answers depends on the clock.
        self.expiring = expiries.count(None) != len(expiries)
        if all_canonical_exact(values):
            # Stored entries nearly always are: nothing to parse, one table built at once
            # (unless a value is listed twice: then the loop keeps its later expiry).
            self._exact: dict[str, float | None] = dict(zip(values, expiries, strict=True))
            if len(self._exact) == len(values):
                return
        self._exact = {}
        for entry in listed:
            if is_canonical_exact(entry.value):
                self._store(self._exact, entry.value, entry.expires_at)
                continue
            try:
                spec = parse_origin(entry.value)
            except OriginError:
                # Stored before a stricter rule existed: never matches (fails closed), and
                # the rest of the policy still loads.
                self.invalid.append(entry.value)
                continue
            expiry = entry.expires_at
            if spec.kind is OriginKind.ANY:
                # The first "*" sets the expiry; seeding with 0.0 would keep an entry that
                # expired before 1970 (or at 0.0 in tests) alive until 0.0.
                self.any = expiry if self.any is False else _later(self.any, expiry)
            elif spec.kind is OriginKind.EXACT:
                self._store(self._exact, spec.value, expiry)
            elif spec.kind is OriginKind.SUBDOMAIN_WILDCARD:
                port = "" if spec.port is None else str(spec.port)
                self._store(self._suffixes, (spec.scheme, spec.host, port), expiry)
            else:
                self._store(self._any_port, (spec.scheme, spec.host), expiry)

    @classmethod
    def union(cls, members: Iterable[OriginSet]) -> OriginSet:
        """The set of every entry of *members*, merged from their tables (nothing is parsed
        again): what one set of all their entries would be."""
        merged = cls(())
        for member in members:
            if member.any is not False:
                merged.any = member.any if merged.any is False else _later(merged.any,
                                                                           member.any)
            for mine, table in zip(merged._tables(), member._tables(), strict=True):
                theirs = _flat(table) if isinstance(table, _Overlay) else table
                both = {key: mine[key] for key in theirs.keys() & mine.keys()}
                mine.update(theirs)
                for key, expiry in both.items():
                    mine[key] = _later(expiry, theirs[key])
            merged.invalid.extend(member.invalid)
            merged.expiring = merged.expiring or member.expiring
        return merged

    @staticmethod
    def _store(table: dict[Any, float | None], key: object, expiry: float | None) -> None:
        table[key] = _later(table[key], expiry) if key in table else expiry

    def __len__(self) -> int:
        return len(self._exact) + len(self._suffixes) + len(self._any_port)

    def allows(self, origin: str, now: float | None = None) -> bool:
        """Whether *origin* (the header exactly as sent) is on this list."""
        exact = self._exact
        if origin in exact:
            expiry = exact[origin]
            if _live(expiry, now):
                return True
        if self._any_port and self._allows_any_port(origin, now):
            return True
        if self._suffixes:
            match = _REQUEST_ORIGIN.fullmatch(origin)
            if match is not None and len(match.group(2)) <= MAX_HOST_LENGTH:
                scheme, host, port = match.group(1), match.group(2), match.group(3) or ""
                suffixes = self._suffixes
                dot = host.find(".")
                while dot != -1:
                    key = (scheme, host[dot + 1:], port)
                    if key in suffixes and _live(suffixes[key], now):
                        return True
                    dot = host.find(".", dot + 1)
        return False

    def _allows_any_port(self, origin: str, now: float | None) -> bool:
        scheme, separator, authority = origin.partition("://")
        if not separator:
            return False
        host, colon, port = authority.rpartition(":")
        if not colon or host.endswith("[") or authority.endswith("]"):
            host = authority
        elif not (port.isascii() and port.isdigit() and len(port) <= 5):
            return False
        key = (scheme, host)
        return key in self._any_port and _live(self._any_port[key], now)

    def allows_any(self, now: float | None = None) -> bool:
        return self.any is not False and _live(self.any, now)

    def contents(self) -> tuple[float | None | bool, dict[Any, float | None],
                                dict[Any, float | None], dict[Any, float | None]]:
        """What the set matches, as plain values: ``any`` and its three tables (exact
        origins, subdomain wildcards, any-port hosts), each key with its expiry."""
        return (self.any, _flat(self._exact), _flat(self._suffixes), _flat(self._any_port))

    def _tables(self) -> tuple[dict[Any, float | None], ...]:
        return (self._exact, self._suffixes, self._any_port)


# An expiry no instant reaches: in an overlay (see _Overlay) it hides a key of the base.
_GONE = float("-inf")
# An overlay grows by the keys each change touches; past this share of its base it is
# folded into a new flat table (one copy, once per that many changes).
OVERLAY_SHARE = 32
OVERLAY_MIN = 1024


class _Overlay(dict[Any, "float | None"]):
    """A table that is a small dict of changed keys over a large shared one, so a union
    of every tenant's origins is updated without copying it. A key removed from the base
    is held here with the expiry ``_GONE``, which never matches."""

    __slots__ = ("base",)

    def __init__(self, top: dict[Any, float | None], base: dict[Any, float | None]) -> None:
        super().__init__(top)
        self.base = base

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self.base

    def __getitem__(self, key: Any) -> float | None:
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        return self.base[key]

    def __len__(self) -> int:
        return len(_flat(self))

    def __bool__(self) -> bool:
        return bool(self.base) or dict.__len__(self) > 0


def _flat(table: dict[Any, float | None]) -> dict[Any, float | None]:
    if not isinstance(table, _Overlay):
        return dict(table)
    flat = dict(table.base)
    for key, expiry in dict.items(table):
        if expiry == _GONE:
            flat.pop(key, None)
        else:
            flat[key] = expiry
    return flat


def _changed_keys(old: OriginSet | None, new: OriginSet | None) -> list[set[Any]]:
    """Per table, the keys whose expiry differs between two versions of one set."""
    keys: list[set[Any]] = []
    for position in range(3):
        before = old._tables()[position] if old is not None else {}
        after = new._tables()[position] if new is not None else {}
        changed = {key for key in before if key not in after or after[key] != before[key]}
        changed.update(key for key in after if key not in before)
        keys.append(changed)
    return keys


def _union_after(union: OriginSet, changes: dict[str, tuple[OriginSet | None, OriginSet | None]],
                 members: dict[str, OriginSet]) -> OriginSet:
    """*union* (every set of *members* before *changes*, tenant by tenant old and new) made
    the union of *members*: only the keys the changes touch are looked up again in every
    member, and the result shares *union*'s tables under an overlay."""
    touched: list[set[Any]] = [set(), set(), set()]
    for old, new in changes.values():
        for position, keys in enumerate(_changed_keys(old, new)):
            touched[position] |= keys
    fresh = OriginSet(())
    tables: list[dict[Any, float | None]] = []
    for position, keys in enumerate(touched):
        table = union._tables()[position]
        base = table.base if isinstance(table, _Overlay) else table
        top = dict(dict.items(table)) if isinstance(table, _Overlay) else {}
        for key in keys:
            expiry: float | None | bool = False
            for member in members.values():
                own = member._tables()[position]
                if key in own:
                    value = own[key]
                    expiry = value if expiry is False else _later(expiry, value)
            if expiry is False:
                if key in base:
                    top[key] = _GONE
                else:
                    top.pop(key, None)
            else:
                top[key] = expiry
        if len(top) > max(OVERLAY_MIN, len(base) // OVERLAY_SHARE):
            tables.append(_flat(_Overlay(top, base)))
        else:
            tables.append(_Overlay(top, base) if top else base)
    fresh._exact, fresh._suffixes, fresh._any_port = tables
    any_expiry: float | None | bool = False
    for member in members.values():
        if member.any is not False:
            any_expiry = member.any if any_expiry is False else _later(any_expiry, member.any)
    fresh.any = any_expiry
    fresh.expiring = any(member.expiring for member in members.values())
    fresh.invalid = [value for member in members.values() for value in member.invalid]
    return fresh


def _live(expiry: float | None, now: float | None) -> bool:
    # "now is None", not "not now": 0.0 is a real instant, not "use the clock".
    return expiry is None or (time.time() if now is None else now) < expiry


def _later(a: float | None, b: float | None) -> float | None:
    """The later of two expiries, where None means never."""
    if a is None or b is None:
        return None
    return max(a, b)


@dataclass(frozen=True, slots=True)
class Allowlist:
    """The origins that apply to one request: the rule's shared ones, and its tenant's."""

    shared: OriginSet
    tenant_origins: OriginSet | None = None
    tenant: str | None = None
    unknown_tenant: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    """A rule ready for the request path; header values are computed once, here."""

    rule_id: int | None
    pattern: PathPattern
    mode: str
    origins: OriginSet  # shared: every tenant's requests may use them
    methods: frozenset[str]
    any_header: bool
    allow_headers: frozenset[str]
    supports_credentials: bool
    allow_private_network: bool
    # Precomputed response header values.
    allow_methods_value: str
    max_age_value: str | None
    expose_headers_value: str | None
    tenant_source: str = NO_TENANT_SOURCE
    tenant_key: str = ""
    unknown_tenant: str = REFUSE_UNKNOWN_TENANT
    tenant_origins: dict[str, OriginSet] = field(default_factory=dict)
    allowlist: Allowlist = field(init=False, repr=False)
    # Decisions that depend only on this rule and a few request values, kept by decide() so
    # the common cases build no new object; bounded (see decision.MEMO_LIMIT).
    memo: dict[object, Decision] = field(default_factory=dict, repr=False, compare=False)

    tenant_allowlists: dict[str, Allowlist] = field(init=False, repr=False)
    # Every tenant's origins in one set, on a rule that reads the tenant from a header: a
    # preflight carries the header's name, never its value (see preflight_allowlist).
    any_tenant_origins: OriginSet | None = None
    preflight_allowlist: Allowlist = field(init=False, repr=False)
    # The draft of an enforced rule, compiled like it: decide() answers with this rule and
    # evaluates the draft only to record what it would refuse that this rule allows.
    draft: CompiledRule | None = None

    def __post_init__(self) -> None:
        # Allowlists are built once here, not per request: the rule's own, one per tenant
        # that has origins on a tenant-selecting rule, and the one preflights are decided
        # against (on a header-selected rule, the shared origins and every tenant's).
        allowlist = Allowlist(self.origins)
        object.__setattr__(self, "allowlist", allowlist)
        object.__setattr__(self, "tenant_allowlists", {
            tenant: Allowlist(self.origins, origins, tenant)
            for tenant, origins in self.tenant_origins.items()
        })
        object.__setattr__(self, "preflight_allowlist", allowlist
                           if self.any_tenant_origins is None
                           else Allowlist(self.origins, self.any_tenant_origins))

    def with_tenant_origins(self, changed: Mapping[str, Iterable[OriginEntry]]) -> CompiledRule:
        """This rule with the allowlists of the tenants in *changed* built again from their
        entries (no entries: the tenant has no allowlist here any more). Everything else is
        shared with this rule, copied on write: a change to one tenant's origins costs the
        size of that tenant's allowlist, not of the rule's."""
        tenant_origins = dict(self.tenant_origins)
        allowlists = dict(self.tenant_allowlists)
        sets: dict[str, tuple[OriginSet | None, OriginSet | None]] = {}
        for tenant, entries in changed.items():
            listed = list(entries)
            old = tenant_origins.pop(tenant, None)
            allowlists.pop(tenant, None)
            new = None
            if listed:
                new = tenant_origins[tenant] = OriginSet(listed)
                allowlists[tenant] = Allowlist(self.origins, new, tenant)
            sets[tenant] = (old, new)
        union = self.any_tenant_origins
        if union is not None:
            union = _union_after(union, sets, tenant_origins)
        rule = object.__new__(CompiledRule)
        for name in _COMPILED_FIELDS:
            object.__setattr__(rule, name, getattr(self, name))
        object.__setattr__(rule, "tenant_origins", tenant_origins)
        object.__setattr__(rule, "tenant_allowlists", allowlists)
        object.__setattr__(rule, "any_tenant_origins", union)
        object.__setattr__(rule, "preflight_allowlist", self.allowlist if union is None
                           else Allowlist(self.origins, union))
        object.__setattr__(rule, "memo", {})  # its decisions name the rule they came from
        return rule

    @property
    def selects_tenant(self) -> bool:
        return self.tenant_source != NO_TENANT_SOURCE

    @property
    def path(self) -> str:
        return self.pattern.text

    @property
    def report_only(self) -> bool:
        return self.mode == REPORT_ONLY


_COMPILED_FIELDS = tuple(f.name for f in fields(CompiledRule))


def compile_rule(spec: RuleSpec) -> CompiledRule:
    if spec.draft is None or spec.mode != ENFORCE:
        return _compile_rule(spec)  # a rule that does not answer has no draft to try
    # The draft governs the rule's own paths, in the rule's mode and tenant selection.
    draft = _compile_rule(replace(spec.draft, path=spec.path, mode=ENFORCE,
                                  rule_id=spec.rule_id, tenant_source=spec.tenant_source,
                                  tenant_key=spec.tenant_key,
                                  unknown_tenant=spec.unknown_tenant, draft=None))
    return _compile_rule(spec, draft)


def _compile_rule(spec: RuleSpec, draft: CompiledRule | None = None) -> CompiledRule:
    headers = {h.lower() for h in spec.allow_headers}
    any_header = "*" in headers
    headers.discard("*")
    shared: list[OriginEntry] = []
    per_tenant: dict[str, list[OriginEntry]] = {}
    for entry in effective_origins(spec):
        if entry.tenant is None:
            shared.append(entry)
        else:
            per_tenant.setdefault(entry.tenant, []).append(entry)
    tenant_sets = {tenant: OriginSet(entries) for tenant, entries in per_tenant.items()} \
        if spec.tenant_source != NO_TENANT_SOURCE else {}
    return CompiledRule(
        rule_id=spec.rule_id,
        pattern=parse_pattern(spec.path),
        mode=spec.mode,
        origins=OriginSet(shared),
        tenant_source=spec.tenant_source,
        tenant_key=spec.tenant_key.lower() if spec.tenant_source == TENANT_FROM_SUBDOMAIN
        else spec.tenant_key,
        unknown_tenant=spec.unknown_tenant,
        tenant_origins=tenant_sets,
        any_tenant_origins=OriginSet.union(tenant_sets.values())
        if spec.tenant_source == TENANT_FROM_HEADER else None,
        methods=frozenset(spec.methods),
        any_header=any_header,
        allow_headers=frozenset(headers),
        supports_credentials=spec.supports_credentials,
        allow_private_network=spec.allow_private_network,
        allow_methods_value=", ".join(spec.methods),
        max_age_value=None if spec.max_age is None else str(spec.max_age),
        expose_headers_value=", ".join(spec.expose_headers) if spec.expose_headers else None,
        draft=draft,
    )


@dataclass(frozen=True, slots=True)
class Route:
    """Which rules a path meets: ``rule``, the enforcing rule that answers it (None: the
    engine leaves the response alone), and ``shadows``, the report-only rules more specific
    than that one, most specific first. A report-only rule only watches: it steps aside for
    the next rule that matches, as ``Content-Security-Policy-Report-Only`` does."""

    rule: CompiledRule | None
    shadows: tuple[CompiledRule, ...] = ()
    # Whether decide() has more to do than answer with the rule: report-only rules watch
    # the path, or the rule carries a draft (one test on the request path for both).
    watched: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "watched", bool(self.shadows) or (
            self.rule is not None and self.rule.draft is not None))


NO_ROUTE = Route(None)


@dataclass(frozen=True, slots=True)
class PolicySnapshot:
    """Every enabled rule of one policy version, indexed for the request path."""

    version: int
    rules: tuple[CompiledRule, ...]
    tenants: frozenset[str] = frozenset()
    loaded_at: float = field(default_factory=time.time)
    _index: PatternIndex = field(init=False, repr=False, compare=False)
    _paths: dict[str, Route] = field(init=False, repr=False, compare=False)
    # One Route per distinct (rule, shadows), shared by every path that meets them.
    _routes: dict[tuple[CompiledRule | None, tuple[CompiledRule, ...]], Route] = field(
        init=False, repr=False, compare=False)
    _watched: bool = field(init=False, repr=False, compare=False)
    # Decisions the middleware may give again to a request with the same path, origin,
    # method and credentials (see decision.keep_answer): allowed ones apart from the rest, so
    # a flood of refused origins cannot crowd out the answers to the allowed ones.
    granted: dict[AnswerKey, Decision] = field(init=False, repr=False, compare=False)
    refused: dict[AnswerKey, Decision] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = PatternIndex([(rule.pattern, rule) for rule in self.rules])
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_paths", {})
        object.__setattr__(self, "granted", {})
        object.__setattr__(self, "refused", {})
        object.__setattr__(self, "_routes", {(None, ()): NO_ROUTE})
        # Without report-only rules the most specific match is all a path needs.
        object.__setattr__(self, "_watched", any(rule.report_only for rule in self.rules))

    def route_for(self, path: str) -> Route:
        """The enforcing rule answering *path* and the report-only rules watching it.

        Answers are remembered for up to PATH_MEMO_LIMIT distinct paths; clients choose paths,
        so past that the index answers each time (it is fast, only not free).
        """
        route = self._paths.get(path)  # one dictionary lookup on the hot path
        if route is None:
            route = self._route(path)
            if len(self._paths) < PATH_MEMO_LIMIT:
                self._paths[path] = route
        return route

    def _route(self, path: str) -> Route:
        if not self._watched:
            found = self._index.lookup(path)
            matched: list[object] = [] if found is None else [found]
        else:
            matched = self._index.lookup_all(path)
        shadows: list[CompiledRule] = []
        answering: CompiledRule | None = None
        for rule in matched:
            assert isinstance(rule, CompiledRule)  # the index holds this snapshot's rules
            if not rule.report_only:
                answering = rule
                break
            shadows.append(rule)
        key = (answering, tuple(shadows))
        route = self._routes.get(key)
        if route is None:
            route = self._routes[key] = Route(answering, key[1])
        return route

    def rule_for(self, path: str) -> CompiledRule | None:
        """The enforcing rule that answers *path*, or None (a report-only rule never does)."""
        return self.route_for(path).rule

    def answering_rule(self, path: str, *, aside: int | None = None) -> CompiledRule | None:
        """The enforcing rule that answers *path* while the rule whose id is *aside* steps
        aside (as it does in report-only), whatever its mode in this snapshot. For the
        dashboard, off the request path."""
        for rule in self._index.lookup_all(path):
            assert isinstance(rule, CompiledRule)  # the index holds this snapshot's rules
            if not rule.report_only and (aside is None or rule.rule_id != aside):
                return rule
        return None

    @property
    def origin_count(self) -> int:
        return sum(
            _set_size(rule.origins) + sum(_set_size(o) for o in rule.tenant_origins.values())
            for rule in self.rules
        )


def _set_size(origins: OriginSet) -> int:
    return len(origins) + (1 if origins.any is not False else 0)


def compile_policy(
    version: int, specs: Iterable[RuleSpec], tenants: Iterable[str] = ()
) -> PolicySnapshot:
    """Compile the enabled rules of *specs*; rules in mode ``off`` are left out.

    *tenants* are the known tenant names: a tenant-selecting rule treats any other name as
    an unknown tenant.
    """
    return PolicySnapshot(
        version=version,
        rules=tuple(compile_rule(spec) for spec in specs if spec.mode != OFF),
        tenants=frozenset(tenants),
    )
