"""What would the engine do with a request? One home for the dashboard's simulator,
``POST /admin/api/v1/check`` and ``flask cors check``.

:func:`validate_request` checks a question once, for every channel, and says what a browser
would do differently (hints); :func:`answer_request` builds the request a browser would send
(a preflight when the method, a header or private network access needs one), with the tenant
where the server finds it (the app's route, a header value, the Host), and asks the engine's
own :func:`~cors_control.decision.decide` and :func:`~cors_control.decision.explain` (every failing
check); it never decides itself. When one change makes the request pass, the answer carries
it as a :class:`Fix` and :func:`fix_request` applies it as one policy change. The request
log's "allow this origin" uses :func:`one_click_refusal` and :func:`allow_refused_origin`.
The channels only parse their input format and render what they get back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from werkzeug.datastructures import Headers

from cors_control.decision import (
    CREDENTIALS_NOT_ALLOWED,
    ORIGIN_NOT_ALLOWED,
    UNKNOWN_TENANT,
    Decision,
    Failure,
    decide,
    explain,
)
from cors_control.extension import CorsControl
from cors_control.origins import OriginError, OriginKind, parse_origin
from cors_control.snapshot import CompiledRule, PolicySnapshot
from cors_control.text import printable
from cors_control.vocabulary import (
    NO_TENANT_SOURCE,
    TENANT_FROM_HEADER,
    TENANT_FROM_SUBDOMAIN,
    TENANT_FROM_VIEW_ARG,
)

from .access import Actor, owns
from .errors import FieldError, NotFound, ValidationError
from .policy import add_origin, allow_request
from .policy_read import get_rule
from .rules_query import route_coverage
from .tenants import tenant_slug

# Request headers a browser sends without a preflight (content-type only for form and text
# bodies, which a simulation cannot know, so it is treated as safelisted only when asked).
SAFELISTED_HEADERS = frozenset({"accept", "accept-language", "content-language", "range"})
SIMPLE_METHODS = frozenset({"GET", "HEAD", "POST"})
# fetch() upper-cases these names whatever their case and sends every other name as typed,
# so `patch` stays lowercase and is compared as such.
FETCH_UPPERCASED = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"})
FORBIDDEN_METHODS = frozenset({"CONNECT", "TRACE", "TRACK"})
# Request headers a script cannot set (Fetch Standard, "forbidden request-header").
FORBIDDEN_HEADERS = frozenset({
    "accept-charset", "accept-encoding", "access-control-request-headers",
    "access-control-request-method", "connection", "content-length", "cookie", "cookie2",
    "date", "dnt", "expect", "host", "keep-alive", "origin", "referer", "set-cookie", "te",
    "trailer", "transfer-encoding", "upgrade", "via",
})
# Where a tenant-selecting rule reads the tenant, in words.
TENANT_SOURCE_WORDS = {"view-arg": "the URL variable", "header": "the request header",
                       "subdomain": "the subdomain of"}
# The engine's refusals that say the origin itself is not let through.
ORIGIN_REFUSALS = frozenset({ORIGIN_NOT_ALLOWED, UNKNOWN_TENANT})
MAX_TEXT = 2000  # characters of an origin or a path
MAX_METHOD = 100
MAX_HEADER_NAMES = 100
MAX_HOST = 255
# Request headers the simulator sets from its own fields, never from "request headers".
OWN_FIELDS = {"origin": "the origin field", "cookie": "the credentials box",
              "host": "the host field"}
# The checks the one-click fix can pass: allow the origin, let the rule support credentials.
FIXABLE = frozenset({ORIGIN_NOT_ALLOWED, CREDENTIALS_NOT_ALLOWED})
TOKEN_CHARACTERS = "letters, digits and !#$%&'*+-.^_`|~"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


# -- simulating ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Simulation:
    origin: str
    method: str
    path: str
    preflight: bool
    request_headers: Headers
    decision: Decision
    # Every check the request fails (decide() reports only the first), empty when it passes.
    failures: tuple[Failure, ...] = ()

    @property
    def verdict(self) -> str:
        # A report-only rule changes no answer: what it would refuse is in Answer.findings.
        return "allowed" if self.decision.allowed else "refused"


def needs_preflight(method: str, header_names: Iterable[str], *,
                    simple_content_type: bool = False) -> bool:
    safe = SAFELISTED_HEADERS | ({"content-type"} if simple_content_type else set())
    return method not in SIMPLE_METHODS or any(h.lower() not in safe for h in header_names)


def simulate(
    snapshot: PolicySnapshot | None,
    origin: str,
    method: str,
    path: str,
    header_names: Iterable[str] = (),
    *,
    credentials: bool = False,
    preflight: bool | None = None,
    header_values: Sequence[tuple[str, str]] = (),
    host: str | None = None,
    routes: CorsControl | None = None,
    private_network: bool = False,
) -> Simulation:
    """Send the engine the request a browser would: a preflight carries the names of the
    script's headers, the request itself their values; the Host and the URL variables of the
    app's route (matched by *routes*, as the middleware does) reach :func:`decide` too."""
    names = sorted({h.strip().lower() for h in [*header_names, *(n for n, _ in header_values)]
                    if h.strip()})
    method = method.strip()
    request_headers = Headers({"Origin": origin})
    if host:
        request_headers["Host"] = host
    if credentials:
        request_headers["Cookie"] = "session=simulated"
    is_preflight = preflight if preflight is not None else (
        private_network or needs_preflight(method, names))
    if is_preflight:
        request_headers["Access-Control-Request-Method"] = method
        if names:
            request_headers["Access-Control-Request-Headers"] = ",".join(names)
        if private_network:
            request_headers["Access-Control-Request-Private-Network"] = "true"
    else:
        for name, value in header_values:
            request_headers.add(name, value)
    sent_method = "OPTIONS" if is_preflight else method
    route_args = routes.route_args(path, method=sent_method, host=host) if routes else None
    decision = decide(snapshot, sent_method, path, request_headers, route_args=route_args)
    failures = explain(snapshot, sent_method, path, request_headers, route_args=route_args)
    return Simulation(origin, method, path, is_preflight, request_headers, decision,
                      tuple(failures))


