"""Simulator: may this origin call METHOD PATH with these headers, with or without credentials?

This module only reads the form and renders: :mod:`app.services.simulator` checks the
question (the same checks and messages as the API and the CLI), builds the request a browser
would send and asks :func:`~cors_control.decision.decide` about it, on the snapshot this process
serves. The form is a GET form, so a result is a link; htmx swaps only the result.
Origins are simulated exactly as typed, hostile or malformed ones included (the engine
refuses those); the allowlist parser's message is shown beside them as a hint, never as a
block. The tenant reaches the engine as the server sees it: from the path, a request header
with its value, or the host. Every failing check is listed, and when one change makes the
request pass (allow the origin, let the rule support credentials) an editor applies it in one
confirmed click; otherwise the page says what the choices are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import current_app, flash, redirect, request, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from cors_control import get_control

from ..services.errors import ServiceError
from ..services.simulator import (
    Answer,
    Validation,
    answer_request,
    fix_request,
    parse_header_line,
    validate_request,
)
from . import bp
from .access import current_actor, has_role, requires
from .refusals import rule_link
from .rendering import is_htmx, render

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
OTHER_METHOD = "other"


# -- the question --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Question:
    """The simulator form as submitted (query string or posted fields), kept as typed."""

    origin: str = ""
    method: str = "GET"
    custom_method: str = ""
    path: str = ""
    headers: str = ""
    request_headers: str = ""  # one "Name: value" a line, such as "X-Tenant: acme"
    host: str = ""
    credentials: bool = False
    private_network: bool = False

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
            request_headers=values.get("request_headers", ""),
            host=values.get("host", ""),
            credentials=values.get("credentials") in ("1", "on", "true"),
            private_network=values.get("private_network") in ("1", "on", "true"),
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
        if self.request_headers:
            args["request_headers"] = self.request_headers
        if self.host:
            args["host"] = self.host
        if self.credentials:
            args["credentials"] = "1"
        if self.private_network:
            args["private_network"] = "1"
        return args

    def validate(self) -> Validation:
        """The service's validation of the form's values, trimmed as typed into inputs."""
        method = self.custom_method.strip() if self.method == OTHER_METHOD else self.method
        names = [name.strip() for name in self.headers.split(",") if name.strip()]
        lines = [line.strip() for line in self.request_headers.splitlines() if line.strip()]
        pairs = [parse_header_line(line) for line in lines]
        validation = validate_request(
            origin=self.origin, method=method, path=self.path.strip(), header_names=names,
            credentials=self.credentials, request_headers=[p for p in pairs if p is not None],
            host=self.host, private_network=self.private_network)
        if None in pairs:
            validation.add_error("request_headers", "write one header a line as Name: value, "
                                                    "such as X-Tenant: acme")
            validation.request = None
        return validation


# The form's input for each field the service names (a method error is always about the
# typed one: the list offers only valid methods).
FORM_FIELDS = {"method": "custom_method"}


@dataclass(slots=True)
class Result:
    """What the result partial shows: problems with the question, hints, and the answer."""

    question: Question
    errors: dict[str, str] = field(default_factory=dict)
    hints: list[str] = field(default_factory=list)
    answer: Answer | None = None
    message: str | None = None
    message_category: str = ""


def answer(question: Question) -> Result:
    """Check the question, then ask the engine about the request it describes."""
    result = Result(question)
    if not question.asked:
        return result
    validation = question.validate()
    result.hints = validation.hints
    for error in validation.errors:
        result.errors.setdefault(FORM_FIELDS.get(error.field, error.field), error.message)
    if validation.request is None:
        return result
    control = get_control(current_app)
    result.answer = answer_request(validation.request, control.cache.get(),
                                   actor=current_actor(), routes=control)
    result.hints = list(result.answer.hints)
    return result


# -- views ---------------------------------------------------------------------------------


@bp.get("/simulator")
@requires("viewer")
def simulator():
    return _render(answer(Question.from_values(request.args)))


@bp.post("/simulator/fix")
@requires("editor")
def simulator_fix():
    question = Question.from_values(request.form)
    message, category = _apply_fix(question)
    if not is_htmx():
        flash(message, category)
        args: dict[str, Any] = question.as_args()
        return redirect(url_for("admin.simulator", **args), code=303)
    result = answer(question)
    result.message, result.message_category = message, category
    return _render(result)


def _apply_fix(question: Question) -> tuple[str, str]:
    """Apply the fix the simulator offers for *question* now (worked out again from the
    question, never taken from the form), and serve it in this process at once."""
    validation = question.validate()
    if validation.request is None:
        return "Nothing was changed: the question is not valid.", "error"
    control = get_control(current_app)
    try:
        message = fix_request(validation.request, control.cache.get(), actor=current_actor(),
                              routes=control)
    except ServiceError as error:
        return f"Nothing was changed: {error}.", "error"
    # Other processes follow within the refresh interval; this one answers at once.
    control.cache.refresh()
    return message, ""


def render_with_message(question: Question, message: str, category: str) -> Response:
    """The simulator answering *question* (as it is now) with *message*, as a page or
    fragment; for other fixes that act on the simulated request (shared lists)."""
    if not is_htmx():
        flash(message, category)
        args: dict[str, Any] = question.as_args()
        return redirect(url_for("admin.simulator", **args), code=303)
    result = answer(question)
    result.message, result.message_category = message, category
    return _render(result)


def _render(result: Result) -> Response:
    return render("admin/simulator.html", "admin/_simulation.html", **_context(result))


def _context(result: Result) -> dict[str, Any]:
    return {
        "result": result,
        "question": result.question,
        "methods": METHODS,
        "other_method": OTHER_METHOD,
        "can_edit": has_role("editor"),
        "rule_link": rule_link,
    }
