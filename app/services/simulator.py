"""What would the engine do with a request? Used by ``flask cors check`` and the dashboard.

It builds the request a browser would send (a preflight when the method or a header needs
one) and asks the engine's own :func:`~app.cors.decision.decide`; it never decides itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from werkzeug.datastructures import Headers

from ..cors.decision import Decision, decide
from ..cors.snapshot import PolicySnapshot

# Request headers a browser sends without a preflight (content-type only for form and text
# bodies, which a simulation cannot know, so it is treated as safelisted only when asked).
SAFELISTED_HEADERS = frozenset({"accept", "accept-language", "content-language", "range"})
SIMPLE_METHODS = frozenset({"GET", "HEAD", "POST"})


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
        if self.decision.report_only:
            return "allowed (a report-only rule would refuse)"
        return "allowed" if self.decision.allowed else "refused"


def visible_to(decision: Decision, actor) -> bool:
    """Whether *actor* may see the rule that decided: a tenant role sees its tenant's rules
    and the rules that select tenants, never another tenant's rule, the platform's, or what
    the engine does on a path no rule governs."""
    from .errors import NotFound
    from .policy import get_rule

    if actor is None or not actor.scoped:
        return True
    if decision.rule is None or decision.rule.rule_id is None:
        return False
    try:
        get_rule(decision.rule.rule_id, actor)
    except NotFound:
        return False
    return True


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