# -- who sees the answer -------------------------------------------------------------------


def visible_rule(decision: Decision, actor: Actor | None) -> CompiledRule | None:
    """The rule that decided, if *actor* may see it: a tenant role sees its tenant's rules
    and the rules that select tenants, never another tenant's rule or the platform's."""
    rule = decision.rule
    if rule is None:
        return None
    if rule.rule_id is None:
        return None if actor is not None and actor.scoped else rule
    try:
        get_rule(rule.rule_id, actor)
    except NotFound:
        return None
    return rule


def visible_findings(decision: Decision, actor: Actor | None) -> tuple[Decision, ...]:
    """What the report-only rules watching the path would have refused, as far as *actor*
    may see those rules."""
    return tuple(finding for finding in decision.shadows
                 if visible_rule(finding, actor) is not None)


def visible_to(decision: Decision, actor: Actor | None) -> bool:
    """Whether *actor* may see the decision at all: a tenant role learns nothing of a rule
    it cannot see, nor of what the engine does on a path no rule governs."""
    if actor is None or not actor.scoped:
        return True
    return visible_rule(decision, actor) is not None


# -- the question --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimulatedRequest:
    """A question the engine can be asked: valid, and written as a browser would send it."""

    origin: str
    method: str
    path: str
    header_names: tuple[str, ...] = ()
    credentials: bool = False
    preflight: bool | None = None  # None: preflight when the method or a header needs one
    hints: tuple[str, ...] = ()  # what a browser would do differently; never a block
    # Headers the script sets, with their values (a tenant header); the request itself
    # carries them, its preflight only their names.
    request_headers: tuple[tuple[str, str], ...] = ()
    host: str | None = None  # the Host header: a tenant named by the subdomain
    # A page on a public site calling a private address: its preflight asks for access.
    private_network: bool = False


