"""The one place where CORS decisions are made.

:func:`decide` is a pure function of (snapshot, method, path, request headers). The Flask
hooks, the request log, the simulator and the CLI all call it; nothing else decides. It never
raises on hostile input: anything it cannot make sense of is a refusal with a reason code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from .snapshot import Allowlist, CompiledRule, PolicySnapshot
from .text import printable
from .vocabulary import (
    NO_TENANT_SOURCE,
    REFUSE_UNKNOWN_TENANT,
    TENANT_FROM_HEADER,
    TENANT_FROM_SUBDOMAIN,
    TENANT_FROM_VIEW_ARG,
)


class RequestHeaders(Protocol):
    """What :func:`decide` reads of the request headers: ``get(name)``, case-insensitive,
    None when absent (werkzeug's ``Headers``, or the engine's view of the WSGI environ)."""

    def get(self, key: str, /) -> str | None: ...


class RouteArgs(Protocol):
    """The URL variables of the Flask route: ``get(name)``, None when absent."""

    def get(self, key: str, /) -> object: ...


ALLOWED = "allowed"
NO_ORIGIN = "no-origin"
NO_RULE = "no-rule"
POLICY_UNAVAILABLE = "policy-unavailable"
ORIGIN_NOT_ALLOWED = "origin-not-allowed"
METHOD_NOT_ALLOWED = "method-not-allowed"
HEADER_NOT_ALLOWED = "header-not-allowed"
CREDENTIALS_NOT_ALLOWED = "credentials-not-allowed"
PRIVATE_NETWORK_NOT_ALLOWED = "private-network-not-allowed"
UNKNOWN_TENANT = "unknown-tenant"

REFUSAL_REASONS = (
    ORIGIN_NOT_ALLOWED,
    METHOD_NOT_ALLOWED,
    HEADER_NOT_ALLOWED,
    CREDENTIALS_NOT_ALLOWED,
    PRIVATE_NETWORK_NOT_ALLOWED,
    UNKNOWN_TENANT,
    NO_RULE,
    POLICY_UNAVAILABLE,
)

EXPLANATIONS = {
    ALLOWED: "the request is allowed",
    NO_ORIGIN: "the request has no Origin header, so it is not a CORS request",
    NO_RULE: "no rule governs this path, so the engine sends no CORS headers",
    POLICY_UNAVAILABLE: "no policy has been loaded yet, so cross-origin requests are refused",
    ORIGIN_NOT_ALLOWED: "the origin is not on the rule's allowlist",
    METHOD_NOT_ALLOWED: "the method is not in the rule's methods",
    HEADER_NOT_ALLOWED: "a requested header is not in the rule's allow_headers",
    CREDENTIALS_NOT_ALLOWED: "the request carries credentials but the rule does not support them",
    PRIVATE_NETWORK_NOT_ALLOWED: "the preflight asks for private network access, which the "
    "rule does not allow",
    UNKNOWN_TENANT: "the rule selects an allowlist per tenant and this request's tenant is "
    "not known",
}

VARY_ACTUAL = "Origin"
VARY_PREFLIGHT = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"

# At most this many remembered decisions per rule (keys include request values).
MEMO_LIMIT = 4096

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")

Headers = tuple[tuple[str, str], ...]
# What a request's decision can depend on, once its rule neither selects a tenant nor has
# origins that expire and no report-only rule or draft watches its path: (path, Origin,
# method, whether it carries a Cookie), and for OPTIONS the values of
# Access-Control-Request-Method, -Headers and -Private-Network.
AnswerKey = tuple[str | None | bool, ...]
# At most this many kept answers per snapshot, allowed and refused each (clients choose
# paths and origins).
ANSWER_LIMIT = 4096
# The most characters of path, Origin and request headers a kept answer's key may hold.
KEPT_KEY_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class Decision:
    """What the engine does with one request.

    ``allowed`` says whether CORS headers are granted; ``reason`` is ``allowed`` or the
    refusal code; ``headers`` are exactly the CORS headers to send, ``Vary`` included.
    ``rule`` is the enforcing rule that answered, or None.

    ``shadows`` are the findings of report-only rules that watch the path: for each one more
    specific than ``rule`` that would have refused the request, what it would have decided
    (``report_only`` true, ``rule`` the report-only rule). They change nothing that is sent;
    the request log records them beside the decision itself.

    ``draft`` is, when ``rule`` carries a draft, allows the request and its draft would
    refuse it, what the draft would decide (``rule`` the compiled draft). It changes nothing
    that is sent either; the request log records it with mode ``draft``.
    """

    allowed: bool
    reason: str
    rule: CompiledRule | None = None
    preflight: bool = False
    headers: Headers = ()
    detail: str = ""
    report_only: bool = False
    tenant: str | None = None
    shadows: tuple[Decision, ...] = ()
    draft: Decision | None = None

    @property
    def governed(self) -> bool:
        """Whether a rule governs the path (then ``Vary: Origin`` is always sent)."""
        return self.rule is not None

    @property
    def refused(self) -> bool:
        return not self.allowed

    @property
    def recordable(self) -> bool:
        """A refusal (by a report-only rule: one it would have made)."""
        return self.reason not in (ALLOWED, NO_ORIGIN)

    @property
    def status(self) -> int | None:
        """The status of the engine's own answer to a preflight, else None."""
        if not self.preflight:
            return None
        return 204 if self.allowed else 403

    @property
    def explanation(self) -> str:
        text = EXPLANATIONS.get(self.reason, self.reason)
        if self.detail:
            text = f"{text}: {self.detail}"
        return text


