"""Errors as RFC 9457 problem documents (``application/problem+json``).

Every problem has ``type``, ``title``, ``status``, ``detail`` and ``errors`` (a list of
``{field, message}``, empty unless the request had invalid fields). Validation messages are
the service layer's, word for word, so the API, the dashboard and the CLI say the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flask import Response, current_app, json, request
from werkzeug.exceptions import HTTPException, default_exceptions

from ..services.errors import Conflict, FieldError, Forbidden, NotFound, ValidationError
from ..services.limits import body_limit_text
from . import URL_PREFIX, bp

PROBLEM_MEDIA_TYPE = "application/problem+json"
# Problem types are URNs: identifiers, not pages to fetch (RFC 9457 section 3.1.1).
TYPE_PREFIX = "urn:cors-control:problem:"


class ApiProblem(Exception):
    """A refusal decided by the API layer itself (authentication, preconditions, media type)."""

    def __init__(self, status: int, kind: str, title: str, detail: str, *,
                 headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra


def problem(status: int, kind: str, title: str, detail: str, *,
            errors: Iterable[FieldError] = (), headers: Mapping[str, str] | None = None,
            **extra: Any) -> Response:
    body = {
        "type": TYPE_PREFIX + kind,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.path,
        "errors": [{"field": e.field, "message": e.message} for e in errors],
        **extra,
    }
    response = current_app.response_class(json.dumps(body), status=status,
                                          mimetype=PROBLEM_MEDIA_TYPE)
    response.headers.update(headers or {})
    return response


@bp.errorhandler(ApiProblem)
def _api_problem(error: ApiProblem) -> Response:
    return problem(error.status, error.kind, error.title, error.detail, headers=error.headers,
                   **error.extra)


@bp.errorhandler(ValidationError)
def _validation_error(error: ValidationError) -> Response:
    return problem(422, "validation-error", "The request has invalid fields",
                   "nothing was written; fix the fields listed in errors and send it again",
                   errors=error.errors)


@bp.errorhandler(NotFound)
def _not_found(error: NotFound) -> Response:
    return problem(404, "not-found", "Not found", str(error))


@bp.errorhandler(Conflict)
def _conflict(error: Conflict) -> Response:
    extra: dict[str, Any] = ({} if error.current_version is None
                             else {"current_version": error.current_version})
    return problem(409, "conflict", "Conflict", str(error), **extra)


@bp.errorhandler(Forbidden)
def _forbidden(error: Forbidden) -> Response:
    return problem(403, "forbidden", "Forbidden", str(error))


def _http_problem(error: HTTPException) -> Response:
    headers = {}
    if error.code == 405 and getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]  # MethodNotAllowed
    kind = (error.name or "error").lower().replace(" ", "-")
    return problem(error.code or 500, kind, error.name, error.description or "",
                   headers=headers)


# Inside API views: one handler per status code, so that an app-wide handler for a code
# (an HTML error page of the dashboard) never answers an API client.
for _code in default_exceptions:
    bp.register_error_handler(_code, _http_problem)


@bp.errorhandler(413)
def _too_large(error: HTTPException) -> Response:
    limit = request.max_content_length
    return problem(413, "content-too-large", "Content Too Large",
                   f"the request body is larger than {body_limit_text(limit)}, the most this "
                   "endpoint accepts; send less (a policy import may be larger: "
                   "IMPORT_MAX_BYTES)")


@bp.app_errorhandler(HTTPException)
def _routing_problem(error: HTTPException) -> HTTPException | Response:
    """Routing errors (no such URL, wrong method) happen before any blueprint is chosen; the
    ones under the API's prefix are answered as problems too. Everything else is untouched."""
    if (error.code or 0) >= 400 and _under_api(request.path):
        return _http_problem(error)
    return error


def _under_api(path: str) -> bool:
    return path == URL_PREFIX or path.startswith(URL_PREFIX + "/")