@dataclass(slots=True)
class Validation:
    """What :func:`validate_request` makes of a question: the request to simulate, or the
    field errors that stop it; hints either way."""

    errors: list[FieldError] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    request: SimulatedRequest | None = None

    def add_error(self, field_name: str, message: str) -> None:
        self.errors.append(FieldError(field_name, message))


def validate_request(
    *,
    origin: str,
    method: str,
    path: str,
    header_names: Sequence[str] = (),
    credentials: bool = False,
    preflight: bool | None = None,
    request_headers: Sequence[tuple[str, str]] = (),
    host: str = "",
    private_network: bool = False,
) -> Validation:
    """Check a simulated request once for every channel. Errors name the field (``origin``,
    ``method``, ``path``, ``headers``, ``request_headers``, ``host``); hints say what a
    browser would do differently, and the request is simulated as the browser would send
    it."""
    validation = Validation()
    checked_method = _method(method, validation)
    checked_path = _path(path, validation)
    names = _header_names(header_names, validation)
    values = _header_values(request_headers, validation)
    checked_host = _host(host, validation)
    _origin(origin, validation)
    if validation.errors or checked_method is None or checked_path is None:
        return validation
    # The parser's view of the origin speaks of the simulation, so it comes only with one.
    validation.hints.extend(_origin_hints(origin))
    validation.request = SimulatedRequest(
        origin, checked_method, checked_path, tuple(names), credentials, preflight,
        tuple(validation.hints), tuple(values), checked_host, private_network)
    return validation


def parse_header_line(text: str) -> tuple[str, str] | None:
    """``X-Tenant=acme`` or ``X-Tenant: acme`` as (name, value); None when it is neither."""
    separator = min((i for i in (text.find("="), text.find(":")) if i > 0), default=-1)
    if separator < 0:
        return None
    return text[:separator].strip(), text[separator + 1:].strip()


def _header_values(headers: Sequence[tuple[str, str]],
                   validation: Validation) -> list[tuple[str, str]]:
    if len(headers) > MAX_HEADER_NAMES:
        validation.add_error("request_headers", f"at most {MAX_HEADER_NAMES} request headers")
        return []
    checked = []
    for name, value in headers:
        lower = name.lower()
        if not _TOKEN.fullmatch(name):
            validation.add_error("request_headers", f'"{printable(name, 100)}" is not a header '
                                 f"name: a header name is one word of {TOKEN_CHARACTERS}, "
                                 "such as X-Tenant")
        elif lower in OWN_FIELDS or lower.startswith("access-control-"):
            where = OWN_FIELDS.get(lower, "the method and header names (the simulator "
                                          "writes the preflight's headers)")
            validation.add_error("request_headers", f"{name} is set by {where}; leave it out "
                                                    "of the request headers")
        elif any(ch in value for ch in "\r\n\0") or len(value) > MAX_TEXT:
            validation.add_error("request_headers", f"the value of {name} must be one line "
                                                    f"of at most {MAX_TEXT} characters")
        else:
            checked.append((name, value))
    return checked


def _host(host: str, validation: Validation) -> str | None:
    host = host.strip()
    if not host:
        return None
    if len(host) > MAX_HOST or any(ch.isspace() or ch in "/?#@" for ch in host):
        validation.add_error("host", "a host is a name such as acme.api.example.com, "
                                     "with an optional :port")
        return None
    return host


def _origin(origin: str, validation: Validation) -> None:
    if not origin:
        validation.add_error(
            "origin", "enter the Origin header to test, such as https://app.example.com")
    elif any(ch in origin for ch in "\r\n"):
        validation.add_error("origin", "no request can carry a line break in its Origin header")
    elif len(origin) > MAX_TEXT:
        validation.add_error("origin", f"an Origin header has at most {MAX_TEXT} characters")