NOT_CORS = Decision(allowed=False, reason=NO_ORIGIN)
UNGOVERNED = Decision(allowed=False, reason=NO_RULE)


def decide(
    snapshot: PolicySnapshot | None,
    method: str,
    path: str,
    headers: RequestHeaders,
    *,
    route_args: RouteArgs | None = None,
    now: float | None = None,
) -> Decision:
    """Decide a request.

    *headers* is a case-insensitive mapping such as werkzeug's ``Headers``; *route_args* are
    the URL variables of the Flask route (a tenant-selecting rule may read the tenant there).
    A preflight is an ``OPTIONS`` request with ``Access-Control-Request-Method``. A request
    carrying ``Cookie`` is treated as credentialed (browsers attach cookies cross-origin only
    with ``credentials: 'include'``).
    """
    origin = headers.get("Origin")
    if snapshot is None:
        if origin is None:
            return NOT_CORS
        return Decision(allowed=False, reason=POLICY_UNAVAILABLE, preflight=_is_preflight(
            method, headers))
    route = snapshot.route_for(path)
    rule = route.rule
    if origin is None:
        if rule is None:
            return NOT_CORS
        decision = rule.memo.get(NO_ORIGIN)
        if decision is None:
            decision = rule.memo[NO_ORIGIN] = Decision(
                allowed=False, reason=NO_ORIGIN, rule=rule, headers=(("Vary", VARY_ACTUAL),))
        return decision
    if rule is None:
        decision = UNGOVERNED
    else:
        decision = _decide_rule(snapshot, rule, origin, method, headers, route_args, now)
    if route.watched:  # report-only rules watch the path, or the rule has a draft
        return _with_findings(decision, route.shadows, snapshot, origin, method, headers,
                              route_args, now)
    return decision


def keep_answer(snapshot: PolicySnapshot, key: AnswerKey, decision: Decision) -> None:
    """Keep *decision*, which :func:`decide` gave with *snapshot* and the clock's time to the
    request *key* describes (see :data:`AnswerKey`), when every request with that key gets
    the same decision from *snapshot* for as long as it is served: one whose rule selects no
    tenant and has no expiring origin, on a path no report-only rule or draft watches
    (findings need the request). The middleware looks it up in ``snapshot.granted`` or
    ``snapshot.refused`` before calling :func:`decide`."""
    kept = snapshot.granted if decision.allowed else snapshot.refused
    if len(kept) >= ANSWER_LIMIT:  # full (a flood of new origins): nothing more to check
        return
    path, origin = key[0], key[1]
    assert isinstance(path, str)
    # Kept answers are bounded in number; the path, the Origin and the preflight's headers
    # are the client's to choose, so only keys of ordinary length are kept.
    if sum(len(part) for part in key if isinstance(part, str)) > KEPT_KEY_LIMIT:
        return
    if origin is not None:
        route = snapshot.route_for(path)
        rule = route.rule
        if route.watched or (rule is not None and (rule.tenant_source != NO_TENANT_SOURCE
                                                   or rule.origins.expiring)):
            return
    kept[key] = decision


