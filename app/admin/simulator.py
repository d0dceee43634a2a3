"""Simulator: may this origin call METHOD PATH with these headers, with or without credentials?

The answer is the engine's own: :func:`app.services.simulator.simulate` builds the request a
browser would send and asks :func:`~app.cors.decision.decide` about it, on the snapshot this
process serves. The form is a GET form, so a result is a link; htmx swaps only the result.
Origins are simulated exactly as typed, hostile or malformed ones included (the engine
refuses those); the allowlist parser's message is shown beside them as a hint, never as a
block. From an ``origin-not-allowed`` refusal an editor allows the origin in one click.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, flash, redirect, request, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from ..cors import OriginError, OriginKind, get_control, parse_origin
from ..cors.decision import ORIGIN_NOT_ALLOWED, Decision
from ..services.errors import NotFound, ValidationError
from ..services.policy import add_origin, get_rule
from ..services.simulator import (
    SAFELISTED_HEADERS,
    SIMPLE_METHODS,
    Simulation,
    simulate,
    visible_to,
)
from . import bp
from .access import current_actor, has_role, requires
from .rendering import is_htmx, render

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
OTHER_METHOD = "other"
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
TENANT_SOURCES = {"view-arg": "the URL variable", "header": "the request header",
                  "subdomain": "the subdomain of"}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


# -- the question --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Question:
    """The simulator form as submitted (query string or posted fields), kept as typed."""

    origin: str = ""
    method: str = "GET"
    custom_method: str = ""
    path: str = ""
    headers: str = ""
    credentials: bool = False

    @classmethod
    def from_values(cls, values: MultiDict[str, str]) -> Question:
        method = values.get("method", "GET")
        custom = values.get("custom_method", "")
        if method not in METHODS and method != OTHER_METHOD:
            # A link may name any method (?method=PROPFIND): show it as the custom one.
            method, custom = OTHER_METHOD, method
        return cls(
            origin=values.get("origin", ""),
            method=method,
            custom_method=custom,
            path=values.get("path", ""),
            headers=values.get("headers", ""),
            credentials=values.get("credentials") in ("1", "on", "true"),
        )

    @property
    def asked(self) -> bool:
        return bool(self.origin or self.path)

    def as_args(self) -> dict[str, str]:
        """The query string of this question, for links and redirects."""
        args = {"origin": self.origin, "method": self.method, "path": self.path}
        if self.method == OTHER_METHOD:
            args["custom_method"] = self.custom_method
        if self.headers:
            args["headers"] = self.headers
        if self.credentials:
            args["credentials"] = "1"
        return args


@dataclass(slots=True)
class Answer:
    """What the result partial shows: problems with the question, hints, and the answer."""

    question: Question
    errors: dict[str, str] = field(default_factory=dict)
    hints: list[str] = field(default_factory=list)
    simulation: Simulation | None = None
    # After an allowed preflight the browser sends the request itself; the engine decides
    # it too, with the headers of the actual response.
    actual: Simulation | None = None
    preflight_reasons: list[str] = field(default_factory=list)
    policy_version: int | None = None
    # A tenant role asked about a path that no rule it can see governs: the answer says only
    # that, never another tenant's (or the platform's) rule, reason or headers.
    hidden: bool = False
    allow_offer: str | None = None  # the origin to allow in one click
    allow_refusal: str | None = None  # why the origin cannot be allowed in one click
    message: str | None = None
    message_category: str = ""


def answer(question: Question) -> Answer:
    """Check the question, then ask the engine about the request it describes."""
    result = Answer(question)
    if not question.asked:
        return result
    method = _method(question, result)
    path = _path(question, result)
    names = _header_names(question, result)
    if not question.origin:
        result.errors["origin"] = (
            "enter the Origin header to test, such as https://app.example.com")
    elif any(ch in question.origin for ch in "\r\n"):
        result.errors["origin"] = "no request can carry a line break in its Origin header"
    if result.errors or method is None or path is None:
        return result
    result.hints.extend(_origin_hints(question.origin))
    snapshot = get_control(current_app).cache.get()
    result.policy_version = snapshot.version if snapshot is not None else None
    simulation = simulate(snapshot, question.origin, method, path, names,
                          credentials=question.credentials)
    if not visible_to(simulation.decision, current_actor()):
        result.hidden = True
        return result
    result.simulation = simulation
    result.preflight_reasons = _preflight_reasons(method, simulation)
    if simulation.preflight and simulation.decision.allowed:
        result.actual = simulate(snapshot, question.origin, method, path, names,
                                 credentials=question.credentials, preflight=False)
    rule = simulation.decision.rule
    if rule is not None and rule.selects_tenant:
        result.hints.append(
            f"{rule.path} keeps an allowlist per tenant, named by "
            f"{TENANT_SOURCES.get(rule.tenant_source, rule.tenant_source)} {rule.tenant_key}; "
            "the simulated request names no tenant, so it gets the shared allowlist at most")
    _offer_allow(result, simulation.decision)
    return result


def _method(question: Question, result: Answer) -> str | None:
    method = question.custom_method.strip() if question.method == OTHER_METHOD \
        else question.method
    if not method:
        result.errors["custom_method"] = "type the method to test, such as PROPFIND"
        return None
    if not _TOKEN.fullmatch(method):
        result.errors["custom_method"] = (
            "a method is one word of letters, digits and !#$%&'*+-.^_`|~, such as PROPFIND")
        return None
    if method.upper() in FETCH_UPPERCASED and method != method.upper():
        result.hints.append(f"browsers send {method} as {method.upper()}; "
                            f"simulated as {method.upper()}")
        method = method.upper()
    elif method.upper() in FORBIDDEN_METHODS:
        result.hints.append(f"browsers refuse to send {method} requests at all")
    elif method != method.upper():
        result.hints.append(f"browsers send {method} exactly as typed, and rules compare "
                            "methods case-sensitively")
    return method


def _path(question: Question, result: Answer) -> str | None:
    path = question.path.strip()
    if path.startswith(("http://", "https://")):
        path = urlsplit(path).path or "/"
        result.hints.append(f"only the path of the URL decides which rule applies: {path}")
    elif "?" in path or "#" in path:
        path = re.split(r"[?#]", path, maxsplit=1)[0]
        result.hints.append(f"the query string plays no part in the decision: {path}")
    if not path:
        result.errors["path"] = "enter the path to call, such as /api/orders"
        return None
    if not path.startswith("/"):
        result.errors["path"] = f"a path starts with /, as in /{path}"
        return None
    return path


def _header_names(question: Question, result: Answer) -> list[str]:
    if any(ch in question.headers for ch in "\r\n"):
        result.errors["headers"] = "header names cannot contain line breaks"
        return []
    names = [name.strip() for name in question.headers.split(",") if name.strip()]
    forbidden = sorted({n.lower() for n in names if n.lower() in FORBIDDEN_HEADERS
                        or n.lower().startswith(("proxy-", "sec-"))})
    if forbidden:
        note = " (use the credentials box for cookies)" if "cookie" in forbidden else ""
        result.hints.append(f"scripts cannot set {', '.join(forbidden)}: a browser never "
                            f"sends them in a preflight{note}")
    return names


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


def _preflight_reasons(method: str, simulation: Simulation) -> list[str]:
    if not simulation.preflight:
        return []
    reasons = []
    if method not in SIMPLE_METHODS:
        reasons.append(f"{method} is not GET, HEAD or POST")
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


def _offer_allow(result: Answer, decision: Decision) -> None:
    rule = decision.rule
    if decision.reason != ORIGIN_NOT_ALLOWED or rule is None or rule.rule_id is None:
        return
    refusal = one_click_refusal(result.question.origin, selects_tenant=rule.selects_tenant,
                                tenant=decision.tenant)
    if refusal is None:
        result.allow_offer = result.question.origin
    else:
        result.allow_refusal = refusal


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


def allow_on_rule(rule_id: int, origin: str, *, tenant: str | None = None) -> tuple[str, str]:
    """Allow *origin* on a rule (for *tenant*, on a rule with an allowlist per tenant) as the
    signed-in user, audited by the service, and serve the change in this process at once.
    Returns (message, flash category)."""
    try:
        actor = current_actor()
        rule = get_rule(rule_id, actor)
        refusal = one_click_refusal(origin, selects_tenant=rule.tenant_source != "none",
                                    tenant=tenant)
        if refusal is not None:
            return f"{origin} was not allowed: {refusal}.", "error"
        allowed, created = add_origin(rule_id, origin, actor=actor, tenant=tenant or None)
    except (NotFound, ValidationError) as error:
        return f"{origin} was not allowed: {error}.", "error"
    # Other processes follow within the refresh interval; this one answers the next
    # simulation (or request) with the change.
    get_control(current_app).cache.refresh()
    where = f"{rule.path} for tenant {tenant}" if tenant else rule.path
    if not created:
        return f"{allowed.value} was already allowed on {where}; nothing changed.", ""
    return f"Allowed {allowed.value} on {where}.", ""


def rule_link(rule_id: int | None) -> str | None:
    """The rule's page, when the rules area provides one."""
    if rule_id is None or "admin.rule" not in current_app.view_functions:
        return None
    return url_for("admin.rule", rule_id=rule_id)


# -- views ---------------------------------------------------------------------------------


@bp.get("/simulator")
@requires("viewer")
def simulator():
    return _render(answer(Question.from_values(request.args)))


@bp.post("/simulator/allow")
@requires("editor")
def simulator_allow():
    question = Question.from_values(request.form)
    rule_id = request.form.get("rule_id", type=int)
    if rule_id is None:
        message, category = "Choose the rule to allow the origin on.", "error"
    else:
        message, category = allow_on_rule(rule_id, question.origin)
    if not is_htmx():
        flash(message, category)
        return redirect(url_for("admin.simulator", **question.as_args()), code=303)
    result = answer(question)
    result.message, result.message_category = message, category
    return _render(result)


def _render(result: Answer) -> Response:
    return render("admin/simulator.html", "admin/_simulation.html", **_context(result))


def _context(result: Answer) -> dict[str, Any]:
    return {
        "result": result,
        "question": result.question,
        "methods": METHODS,
        "other_method": OTHER_METHOD,
        "can_edit": has_role("editor"),
        "rule_link": rule_link,
    }