def _method(method: str, validation: Validation) -> str | None:
    if not method:
        validation.add_error("method", "type the method to test, such as PROPFIND")
        return None
    if not _TOKEN.fullmatch(method) or len(method) > MAX_METHOD:
        validation.add_error("method", f"a method is one word of {TOKEN_CHARACTERS}, "
                                       "such as PROPFIND")
        return None
    if method.upper() in FETCH_UPPERCASED and method != method.upper():
        validation.hints.append(f"browsers send {method} as {method.upper()}; "
                                f"simulated as {method.upper()}")
        return method.upper()
    if method.upper() in FORBIDDEN_METHODS:
        validation.hints.append(f"browsers refuse to send {method} requests at all")
    elif method != method.upper():
        validation.hints.append(f"browsers send {method} exactly as typed, and rules compare "
                                "methods case-sensitively")
    return method


def _path(path: str, validation: Validation) -> str | None:
    if path.startswith(("http://", "https://")):
        path = urlsplit(path).path or "/"
        validation.hints.append(f"only the path of the URL decides which rule applies: {path}")
    elif "?" in path or "#" in path:
        path = re.split(r"[?#]", path, maxsplit=1)[0]
        validation.hints.append(f"the query string plays no part in the decision: {path}")
    if not path:
        validation.add_error("path", "enter the path to call, such as /api/orders")
    elif not path.startswith("/"):
        validation.add_error("path", f"a path starts with /, as in /{path[:100]}")
    elif len(path) > MAX_TEXT:
        validation.add_error("path", f"a path has at most {MAX_TEXT} characters")
    else:
        return path
    return None


def _header_names(names: Sequence[str], validation: Validation) -> list[str]:
    if len(names) > MAX_HEADER_NAMES:
        validation.add_error("headers", f"at most {MAX_HEADER_NAMES} header names")
        return []
    for name in names:
        if any(ch in name for ch in "\r\n"):
            validation.add_error("headers", "header names cannot contain line breaks")
        elif not _TOKEN.fullmatch(name):
            validation.add_error("headers", f'"{printable(name, 100)}" is not a header name: '
                                            f"a header name is one word of {TOKEN_CHARACTERS}, "
                                            "such as x-request-id")
    forbidden = sorted({n.lower() for n in names if n.lower() in FORBIDDEN_HEADERS
                        or n.lower().startswith(("proxy-", "sec-"))})
    if forbidden:
        note = " (use the credentials box for cookies)" if "cookie" in forbidden else ""
        validation.hints.append(f"scripts cannot set {', '.join(forbidden)}: a browser never "
                                f"sends them in a preflight{note}")
    return list(names)


def _origin_hints(origin: str) -> list[str]:
    """What the allowlist parser says about the origin: a hint, the simulation goes on."""
    try:
        spec = parse_origin(origin)
    except OriginError as error:
        return [f"this is not an origin a browser sends, so the engine refuses it: {error}"]
    if spec.kind is not OriginKind.EXACT:
        return [f"{origin} is an allowlist pattern, not an origin a browser sends; "
                "test one real origin, such as https://app.example.com"]
    if spec.value != origin:
        return [f"browsers send this origin as {spec.value}; the engine compares the header "
                "exactly as sent"]
    return []