def _decide_rule(
    snapshot: PolicySnapshot, rule: CompiledRule, origin: str, method: str,
    headers: RequestHeaders, route_args: RouteArgs | None, now: float | None,
) -> Decision:
    if method == "OPTIONS":
        request_method = headers.get("Access-Control-Request-Method")
        if request_method is not None:
            # A preflight never carries the tenant header's value, only its name: it is
            # decided against every tenant's origins; the actual request, for its tenant.
            allowlist = rule.preflight_allowlist
            if rule.tenant_source != NO_TENANT_SOURCE and \
                    rule.tenant_source != TENANT_FROM_HEADER:
                allowlist = _tenant_allowlist(snapshot, rule, headers, route_args)
            return _decide_preflight(rule, allowlist, origin, request_method, headers, now)
    allowlist = rule.allowlist
    if rule.tenant_source != NO_TENANT_SOURCE:
        allowlist = _tenant_allowlist(snapshot, rule, headers, route_args)
    return _decide_actual(rule, allowlist, origin, method, headers, now)


def _with_findings(
    decision: Decision, watching: tuple[CompiledRule, ...], snapshot: PolicySnapshot,
    origin: str, method: str, headers: RequestHeaders, route_args: RouteArgs | None,
    now: float | None,
) -> Decision:
    """*decision*, carrying what the report-only rules *watching* would have refused, and
    what the answering rule's draft would refuse of what the rule allows."""
    findings: tuple[Decision, ...] = ()
    for shadow in watching:
        finding = _decide_rule(snapshot, shadow, origin, method, headers, route_args, now)
        if not finding.allowed:
            findings += (finding,)
    draft: Decision | None = None
    rule = decision.rule
    if decision.allowed and rule is not None and rule.draft is not None:
        draft = _decide_rule(snapshot, rule.draft, origin, method, headers, route_args, now)
        if draft.allowed:
            draft = None
    if not findings and draft is None:
        return decision
    # Built directly: dataclasses.replace() costs several times more on this path.
    return Decision(allowed=decision.allowed, reason=decision.reason, rule=decision.rule,
                    preflight=decision.preflight, headers=decision.headers,
                    detail=decision.detail, report_only=decision.report_only,
                    tenant=decision.tenant, shadows=findings, draft=draft)


def _tenant_allowlist(
    snapshot: PolicySnapshot,
    rule: CompiledRule,
    headers: RequestHeaders,
    route_args: RouteArgs | None,
) -> Allowlist:
    tenant = tenant_of(rule, headers, route_args)
    if tenant is not None and tenant in snapshot.tenants:
        allowlist = rule.tenant_allowlists.get(tenant)
        if allowlist is not None:  # built at compile time for tenants with origins here
            return allowlist
        return Allowlist(rule.origins, None, tenant)
    # An unknown tenant gets the shared allowlist only, or nothing ("refuse").
    return Allowlist(rule.origins, None, tenant, unknown_tenant=True)


def tenant_of(
    rule: CompiledRule, headers: RequestHeaders, route_args: RouteArgs | None
) -> str | None:
    """The tenant a request names, where the rule says to look; None when it names none."""
    source = rule.tenant_source
    if source == TENANT_FROM_VIEW_ARG:
        value = route_args.get(rule.tenant_key) if route_args else None
        return value if isinstance(value, str) and value else None
    if source == TENANT_FROM_HEADER:
        return headers.get(rule.tenant_key) or None
    if source == TENANT_FROM_SUBDOMAIN:
        host = headers.get("Host") or ""
        if host.startswith("["):
            return None
        host = host.lower().rsplit(":", 1)[0]
        suffix = "." + rule.tenant_key
        if host.endswith(suffix) and len(host) > len(suffix):
            return host[: -len(suffix)]
        return None
    return None


def _is_preflight(method: str, headers: RequestHeaders) -> bool:
    return method == "OPTIONS" and headers.get("Access-Control-Request-Method") is not None


