"""The simulator: what the engine does with a request, asked of the snapshot this process
serves (:func:`app.services.simulator.simulate`, the engine's own decision)."""

from __future__ import annotations

import re
from typing import Any

from flask import current_app

from ..cors import get_control
from ..services import policy
from ..services.errors import FieldError, NotFound, ValidationError
from ..services.simulator import Simulation, simulate, visible_to
from . import bp
from .auth import current_actor
from .inputs import json_body

CHECK_FIELDS = ("origin", "method", "path", "headers", "credentials", "preflight")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Fetch normalises these method names to upper case before sending them.
FETCH_UPPERCASED = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"})
MAX_TEXT = 2000


@bp.post("/check")
def check():
    question = _question(json_body())
    snapshot = get_control(current_app).cache.get()
    simulation = simulate(snapshot, question["origin"], question["method"], question["path"],
                          question["headers"], credentials=question["credentials"],
                          preflight=question["preflight"])
    if not visible_to(simulation.decision, current_actor()):
        # As in the dashboard: a tenant role learns nothing of rules it cannot see.
        raise NotFound(f"no rule you can see governs {question['path'][:200]}")
    return _decision(simulation, snapshot.version if snapshot is not None else None)


def _question(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationError([FieldError("", 'a check is an object such as {"origin": '
                                              '"https://app.example.com", "path": "/api/x"}')])
    errors = [FieldError(str(key), f"unknown field; a check has {', '.join(CHECK_FIELDS)}")
              for key in data if key not in CHECK_FIELDS]
    origin = data.get("origin")
    if not isinstance(origin, str) or not origin:
        errors.append(FieldError(
            "origin", "enter the Origin header to test, such as https://app.example.com"))
    elif any(ch in origin for ch in "\r\n"):
        errors.append(FieldError(
            "origin", "no request can carry a line break in its Origin header"))
    elif len(origin) > MAX_TEXT:
        errors.append(FieldError(
            "origin", f"an Origin header has at most {MAX_TEXT} characters"))
    method = data.get("method", "GET")
    if not isinstance(method, str) or not _TOKEN.fullmatch(method) or len(method) > 100:
        errors.append(FieldError("method", "a method is one word of letters, digits and "
                                           "!#$%&'*+-.^_`|~, such as PROPFIND"))
    elif method.upper() in FETCH_UPPERCASED:
        method = method.upper()
    path = data.get("path")
    if not isinstance(path, str) or not path:
        errors.append(FieldError("path", "enter the path to call, such as /api/orders"))
    elif not path.startswith("/"):
        errors.append(FieldError("path", f"a path starts with /, as in /{path[:100]}"))
    elif len(path) > MAX_TEXT:
        errors.append(FieldError("path", f"a path has at most {MAX_TEXT} characters"))
    headers = data.get("headers", [])
    if not isinstance(headers, list) or not all(
            isinstance(h, str) and _TOKEN.fullmatch(h) for h in headers) or len(headers) > 100:
        errors.append(FieldError("headers", 'headers is a list of request header names, such '
                                            'as ["content-type", "authorization"]'))
    for name in ("credentials", "preflight"):
        value = data.get(name)
        if value is not None and not isinstance(value, bool):
            errors.append(FieldError(name, f"{name} must be true or false"))
    if errors:
        raise ValidationError(errors)
    return {"origin": origin, "method": method, "path": path, "headers": headers,
            "credentials": bool(data.get("credentials")), "preflight": data.get("preflight")}


def _decision(simulation: Simulation, version: int | None) -> dict[str, Any]:
    decision = simulation.decision
    if decision.report_only:
        verdict = "report-only"
    else:
        verdict = "allowed" if decision.allowed else "refused"
    return {
        "decision": verdict,
        "allowed": decision.allowed,
        "reason": decision.reason,
        "detail": decision.detail,
        "explanation": decision.explanation,
        "rule": _rule_ref(decision.rule.rule_id if decision.rule else None,
                          decision.rule.path if decision.rule else None),
        "tenant": decision.tenant,
        "preflight": simulation.preflight,
        "status": decision.status,
        "headers": [{"name": name, "value": value} for name, value in decision.headers],
        "request_headers": [{"name": name, "value": value}
                            for name, value in simulation.request_headers.items()],
        "policy_version": version,
    }


def _rule_ref(rule_id: int | None, path: str | None) -> dict[str, Any] | None:
    """The governing rule, when the caller may see it (a tenant role sees the decision for
    any path, as anyone sending the request would, but not other tenants' rules)."""
    if path is None or (rule_id is None and current_actor().scoped):
        return None
    if rule_id is not None:
        try:
            policy.get_rule(rule_id, current_actor())
        except NotFound:
            return None
    return {"id": rule_id, "path": path}