# -- the answer ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """The engine's answer to a simulated request, as far as the actor may see it."""

    request: SimulatedRequest
    policy_version: int | None
    # None when the actor may not see the rule that decided (see :func:`visible_to`): the
    # answer then says only that, never another tenant's rule, reason or headers.
    simulation: Simulation | None = None
    # After an allowed preflight the browser sends the request itself; the engine decides
    # it too, with the headers of the actual response.
    actual: Simulation | None = None
    preflight_reasons: tuple[str, ...] = ()
    hints: tuple[str, ...] = ()
    fix: Fix | None = None  # the whole fix, offered only when it makes the request pass
    fix_refusal: str | None = None  # why no fix is offered for a refused request
    # What report-only rules watching the path would refuse (they change no answer).
    findings: tuple[Decision, ...] = ()

    @property
    def hidden(self) -> bool:
        return self.simulation is None

    @property
    def refused_stage(self) -> Simulation | None:
        """The step the browser stops at: the preflight, or the request itself."""
        for stage in (self.simulation, self.actual):
            if stage is not None and stage.failures:
                return stage
        return None

    @property
    def failures(self) -> tuple[Failure, ...]:
        """Every check the refused step fails, not only the first."""
        stage = self.refused_stage
        return stage.failures if stage is not None else ()


@dataclass(frozen=True, slots=True)
class Fix:
    """One change that makes a refused request pass: allow its origin (for its tenant) and/or
    let the rule support credentials. ``routes`` are the app's routes the rule governs, which
    the change affects too."""

    rule_id: int
    rule_path: str
    origin: str | None
    tenant: str | None
    credentials: bool
    routes: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        parts = []
        if self.origin is not None:
            parts.append(f"allow {self.origin}"
                         + (f" for tenant {self.tenant}" if self.tenant else ""))
        if self.credentials:
            parts.append("let the rule support credentials")
        return " and ".join(parts) + f" on {self.rule_path}"


def answer_request(request: SimulatedRequest, snapshot: PolicySnapshot | None, *,
                   actor: Actor | None = None, routes: CorsControl | None = None) -> Answer:
    """Ask the engine about *request* on *snapshot* (the one this process serves); *routes*
    (the engine attached to the app) matches the path against the app's routes."""
    version = snapshot.version if snapshot is not None else None
    simulation = _simulate(request, snapshot, routes, preflight=request.preflight)
    if not visible_to(simulation.decision, actor):
        return Answer(request, version, hints=request.hints)
    actual = None
    if simulation.preflight and simulation.decision.allowed:
        actual = _simulate(request, snapshot, routes, preflight=False)
    answer = Answer(
        request, version, simulation, actual,
        preflight_reasons=tuple(_preflight_reasons(simulation)),
        hints=request.hints + tuple(_tenant_hints(simulation)),
        findings=visible_findings(simulation.decision, actor),
    )
    stage = answer.refused_stage
    if stage is None:
        return answer
    fix, refusal = _whole_fix(stage, snapshot, actor)
    if fix is not None and routes is not None:
        fix = replace(fix, routes=_governed_routes(fix.rule_id, routes))
    return replace(answer, fix=fix, fix_refusal=refusal)


def _simulate(request: SimulatedRequest, snapshot: PolicySnapshot | None,
              routes: CorsControl | None, *, preflight: bool | None) -> Simulation:
    return simulate(snapshot, request.origin, request.method, request.path,
                    request.header_names, credentials=request.credentials,
                    preflight=preflight, header_values=request.request_headers,
                    host=request.host, routes=routes,
                    private_network=request.private_network)


def _preflight_reasons(simulation: Simulation) -> list[str]:
    if not simulation.preflight:
        return []
    reasons = []
    if simulation.method not in SIMPLE_METHODS:
        reasons.append(f"{simulation.method} is not GET, HEAD or POST")
    unsafe = simulation.request_headers.get("Access-Control-Request-Headers", "")
    names = [name for name in unsafe.split(",") if name and name not in SAFELISTED_HEADERS]
    if names:
        reason = f"{', '.join(names)} {'is not a' if len(names) == 1 else 'are not'} " \
            f"CORS-safelisted request header{'' if len(names) == 1 else 's'}"
        if "content-type" in names:
            reason += " (content-type is safelisted only for form and plain-text bodies, " \
                "so a JSON body is preflighted)"
        reasons.append(reason)
    if simulation.request_headers.get("Access-Control-Request-Private-Network"):
        reasons.append("a public page asks for private network access")
    return reasons