def _origin_grant(
    rule: CompiledRule, allowlist: Allowlist, origin: str, now: float | None
) -> str | None:
    """The ACAO value the rule grants *origin*, or None."""
    if allowlist.unknown_tenant and rule.unknown_tenant == REFUSE_UNKNOWN_TENANT:
        return None
    if allowlist.tenant_origins is not None and allowlist.tenant_origins.allows(origin, now):
        return origin
    if allowlist.shared.allows(origin, now):
        return origin
    if not rule.supports_credentials and (
        allowlist.shared.allows_any(now)
        or (allowlist.tenant_origins is not None and allowlist.tenant_origins.allows_any(now))
    ):
        return "*"
    return None


def _origin_refusal(rule: CompiledRule, allowlist: Allowlist) -> tuple[str, str]:
    if allowlist.unknown_tenant and rule.unknown_tenant == REFUSE_UNKNOWN_TENANT:
        return UNKNOWN_TENANT, printable(allowlist.tenant or "(none)", 100)
    return ORIGIN_NOT_ALLOWED, ""


def _decide_actual(
    rule: CompiledRule, allowlist: Allowlist, origin: str, method: str,
    headers: RequestHeaders, now: float | None,
) -> Decision:
    grant = _origin_grant(rule, allowlist, origin, now)
    credentialed = headers.get("Cookie") is not None
    tenant = allowlist.tenant
    if grant is None:
        reason, detail = _origin_refusal(rule, allowlist)
    elif method not in rule.methods:
        reason, detail = METHOD_NOT_ALLOWED, method
    elif credentialed and not rule.supports_credentials:
        reason, detail = CREDENTIALS_NOT_ALLOWED, ""
    else:
        memo = rule.memo
        key = (grant, tenant)
        decision = memo.get(key)
        if decision is None:
            decision = Decision(allowed=True, reason=ALLOWED, rule=rule, tenant=tenant,
                                headers=_actual_headers(rule, grant),
                                report_only=rule.report_only)
            if len(memo) < MEMO_LIMIT:
                memo[key] = decision
        return decision
    memo = rule.memo
    refusal = (reason, detail, tenant)
    decision = memo.get(refusal)
    if decision is None:
        decision = Decision(allowed=False, reason=reason, rule=rule, detail=detail,
                            tenant=tenant, headers=(("Vary", VARY_ACTUAL),),
                            report_only=rule.report_only)
        if len(memo) < MEMO_LIMIT:
            memo[refusal] = decision
    return decision


def _actual_headers(rule: CompiledRule, grant: str) -> Headers:
    headers = [("Access-Control-Allow-Origin", grant), ("Vary", VARY_ACTUAL)]
    if rule.supports_credentials:
        headers.append(("Access-Control-Allow-Credentials", "true"))
    if rule.expose_headers_value is not None:
        headers.append(("Access-Control-Expose-Headers", rule.expose_headers_value))
    return tuple(headers)


def parse_request_headers(value: str | None) -> tuple[list[str], str | None]:
    """Split ``Access-Control-Request-Headers`` into lowercase names.

    Browsers send sorted lowercase names joined by ``,``; hand-written clients may add spaces,
    mixed case and duplicates, which are accepted. Returns the names in order of first
    appearance, and the first entry that is not a valid header name, if any.
    """
    if not value:
        return [], None
    names: list[str] = []
    for raw in value.split(","):
        name = raw.strip(" \t").lower()
        if not name:
            continue
        if not _TOKEN.fullmatch(name):
            return names, raw.strip(" \t")
        if name not in names:
            names.append(name)
    return names, None


