"""The fix for each reason the request log records.

An origin refusal is fixed in one click: the refused request is rebuilt from what the row
recorded and :func:`~app.services.simulator.fix_request` applies the simulator's whole fix
(the origin, for its tenant, and whatever else one change passes). A method, header or
credentials refusal changes the rule's options, which deserves a look: the log links to the
rule's edit form with the change filled in (:func:`edit_args`), and the form states its
consequence (:func:`propose`).

Where the origin goes is a *target* (:data:`ALLOW_TARGETS`): the rule itself (``rule``), or
a shared origin list the rule uses (``list:<id>``), offered by :func:`log_list_targets` only
when the simulator's list fix (:mod:`app.services.list_fix`) offers that list for the
recorded request, so the log and the simulator agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cors_control.decision import (
    CREDENTIALS_NOT_ALLOWED,
    HEADER_NOT_ALLOWED,
    METHOD_NOT_ALLOWED,
    ORIGIN_NOT_ALLOWED,
)
from cors_control.extension import CorsControl
from cors_control.snapshot import CompiledRule, PolicySnapshot
from cors_control.text import printable
from cors_control.vocabulary import DRAFT, TENANT_FROM_HEADER, TENANT_FROM_SUBDOMAIN

from ..models import RequestLogEntry, Rule
from .access import Actor
from .errors import FieldError, NotFound, ValidationError
from .list_fix import ListTarget, fix_request_with_list, list_targets
from .simulator import (
    Answer,
    SimulatedRequest,
    allow_refused_origin,
    answer_request,
    fix_request,
    validate_request,
)

# Query arguments of the rule's edit form that carry a change proposed by the log.
ADD_METHOD = "add_method"
ADD_HEADER = "add_header"
ADD_CREDENTIALS = "add_credentials"
EDITS = {METHOD_NOT_ALLOWED: ADD_METHOD, HEADER_NOT_ALLOWED: ADD_HEADER,
         CREDENTIALS_NOT_ALLOWED: ADD_CREDENTIALS}
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")

RULE_TARGET = "rule"
LIST_TARGET = "list"  # sent as "list:<id>"


# -- origin refusals: one click ------------------------------------------------------------


def refused_request(entry: RequestLogEntry, rule: CompiledRule | None) -> SimulatedRequest | None:
    """The request the row recorded (its first occurrence in the bucket), as the simulator
    asks it; None when the row does not say enough (no sample, or not a browser's origin)."""
    if not entry.method or not entry.path:
        return None
    method = entry.request_method if entry.preflight else entry.method
    names = [n.strip() for n in entry.request_headers.split(",") if n.strip()] \
        if entry.preflight else []
    values: list[tuple[str, str]] = []
    host = ""
    if entry.tenant and rule is not None and rule.selects_tenant:
        if rule.tenant_source == TENANT_FROM_HEADER and not entry.preflight:
            values.append((rule.tenant_key, entry.tenant))
        elif rule.tenant_source == TENANT_FROM_SUBDOMAIN:
            host = f"{entry.tenant}.{rule.tenant_key}"
    validation = validate_request(origin=entry.origin, method=method or "GET", path=entry.path,
                                  header_names=names, preflight=entry.preflight,
                                  request_headers=values, host=host)
    return validation.request


def allow_on_rule_target(entry: RequestLogEntry, snapshot: PolicySnapshot | None, *,
                         actor: Actor, routes: CorsControl | None = None) -> str:
    """Let the row's refused request through on the row's rule: the simulator's whole fix
    when it passes the recorded request, else the origin alone (for the row's tenant), as
    before. Returns what was done; raises NotFound or ValidationError saying why not."""
    if entry.reason != ORIGIN_NOT_ALLOWED or entry.rule_id is None:
        raise ValidationError([FieldError("", "Only an origin that a rule's allowlist refused "
                                              "can be allowed from the log")])
    compiled = next((r for r in snapshot.rules if r.rule_id == entry.rule_id), None) \
        if snapshot is not None else None
    request = refused_request(entry, compiled)
    if request is not None:
        answer = answer_request(request, snapshot, actor=actor, routes=routes)
        fix = answer.fix
        if fix is not None and fix.rule_id == entry.rule_id and fix.origin == entry.origin \
                and (fix.tenant or "") == entry.tenant:
            fix_request(request, snapshot, actor=actor, routes=routes)
            where = f"{fix.rule_path} for tenant {fix.tenant}" if fix.tenant else fix.rule_path
            also = " and let it support credentials" if fix.credentials else ""
            return f"Allowed {entry.origin} on {where}{also}."
    return allow_refused_origin(entry.rule_id, entry.origin, actor=actor,
                                tenant=entry.tenant or None)


def _recorded_fix(entry: RequestLogEntry, snapshot: PolicySnapshot | None, *, actor: Actor,
                  routes: CorsControl | None) -> tuple[SimulatedRequest, Answer] | None:
    """The recorded request and the simulator's answer, when that answer's fix is to allow
    the row's origin (for the row's tenant) on the row's rule; else None."""
    if entry.reason != ORIGIN_NOT_ALLOWED or entry.rule_id is None or entry.mode == DRAFT:
        return None
    compiled = next((r for r in snapshot.rules if r.rule_id == entry.rule_id), None) \
        if snapshot is not None else None
    request = refused_request(entry, compiled)
    if request is None:
        return None
    answer = answer_request(request, snapshot, actor=actor, routes=routes)
    fix = answer.fix
    if fix is None or fix.rule_id != entry.rule_id or fix.origin != entry.origin \
            or (fix.tenant or "") != entry.tenant:
        return None
    return request, answer


def log_list_targets(entry: RequestLogEntry, snapshot: PolicySnapshot | None, *,
                     actor: Actor | None, routes: CorsControl | None = None
                     ) -> list[ListTarget]:
    """The shared lists the row's "allow" offers besides the rule: those the simulator
    offers for the recorded request (lists the rule uses, that *actor* may change, where
    adding the origin makes the request pass), each with every rule it changes."""
    if actor is None or not actor.can_write:
        return []
    found = _recorded_fix(entry, snapshot, actor=actor, routes=routes)
    return list_targets(found[1].fix, actor) if found is not None else []


def allow_on_list_target(entry: RequestLogEntry, snapshot: PolicySnapshot | None, *,
                         actor: Actor, routes: CorsControl | None = None,
                         ref: str = "") -> str:
    """Add the row's refused origin to the shared list *ref* (an id), when the simulator
    offers that list for the recorded request now. Returns what was done, naming every rule
    the list change affects; raises NotFound or ValidationError saying why not."""
    if not ref.isdigit() or len(ref) > 18:
        raise ValidationError([FieldError(
            "target", "name the list as list:<id>, such as list:3")])
    if entry.reason != ORIGIN_NOT_ALLOWED or entry.rule_id is None:
        raise ValidationError([FieldError("", "Only an origin that a rule's allowlist refused "
                                              "can be allowed from the log")])
    found = _recorded_fix(entry, snapshot, actor=actor, routes=routes)
    if found is None:
        raise ValidationError([FieldError("target", (
            "adding the origin to a list would not make this logged request pass; "
            "allow it on the rule instead"))])
    return fix_request_with_list(found[0], snapshot, int(ref), actor=actor, routes=routes)


# Where "allow" may put an origin, by the name the form sends ("rule", or "list:<id>"); each
# function takes the same arguments, and ``ref`` when the target names one.
ALLOW_TARGETS: dict[str, Callable[..., str]] = {RULE_TARGET: allow_on_rule_target,
                                                LIST_TARGET: allow_on_list_target}


def allow_from_log(entry: RequestLogEntry, snapshot: PolicySnapshot | None, *, target: str,
                   actor: Actor, routes: CorsControl | None = None) -> str:
    """Allow the row's origin on *target* (:data:`ALLOW_TARGETS`)."""
    if entry.mode == DRAFT:
        raise ValidationError([FieldError(
            "entry", "nothing to allow: the live rule allowed these requests and only its "
                     "draft would refuse them; change the draft instead")])
    name, colon, ref = (target or RULE_TARGET).partition(":")
    allow = ALLOW_TARGETS.get(name)
    if allow is None or bool(colon) != (name == LIST_TARGET):
        raise ValidationError([FieldError(
            "target", "allow on one of: rule, list:<id> (a shared list the rule uses)")])
    if colon:
        return allow(entry, snapshot, actor=actor, routes=routes, ref=ref)
    return allow(entry, snapshot, actor=actor, routes=routes)


# -- option refusals: the rule's edit form, filled in --------------------------------------


def edit_args(entry: RequestLogEntry) -> dict[str, Any] | None:
    """The query arguments that open the rule's edit form with the change this row needs;
    None when the reason is not fixed by the rule's options or the detail is not a name."""
    name = EDITS.get(entry.reason)
    if name is None or entry.rule_id is None:
        return None
    if name == ADD_CREDENTIALS:
        return {name: "1"}
    if not _TOKEN.match(entry.detail or ""):
        return None
    return {name: entry.detail}


@dataclass(frozen=True, slots=True)
class RuleProposal:
    """A change of a rule's options proposed from the log: the form's new values, what it
    does and what follows from it."""

    changes: dict[str, Any]
    summary: str
    consequence: str


def propose(rule: Rule, args: Mapping[str, str]) -> RuleProposal | None:
    """The change *args* (from :func:`edit_args`) ask of *rule*, or None when they ask none
    or it is already made."""
    path = rule.path
    method = (args.get(ADD_METHOD) or "").strip().upper()
    header = (args.get(ADD_HEADER) or "").strip().lower()
    if method and _TOKEN.match(method) and method not in rule.methods:
        return RuleProposal(
            {"methods": ", ".join([*rule.methods, method])},
            f"add {method} to the methods of {path}",
            f"Every origin the allowlist of {path} lets through may then send {method} "
            f"requests, with their bodies, to every route {path} governs, not only the one "
            "that was refused.")
    if header and _TOKEN.match(header) and "*" not in rule.allow_headers \
            and header not in [h.lower() for h in rule.allow_headers]:
        return RuleProposal(
            {"allow_headers": ", ".join([*rule.allow_headers, header])},
            f"add {header} to the request headers {path} allows",
            f"Every origin the allowlist of {path} lets through may then send the "
            f"{header} header to every route {path} governs.")
    if args.get(ADD_CREDENTIALS) and not rule.supports_credentials:
        return RuleProposal(
            {"supports_credentials": True},
            f"let {path} support credentials",
            f"Browsers will then send cookies and HTTP authentication to every route {path} "
            "governs from every origin on its allowlist, and let those pages read the "
            "answers as the signed-in user: keep only origins you trust with your users' "
            "sessions on it (an allowlist with * cannot support credentials).")
    return None


def describe(entry: RequestLogEntry) -> str:
    """The change :func:`edit_args` proposes, in words, for the link to the form."""
    if entry.reason == METHOD_NOT_ALLOWED:
        return f"add {printable(entry.detail, 100)} to the rule's methods"
    if entry.reason == HEADER_NOT_ALLOWED:
        return f"allow the {printable(entry.detail, 100)} header"
    if entry.reason == CREDENTIALS_NOT_ALLOWED:
        return "let the rule support credentials"
    raise NotFound("no change of the rule's options fixes this reason")