def _tenant_hints(simulation: Simulation) -> list[str]:
    decision = simulation.decision
    rule = decision.rule
    if rule is None or not rule.selects_tenant or decision.tenant is not None:
        return []
    source = TENANT_SOURCE_WORDS.get(rule.tenant_source, rule.tenant_source)
    if simulation.preflight and rule.tenant_source == TENANT_FROM_HEADER:
        return [f"a browser's preflight carries the name of {rule.tenant_key}, never its value, "
                f"so {rule.path} decides it against the origins of every tenant and the shared "
                "ones; the request after it gets the allowlist of the tenant it names"]
    return [f"{rule.path} keeps an allowlist per tenant, named by {source} {rule.tenant_key}; "
            "the simulated request names no tenant, so it gets the shared allowlist at most"]


# -- the fix in one click ------------------------------------------------------------------


def _whole_fix(stage: Simulation, snapshot: PolicySnapshot | None,
               actor: Actor | None) -> tuple[Fix | None, str | None]:
    """(the fix, or why none is offered) for the refused *stage*. A fix is offered only when
    every failing check is one it passes: a partial fix would change the rule and leave the
    request refused."""
    decision = stage.decision
    rule = decision.rule
    if rule is None or rule.rule_id is None or snapshot is None:
        return None, None
    checks = [failure.check for failure in stage.failures]
    others = sorted({check for check in checks if check not in FIXABLE})
    if others:
        return None, (f"it also fails {', '.join(others)}, which no one-click change passes; "
                      "the rule's options decide it")
    origin: str | None = None
    if ORIGIN_NOT_ALLOWED in checks:
        origin = stage.origin
        refusal = one_click_refusal(origin, selects_tenant=rule.selects_tenant,
                                    tenant=decision.tenant) or _tenant_refusal(
                                        decision, snapshot, actor)
        if refusal is not None:
            return None, refusal
    credentials = CREDENTIALS_NOT_ALLOWED in checks
    if credentials:
        refusal = _credentials_refusal(rule, actor)
        if refusal is not None:
            return None, refusal
    tenant = decision.tenant if rule.selects_tenant and origin is not None else None
    return Fix(rule.rule_id, rule.path, origin, tenant, credentials), None


def _tenant_refusal(decision: Decision, snapshot: PolicySnapshot,
                    actor: Actor | None) -> str | None:
    rule, tenant = decision.rule, decision.tenant
    if rule is None or not rule.selects_tenant or tenant is None:
        return None
    if tenant not in snapshot.tenants:
        return f"no tenant {printable(tenant, 100)} exists; create it first"
    if actor is not None and actor.scoped and tenant_slug(actor.tenant_id) != tenant:
        return f"the request is for tenant {printable(tenant, 100)}, not yours"
    return None


def _credentials_refusal(rule: CompiledRule, actor: Actor | None) -> str | None:
    if rule.origins.allows_any(None) or any(
            origins.allows_any(None) for origins in rule.tenant_origins.values()):
        return ("the rule allows every origin with *, which browsers never accept with "
                "credentials; list the origins on the rule instead")
    if actor is not None and rule.rule_id is not None \
            and not owns(actor, get_rule(rule.rule_id, actor)):
        return f"only the owner of {rule.path} can let it support credentials"
    return None


def _governed_routes(rule_id: int, routes: CorsControl) -> tuple[str, ...]:
    """The app's routes *rule_id* governs: what a change to it affects besides this path."""
    coverage = route_coverage(routes.app.url_map.iter_rules(),
                              excluded_prefixes=routes.excluded)
    return tuple(c.route for c in coverage if c.rule is not None and c.rule.id == rule_id)