def _decide_preflight(
    rule: CompiledRule,
    allowlist: Allowlist,
    origin: str,
    request_method: str,
    headers: RequestHeaders,
    now: float | None,
) -> Decision:
    grant = _origin_grant(rule, allowlist, origin, now)
    tenant = allowlist.tenant
    requested, malformed = parse_request_headers(headers.get("Access-Control-Request-Headers"))
    private_network = headers.get("Access-Control-Request-Private-Network") == "true"
    reason, detail = ALLOWED, ""
    if grant is None:
        reason, detail = _origin_refusal(rule, allowlist)
    elif request_method not in rule.methods:
        reason, detail = METHOD_NOT_ALLOWED, request_method
    elif malformed is not None:
        reason, detail = HEADER_NOT_ALLOWED, malformed
    elif not rule.any_header and (
        missing := next((h for h in requested if h not in rule.allow_headers), None)
    ):
        reason, detail = HEADER_NOT_ALLOWED, missing
    elif headers.get("Cookie") is not None and not rule.supports_credentials:
        reason = CREDENTIALS_NOT_ALLOWED
    elif private_network and not rule.allow_private_network:
        reason = PRIVATE_NETWORK_NOT_ALLOWED

    if grant is not None and reason == ALLOWED:
        return Decision(allowed=True, reason=ALLOWED, rule=rule, preflight=True, tenant=tenant,
                        headers=_preflight_headers(rule, grant, rule.allow_methods_value,
                                                   requested, private_network),
                        report_only=rule.report_only)
    return Decision(allowed=False, reason=reason, rule=rule, preflight=True, detail=detail,
                    tenant=tenant, headers=(("Vary", VARY_PREFLIGHT),),
                    report_only=rule.report_only)


def _preflight_headers(
    rule: CompiledRule, grant: str, methods: str, requested: list[str], private_network: bool
) -> Headers:
    headers = [("Access-Control-Allow-Origin", grant)]
    if rule.supports_credentials:
        headers.append(("Access-Control-Allow-Credentials", "true"))
    headers.append(("Access-Control-Allow-Methods", methods))
    if requested:
        headers.append(("Access-Control-Allow-Headers", ", ".join(requested)))
    if rule.max_age_value is not None:
        headers.append(("Access-Control-Max-Age", rule.max_age_value))
    if private_network:
        headers.append(("Access-Control-Allow-Private-Network", "true"))
    headers.append(("Vary", VARY_PREFLIGHT))
    return tuple(headers)


@dataclass(frozen=True, slots=True)
class Failure:
    """One check a request fails: a refusal code of :data:`REFUSAL_REASONS` and its detail."""

    check: str
    detail: str = ""

    @property
    def explanation(self) -> str:
        text = EXPLANATIONS.get(self.check, self.check)
        return f"{text}: {self.detail}" if self.detail else text


def explain(
    snapshot: PolicySnapshot | None,
    method: str,
    path: str,
    headers: RequestHeaders,
    *,
    route_args: RouteArgs | None = None,
    now: float | None = None,
) -> list[Failure]:
    """Every check the request fails, in :func:`decide`'s order; empty when it passes.

    :func:`decide` stops at the first failure, which is all a response needs; a person fixing
    a rule needs them all. The origin check (tenants included) is :func:`decide`'s own answer,
    so the first failure is always the reason :func:`decide` gives; the others are the rule's
    remaining checks, as :func:`decide` applies them.
    """
    decision = decide(snapshot, method, path, headers, route_args=route_args, now=now)
    if decision.reason in (ALLOWED, NO_ORIGIN):
        return []
    rule = decision.rule
    if rule is None:
        return [Failure(decision.reason, decision.detail)]
    failures = []
    if decision.reason in (ORIGIN_NOT_ALLOWED, UNKNOWN_TENANT):
        failures.append(Failure(decision.reason, decision.detail))
    request_method = headers.get("Access-Control-Request-Method") if decision.preflight \
        else method
    if request_method is not None and request_method not in rule.methods:
        failures.append(Failure(METHOD_NOT_ALLOWED, request_method))
    if decision.preflight:
        requested, malformed = parse_request_headers(
            headers.get("Access-Control-Request-Headers"))
        if malformed is not None:
            failures.append(Failure(HEADER_NOT_ALLOWED, malformed))
        if not rule.any_header:
            failures.extend(Failure(HEADER_NOT_ALLOWED, name) for name in requested
                            if name not in rule.allow_headers)
    if headers.get("Cookie") is not None and not rule.supports_credentials:
        failures.append(Failure(CREDENTIALS_NOT_ALLOWED))
    if decision.preflight and not rule.allow_private_network \
            and headers.get("Access-Control-Request-Private-Network") == "true":
        failures.append(Failure(PRIVATE_NETWORK_NOT_ALLOWED))
    return failures
