"""The simulator: what the engine does with a request, asked of the snapshot this process
serves. :mod:`app.services.simulator` checks the question and answers it (the engine's own
decision); this module reads the JSON body and writes the JSON answer."""

from __future__ import annotations

from typing import Any

from flask import current_app

from ..cors import Decision, get_control
from ..services.errors import FieldError, NotFound, ValidationError
from ..services.simulator import (
    SimulatedRequest,
    Simulation,
    answer_request,
    validate_request,
    visible_rule,
)
from . import bp
from .auth import current_actor
from .inputs import json_body

CHECK_FIELDS = ("origin", "method", "path", "headers", "credentials", "preflight")


@bp.post("/check")
def check():
    snapshot = get_control(current_app).cache.get()
    answer = answer_request(_question(json_body()), snapshot, actor=current_actor())
    if answer.simulation is None:
        # As in the dashboard: a tenant role learns nothing of rules it cannot see.
        raise NotFound(f"no rule you can see governs {answer.request.path[:200]}")
    return _decision(answer.simulation, answer.policy_version, answer.findings)


def _question(data: Any) -> SimulatedRequest:
    """The JSON body read as a question; the service checks its values."""
    if not isinstance(data, dict):
        raise ValidationError([FieldError("", 'a check is an object such as {"origin": '
                                              '"https://app.example.com", "path": "/api/x"}')])
    errors = [FieldError(str(key), f"unknown field; a check has {', '.join(CHECK_FIELDS)}")
              for key in data if key not in CHECK_FIELDS]
    headers = _header_names(data.get("headers", []), errors)
    credentials = _flag(data, "credentials", errors)
    preflight = _flag(data, "preflight", errors)
    validation = validate_request(
        origin=_text(data.get("origin")), method=_text(data.get("method", "GET")),
        path=_text(data.get("path")), header_names=headers,
        credentials=bool(credentials), preflight=preflight)
    errors.extend(validation.errors)
    if errors or validation.request is None:
        raise ValidationError(errors)
    return validation.request


def _text(value: Any) -> str:
    """A JSON string as typed; anything else counts as missing (the service says what to
    enter)."""
    return value if isinstance(value, str) else ""


def _header_names(value: Any, errors: list[FieldError]) -> list[str]:
    if isinstance(value, list) and all(isinstance(name, str) for name in value):
        return value
    errors.append(FieldError("headers", 'headers is a list of request header names, such '
                                        'as ["content-type", "authorization"]'))
    return []


def _flag(data: dict[str, Any], name: str, errors: list[FieldError]) -> bool | None:
    value = data.get(name)
    if value is not None and not isinstance(value, bool):
        errors.append(FieldError(name, f"{name} must be true or false"))
        return None
    return value


def _decision(simulation: Simulation, version: int | None,
              findings: tuple[Decision, ...]) -> dict[str, Any]:
    decision = simulation.decision
    rule = visible_rule(decision, current_actor())
    return {
        "decision": "allowed" if decision.allowed else "refused",
        "allowed": decision.allowed,
        "reason": decision.reason,
        "detail": decision.detail,
        "explanation": decision.explanation,
        # A tenant role sees the decision for any path, as anyone sending the request
        # would, but not other tenants' rules.
        "rule": {"id": rule.rule_id, "path": rule.path} if rule is not None else None,
        "tenant": decision.tenant,
        "preflight": simulation.preflight,
        "status": decision.status,
        "headers": [{"name": name, "value": value} for name, value in decision.headers],
        "request_headers": [{"name": name, "value": value}
                            for name, value in simulation.request_headers.items()],
        "policy_version": version,
        # Report-only rules change no answer; what they would refuse is listed here.
        "report_only": [{"rule": {"id": f.rule.rule_id, "path": f.rule.path}
                         if f.rule is not None else None,
                         "reason": f.reason, "detail": f.detail, "explanation": f.explanation}
                        for f in findings],
    }