def fix_request(request: SimulatedRequest, snapshot: PolicySnapshot | None, *, actor: Actor,
                routes: CorsControl | None = None) -> str:
    """Apply the fix :func:`answer_request` offers for *request* now, as one change; the
    offer is worked out again here, so what is applied is what passes the request. Returns
    what was done, in words; raises :class:`ValidationError` when no fix is offered."""
    answer = answer_request(request, snapshot, actor=actor, routes=routes)
    if answer.hidden:
        raise NotFound(f"no rule you can see governs {printable(request.path, 200)}")
    fix = answer.fix
    if fix is None:
        reason = answer.fix_refusal or ("this request is not refused by a rule; nothing to "
                                        "change" if not answer.failures else "no rule to change")
        raise ValidationError([FieldError("", reason)])
    allow_request(fix.rule_id, origin=fix.origin, tenant=fix.tenant,
                  credentials=fix.credentials, actor=actor)
    return f"Done: {fix.summary}."


def one_click_refusal(origin: str, *, selects_tenant: bool = False,
                      tenant: str | None = None) -> str | None:
    """Why *origin*, as a request sent it, cannot be allowed in one click; None if it can.

    Only an origin a browser sends (canonical, exact) is offered: allowing a rewritten form
    would leave the request itself refused. On a rule with an allowlist per tenant, only for
    the tenant the request named: the rule's shared list would open it to every tenant.
    """
    try:
        spec = parse_origin(origin)
    except OriginError as error:
        return f"this origin cannot be put on an allowlist: {error}"
    if spec.kind is not OriginKind.EXACT:
        return "this is an allowlist pattern, not an origin a browser sends"
    if spec.value != origin:
        return (f"browsers send this origin as {spec.value}; this request did not come from "
                "a browser, so allowing it would not change its answer")
    if selects_tenant and not tenant:
        return ("the rule keeps an allowlist per tenant and this request named no tenant; "
                "add the origin for the right tenant on the rule's page")
    return None


def allow_refused_origin(rule_id: int, origin: str, *, actor: Actor,
                         tenant: str | None = None) -> str:
    """Allow *origin* on a rule (for *tenant*, on a rule with an allowlist per tenant), audited
    by the policy service, when :func:`one_click_refusal` does not refuse it. Returns what was
    done, in words; raises :class:`NotFound` or :class:`ValidationError` (which says why)."""
    rule = get_rule(rule_id, actor)
    refusal = one_click_refusal(origin, selects_tenant=rule.tenant_source != NO_TENANT_SOURCE,
                                tenant=tenant)
    if refusal is not None:
        raise ValidationError([FieldError("", refusal)])
    allowed, created = add_origin(rule_id, origin, actor=actor, tenant=tenant or None)
    where = f"{rule.path} for tenant {tenant}" if tenant else rule.path
    if not created:
        return f"{allowed.value} was already allowed on {where}; nothing changed."
    return f"Allowed {allowed.value} on {where}."


def allows_origin_now(snapshot: PolicySnapshot | None, rule: CompiledRule | None, origin: str,
                      *, tenant: str = "") -> bool:
    """Whether *rule*, as *snapshot* serves it now, lets *origin* through for *tenant* ("" when
    the request named none), as :func:`decide` says. A rule the snapshot no longer serves lets
    nothing through."""
    if snapshot is None or rule is None:
        return False
    headers = Headers({"Origin": origin})
    route_args: dict[str, str] | None = None
    if tenant and rule.selects_tenant:
        if rule.tenant_source == TENANT_FROM_HEADER:
            headers[rule.tenant_key] = tenant
        elif rule.tenant_source == TENANT_FROM_SUBDOMAIN:
            headers["Host"] = f"{tenant}.{rule.tenant_key}"
        elif rule.tenant_source == TENANT_FROM_VIEW_ARG:
            route_args = {rule.tenant_key: tenant}
    # A rule's own pattern is a path it governs, and no other rule governs it more closely
    # (equally close rules are refused on save); the check below makes sure of it.
    decision = decide(snapshot, "GET", rule.path, headers, route_args=route_args)
    return decision.rule is rule and decision.reason not in ORIGIN_REFUSALS
