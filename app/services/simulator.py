"""What would the engine do with a request? One home for the dashboard's simulator,
``POST /admin/api/v1/check`` and ``flask cors check``.

:func:`validate_request` checks a question once, for every channel, and says what a browser
would do differently (hints); :func:`answer_request` builds the request a browser would send
(a preflight when the method or a header needs one) and asks the engine's own
:func:`~app.cors.decision.decide`; it never decides itself. From an ``origin-not-allowed``
refusal :func:`one_click_refusal` and :func:`allow_refused_origin` offer and apply the fix
in one click. The channels only parse their input format and render what they get back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from werkzeug.datastructures import Headers

from ..cors.decision import ORIGIN_NOT_ALLOWED, UNKNOWN_TENANT, Decision, decide
from ..cors.origins import OriginError, OriginKind, parse_origin
from ..cors.snapshot import CompiledRule, PolicySnapshot
from ..cors.text import printable
from ..cors.vocabulary import (
    NO_TENANT_SOURCE,
    TENANT_FROM_HEADER,
    TENANT_FROM_SUBDOMAIN,
    TENANT_FROM_VIEW_ARG,
)
from .access import Actor
from .errors import FieldError, NotFound, ValidationError
from .policy import add_origin
from .policy_read import get_rule

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
) -> Simulation:
    names = sorted({h.strip().lower() for h in header_names if h.strip()})
    method = method.strip()
    request_headers = Headers({"Origin": origin})
    if credentials:
        request_headers["Cookie"] = "session=simulated"
    is_preflight = needs_preflight(method, names) if preflight is None else preflight
    if is_preflight:
        request_headers["Access-Control-Request-Method"] = method
        if names:
            request_headers["Access-Control-Request-Headers"] = ",".join(names)
    decision = decide(snapshot, "OPTIONS" if is_preflight else method, path, request_headers)
    return Simulation(origin, method, path, is_preflight, request_headers, decision)


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
) -> Validation:
    """Check a simulated request once for every channel. Errors name the field (``origin``,
    ``method``, ``path``, ``headers``); hints say what a browser would do differently, and
    the request is simulated as the browser would send it."""
    validation = Validation()
    checked_method = _method(method, validation)
    checked_path = _path(path, validation)
    names = _header_names(header_names, validation)
    _origin(origin, validation)
    if validation.errors or checked_method is None or checked_path is None:
        return validation
    # The parser's view of the origin speaks of the simulation, so it comes only with one.
    validation.hints.extend(_origin_hints(origin))
    validation.request = SimulatedRequest(
        origin, checked_method, checked_path, tuple(names), credentials, preflight,
        tuple(validation.hints))
    return validation


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
    allow_offer: str | None = None  # the origin to allow in one click
    allow_refusal: str | None = None  # why the origin cannot be allowed in one click
    # What report-only rules watching the path would refuse (they change no answer).
    findings: tuple[Decision, ...] = ()

    @property
    def hidden(self) -> bool:
        return self.simulation is None


def answer_request(request: SimulatedRequest, snapshot: PolicySnapshot | None, *,
                   actor: Actor | None = None) -> Answer:
    """Ask the engine about *request* on *snapshot* (the one this process serves)."""
    version = snapshot.version if snapshot is not None else None
    simulation = simulate(snapshot, request.origin, request.method, request.path,
                          request.header_names, credentials=request.credentials,
                          preflight=request.preflight)
    if not visible_to(simulation.decision, actor):
        return Answer(request, version, hints=request.hints)
    actual = None
    if simulation.preflight and simulation.decision.allowed:
        actual = simulate(snapshot, request.origin, request.method, request.path,
                          request.header_names, credentials=request.credentials,
                          preflight=False)
    offer, refusal = _one_click(request.origin, simulation.decision)
    return Answer(
        request, version, simulation, actual,
        preflight_reasons=tuple(_preflight_reasons(simulation)),
        hints=request.hints + tuple(_tenant_hints(simulation.decision)),
        allow_offer=offer, allow_refusal=refusal,
        findings=visible_findings(simulation.decision, actor),
    )


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
    return reasons


def _tenant_hints(decision: Decision) -> list[str]:
    rule = decision.rule
    if rule is None or not rule.selects_tenant:
        return []
    source = TENANT_SOURCE_WORDS.get(rule.tenant_source, rule.tenant_source)
    return [f"{rule.path} keeps an allowlist per tenant, named by {source} {rule.tenant_key}; "
            "the simulated request names no tenant, so it gets the shared allowlist at most"]


# -- the fix in one click ------------------------------------------------------------------


def _one_click(origin: str, decision: Decision) -> tuple[str | None, str | None]:
    """(the origin to offer, or why it is not offered) for a refusal of *origin*."""
    rule = decision.rule
    if decision.reason != ORIGIN_NOT_ALLOWED or rule is None or rule.rule_id is None:
        return None, None
    refusal = one_click_refusal(origin, selects_tenant=rule.selects_tenant,
                                tenant=decision.tenant)
    return (origin, None) if refusal is None else (None, refusal)


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
