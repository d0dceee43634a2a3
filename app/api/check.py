"""The simulator: what the engine does with a request, asked of the snapshot this process
serves. :mod:`app.services.simulator` checks the question and answers it (the engine's own
decision); this module reads the JSON body and writes the JSON answer."""

from __future__ import annotations

from typing import Any

from flask import current_app

from cors_control import get_control

from ..services.errors import FieldError, NotFound, ValidationError
from ..services.simulator import (
    Answer,
    Fix,
    SimulatedRequest,
    answer_request,
    validate_request,
    visible_rule,
)
from . import bp
from .auth import current_actor
from .inputs import json_body

CHECK_FIELDS = ("origin", "method", "path", "headers", "request_headers", "host",
                "credentials", "private_network", "preflight")


@bp.post("/check")
def check():
    control = get_control(current_app)
    answer = answer_request(_question(json_body()), control.cache.get(), actor=current_actor(),
                            routes=control)
    if answer.simulation is None:
        # As in the dashboard: a tenant role learns nothing of rules it cannot see.
        raise NotFound(f"no rule you can see governs {answer.request.path[:200]}")
    return _decision(answer)


def _question(data: Any) -> SimulatedRequest:
    """The JSON body read as a question; the service checks its values."""
    if not isinstance(data, dict):
        raise ValidationError([FieldError("", 'a check is an object such as {"origin": '
                                              '"https://app.example.com", "path": "/api/x"}')])
    errors = [FieldError(str(key), f"unknown field; a check has {', '.join(CHECK_FIELDS)}")
              for key in data if key not in CHECK_FIELDS]
    headers = _header_names(data.get("headers", []), errors)
    values = _header_values(data.get("request_headers", {}), errors)
    credentials = _flag(data, "credentials", errors)
    preflight = _flag(data, "preflight", errors)
    private_network = _flag(data, "private_network", errors)
    host = data.get("host", "")
    if not isinstance(host, str):
        errors.append(FieldError("host", 'host is a string such as "acme.api.example.com"'))
        host = ""
    validation = validate_request(
        origin=_text(data.get("origin")), method=_text(data.get("method", "GET")),
        path=_text(data.get("path")), header_names=headers,
        credentials=bool(credentials), preflight=preflight, request_headers=values,
        host=host, private_network=bool(private_network))
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


def _header_values(value: Any, errors: list[FieldError]) -> list[tuple[str, str]]:
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return [(str(name), text) for name, text in value.items()]
    errors.append(FieldError("request_headers", 'request_headers is an object of header '
                                                'names and values, such as {"X-Tenant": '
                                                '"acme"}'))
    return []


def _flag(data: dict[str, Any], name: str, errors: list[FieldError]) -> bool | None:
    value = data.get(name)
    if value is not None and not isinstance(value, bool):
        errors.append(FieldError(name, f"{name} must be true or false"))
        return None
    return value


def _decision(answer: Answer) -> dict[str, Any]:
    simulation = answer.simulation
    assert simulation is not None  # hidden answers are refused above
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
        # Every check the refused step fails (the preflight, or the request after it).
        "failures": [{"check": f.check, "detail": f.detail, "explanation": f.explanation}
                     for f in answer.failures],
        "fix": _fix(answer.fix),
        "fix_refusal": answer.fix_refusal,
        "policy_version": answer.policy_version,
        # Report-only rules change no answer; what they would refuse is listed here.
        "report_only": [{"rule": {"id": f.rule.rule_id, "path": f.rule.path}
                         if f.rule is not None else None,
                         "reason": f.reason, "detail": f.detail, "explanation": f.explanation}
                        for f in answer.findings],
    }


def _fix(fix: Fix | None) -> dict[str, Any] | None:
    if fix is None:
        return None
    return {"rule": {"id": fix.rule_id, "path": fix.rule_path}, "origin": fix.origin,
            "tenant": fix.tenant, "credentials": fix.credentials, "routes": list(fix.routes),
            "summary": fix.summary}
